using System.Numerics.Tensors;
using Alloy.Tensors;

namespace Alloy.Runtime.Compute;

/// <summary>The row kernels of the forward pass: vectorized, allocation-free, one row at a time.</summary>
public static class VectorMath
{
    /// <summary>
    /// RMSNorm of one row: y = (x / √(mean(x²) + ε)) · weight, the sum of squares accumulated in double. Returns
    /// 1/√(mean(x²) + ε), which backward needs. <paramref name="y"/> may be <paramref name="x"/>.
    /// </summary>
    public static float RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, double epsilon, Span<float> y)
    {
        float inverse = (float)(1.0 / Math.Sqrt(SpanMath.SumOfSquares(x) / x.Length + epsilon));
        // Normalise, then scale by the weight: two roundings, in transformers' order.
        TensorPrimitives.Multiply(x, inverse, y);
        TensorPrimitives.Multiply(y, weight, y);
        return inverse;
    }

    /// <summary>SwiGLU's activation: h = silu(gate) · up, silu(g) = g · σ(g). <paramref name="h"/> must not overlap the inputs.</summary>
    public static void SwiGlu(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> h)
    {
        TensorPrimitives.Sigmoid(gate, h);
        TensorPrimitives.Multiply(h, gate, h);
        TensorPrimitives.Multiply(h, up, h);
    }

    /// <summary>
    /// log Σ exp(xᵢ), the normaliser of a log-softmax (log p(i) = xᵢ − LogSumExp(x)): the maximum is subtracted first and
    /// the sum accumulated in double. <paramref name="scratch"/> (at least as long as x) receives exp(xᵢ − max).
    /// </summary>
    public static double LogSumExp(ReadOnlySpan<float> x, Span<float> scratch)
    {
        float max = TensorPrimitives.Max(x);
        var shifted = scratch[..x.Length];
        TensorPrimitives.Subtract(x, max, shifted);
        TensorPrimitives.Exp(shifted, shifted);
        return max + Math.Log(SpanMath.Sum(shifted));
    }

    /// <summary>The index of the largest value; the first one on ties (as torch.argmax). NaN is never the largest.</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best] || float.IsNaN(values[best])) best = i;
        return best;
    }
}
