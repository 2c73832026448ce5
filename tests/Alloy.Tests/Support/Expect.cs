using Alloy.Tensors;

namespace Alloy.Tests.Support;

public static class Expect
{
    /// <summary>
    /// Asserts actual equals expected (computed in double) after one rounding to <paramref name="dtype"/>, allowing one
    /// unit in the last place of that dtype, plus float32 rounding error proportional to
    /// <paramref name="operandScale"/> (the largest operand magnitude: sums of nearly cancelling terms lose precision
    /// relative to their terms, not their result).
    /// </summary>
    public static void Close(
        string what,
        IReadOnlyList<double> expected,
        IReadOnlyList<float> actual,
        DType dtype,
        double operandScale = 0
    )
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            double e = expected[i];
            double ulp = Ulp(e, dtype) + operandScale * 1e-6;
            if (Math.Abs(actual[i] - e) > ulp * 1.0001)
                Assert.Fail($"{what}[{i}]: expected {e:R} (±{ulp:G3}), got {actual[i]:R}");
        }
    }

    public static double Ulp(double value, DType dtype)
    {
        int mantissaBits = dtype switch
        {
            DType.BF16 => 7,
            DType.F16 => 10,
            DType.F32 => 23,
            _ => 52,
        };
        double magnitude = Math.Max(Math.Abs(value), dtype == DType.F16 ? 6.1e-5 : 1e-30);
        int exponent = (int)Math.Floor(Math.Log2(magnitude));
        // float32 math before rounding adds a little relative error of its own.
        return Math.Pow(2, exponent - mantissaBits) + Math.Abs(value) * 4e-7;
    }
}
