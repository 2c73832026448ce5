using Alloy.Methods;
using Alloy.Methods.Geometric;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.Methods.Geometric;

/// <summary>
/// Runs a method in float32 and in bfloat16 and compares each with an expectation computed in double.
/// </summary>
public static class Golden
{
    /// <summary>
    /// float32: the inputs as given, within one float32 ulp (plus float32 rounding of the math). bfloat16: the inputs
    /// rounded to bf16, the output rounded to bf16, the expectation (computed from the rounded inputs) rounded once,
    /// within one bf16 ulp.
    /// </summary>
    public static void Check(
        MergeMethod method,
        float[][] inputs,
        int baseIndex,
        Func<double[][], double[]> expected,
        IReadOnlyDictionary<string, double>? globals = null,
        IReadOnlyList<IReadOnlyDictionary<string, double>>? perModel = null,
        long[]? shape = null,
        double operandScale = 0
    )
    {
        var f32 = MethodTestKit.Run(method, inputs, baseIndex, globals, perModel, shape: shape);
        Expect.Close(
            $"{method.Name} float32",
            expected(inputs.Select(GeometricReference.ToDouble).ToArray()),
            f32,
            DType.F32,
            operandScale
        );

        var rounded = inputs.Select(x => x.Select(v => (float)(BFloat16)v).ToArray()).ToArray();
        var bf16 = MethodTestKit
            .Run(method, rounded, baseIndex, globals, perModel, shape: shape)
            .Select(v => (float)(BFloat16)v)
            .ToArray();
        var expectedBf16 = expected(rounded.Select(GeometricReference.ToDouble).ToArray())
            .Select(e => (double)(float)(BFloat16)(float)e)
            .ToArray();
        Expect.Close($"{method.Name} bfloat16", expectedBf16, bf16, DType.BF16, operandScale);
    }

    /// <summary>A fixed expectation for inputs that bf16 represents exactly (small integers, halves).</summary>
    public static void Check(
        MergeMethod method,
        float[][] inputs,
        int baseIndex,
        double[] expected,
        IReadOnlyDictionary<string, double>? globals = null,
        IReadOnlyList<IReadOnlyDictionary<string, double>>? perModel = null,
        long[]? shape = null
    )
    {
        Assert.All(inputs.SelectMany(x => x), v => Assert.Equal(v, (float)(BFloat16)v));
        Check(method, inputs, baseIndex, _ => expected, globals, perModel, shape);
    }

    /// <summary>Deterministic pseudo-random values in [−scale, scale), for invariants on non-trivial tensors.</summary>
    public static float[] Values(int count, int seed, double scale = 1)
    {
        var stream = RandomStream.For((ulong)seed, "golden", 0);
        return Enumerable.Range(0, count).Select(i => (float)(scale * (2 * stream.Uniform(i) - 1))).ToArray();
    }
}
