using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Alloy.Tensors;

namespace Alloy.Runtime.Compute;

/// <summary>The row kernels of the forward pass: vectorized, allocation-free, one row at a time.</summary>
public static class VectorMath
{
    /// <summary>
    /// Σ aᵢ·bᵢ accumulated in float32 vectors, as a GEMM accumulates: these are attention's head-sized dot products
    /// (64–128 elements), where float32 accumulation loses nothing a float32 model can show.
    /// </summary>
    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        int n = a.Length, i = 0, w = Vector<float>.Count;
        ref float pa = ref MemoryMarshal.GetReference(a);
        ref float pb = ref MemoryMarshal.GetReference(b);
        var sum0 = Vector<float>.Zero;
        var sum1 = Vector<float>.Zero;
        for (; i <= n - 2 * w; i += 2 * w)
        {
            sum0 = Vector.FusedMultiplyAdd(Load(ref pa, i), Load(ref pb, i), sum0);
            sum1 = Vector.FusedMultiplyAdd(Load(ref pa, i + w), Load(ref pb, i + w), sum1);
        }
        for (; i <= n - w; i += w) sum0 = Vector.FusedMultiplyAdd(Load(ref pa, i), Load(ref pb, i), sum0);
        float total = Vector.Sum(sum0 + sum1);
        for (; i < n; i++) total = MathF.FusedMultiplyAdd(Unsafe.Add(ref pa, i), Unsafe.Add(ref pb, i), total);
        return total;
    }

    /// <summary>accumulator += scale · x.</summary>
    public static void AddScaled(Span<float> accumulator, ReadOnlySpan<float> x, float scale)
    {
        int n = accumulator.Length, i = 0, w = Vector<float>.Count;
        ref float pacc = ref MemoryMarshal.GetReference(accumulator);
        ref float px = ref MemoryMarshal.GetReference(x);
        var s = new Vector<float>(scale);
        for (; i <= n - w; i += w)
            Store(Vector.FusedMultiplyAdd(Load(ref px, i), s, Load(ref pacc, i)), ref pacc, i);
        for (; i < n; i++) Unsafe.Add(ref pacc, i) = MathF.FusedMultiplyAdd(Unsafe.Add(ref px, i), scale, Unsafe.Add(ref pacc, i));
    }

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

    /// <summary>The index of the largest value; the first one on ties (as torch.argmax). NaN is never the largest.</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best] || float.IsNaN(values[best])) best = i;
        return best;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> Load(ref float start, int offset) =>
        Unsafe.ReadUnaligned<Vector<float>>(ref Unsafe.As<float, byte>(ref Unsafe.Add(ref start, offset)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector<float> value, ref float start, int offset) =>
        Unsafe.WriteUnaligned(ref Unsafe.As<float, byte>(ref Unsafe.Add(ref start, offset)), value);
}
