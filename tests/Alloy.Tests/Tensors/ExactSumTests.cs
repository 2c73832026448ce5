using System.Numerics;
using Alloy.Tensors;
using CsCheck;

namespace Alloy.Tests.Tensors;

/// <summary>ExactSum: exact whatever the grouping, against a BigInteger sum of the same values.</summary>
public sealed class ExactSumTests
{
    /// <summary>The exact sum as a multiple of 2^−149 (every finite float32 is one), rounded to double once.</summary>
    private static double Exact(IEnumerable<float> values)
    {
        var total = BigInteger.Zero;
        foreach (float v in values)
        {
            int bits = BitConverter.SingleToInt32Bits(v),
                exponent = (bits >> 23) & 0xFF;
            var significand = new BigInteger(exponent == 0 ? bits & 0x7FFFFF : (bits & 0x7FFFFF) | 0x800000);
            var units = significand << Math.Max(exponent - 1, 0);
            total += bits < 0 ? -units : units;
        }
        return (double)total * Math.Pow(2, -149);
    }

    private static readonly Gen<float> AnyFinite = Gen.Float.Where(float.IsFinite);

    [Fact]
    public void Cancelling_terms_leave_the_small_ones_exactly()
    {
        // In double, 1e20 + 1 − 1e20 is 0: 1 is below the last place of 1e20.
        var sum = new ExactSum();
        sum.Add([1e20f, 1f, -1e20f]);
        Assert.Equal(1.0, sum.Value);
        var tiny = new ExactSum();
        tiny.Add([3e38f, float.Epsilon, -3e38f, float.Epsilon, 1e-40f, -1e-40f]);
        Assert.Equal(2 * (double)float.Epsilon, tiny.Value);
        Assert.Equal(0.0, new ExactSum().Value);
    }

    [Fact]
    public void Any_grouping_and_order_gives_the_same_bits_and_the_exact_sum()
    {
        AnyFinite
            .Array[1, 200]
            .Select(Gen.Int[1, 50], Gen.Int[0, 1000])
            .Sample(
                (values, chunk, seed) =>
                {
                    var whole = new ExactSum();
                    whole.Add(values);
                    var shuffled = values.OrderBy(_ => new Random(seed).Next()).ToArray();
                    var combined = new ExactSum();
                    foreach (var part in shuffled.Chunk(chunk).Reverse())
                    {
                        var partial = new ExactSum();
                        partial.Add(part);
                        combined.Add(partial);
                    }
                    Assert.Equal(
                        BitConverter.DoubleToInt64Bits(whole.Value),
                        BitConverter.DoubleToInt64Bits(combined.Value)
                    );
                    // One rounding of the exact sum: at most one unit in the last place away from it, even after
                    // cancellation.
                    double exact = Exact(values);
                    Assert.True(
                        Math.Abs(whole.Value - exact) <= Math.BitIncrement(Math.Abs(exact)) - Math.Abs(exact),
                        $"{whole.Value:R} vs {exact:R}"
                    );
                }
            );
    }

    [Fact]
    public void Infinities_and_nan_propagate_as_in_ordinary_sums()
    {
        var sum = new ExactSum();
        sum.Add([1f, float.PositiveInfinity]);
        Assert.Equal(double.PositiveInfinity, sum.Value);
        sum.Add(float.NegativeInfinity);
        Assert.True(double.IsNaN(sum.Value));
        var nan = new ExactSum();
        nan.Add(float.NaN);
        Assert.True(double.IsNaN(nan.Value));
    }
}
