using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Alloy.Tensors;

/// <summary>
/// float32 span math carried in double: reductions (norms and dots over whole tensors lose digits in float32 and are
/// wrong in Half; every method reduces through these) and combinations rounded once.
/// </summary>
public static class SpanMath
{
    /// <summary>Σ xᵢ·yᵢ.</summary>
    public static double Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        if (x.Length != y.Length)
            throw new ArgumentException("spans differ in length");
        var sum = Vector<double>.Zero;
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= x.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                Vector.Widen(new Vector<float>(x[i..]), out var xl, out var xh);
                Vector.Widen(new Vector<float>(y[i..]), out var yl, out var yh);
                sum += xl * yl + xh * yh;
            }
        }
        double total = Vector.Sum(sum);
        for (; i < x.Length; i++)
            total += (double)x[i] * y[i];
        return total;
    }

    /// <summary>Σ xᵢ.</summary>
    public static double Sum(ReadOnlySpan<float> x)
    {
        var sum = Vector<double>.Zero;
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= x.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                Vector.Widen(new Vector<float>(x[i..]), out var low, out var high);
                sum += low + high;
            }
        }
        double total = Vector.Sum(sum);
        for (; i < x.Length; i++)
            total += x[i];
        return total;
    }

    /// <summary>Σ xᵢ².</summary>
    public static double SumOfSquares(ReadOnlySpan<float> x) => Dot(x, x);

    /// <summary>The Euclidean norm ‖x‖.</summary>
    public static double Norm(ReadOnlySpan<float> x) => Math.Sqrt(Dot(x, x));

    /// <summary>
    /// Σ (xᵢ − bᵢ)·(yᵢ − bᵢ): the dot of two task vectors without storing them. Each difference is rounded to float32
    /// first, exactly as a stored task vector would be.
    /// </summary>
    public static double DeltaDot(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> b)
    {
        if (x.Length != y.Length || x.Length != b.Length)
            throw new ArgumentException("spans differ in length");
        var sum = Vector<double>.Zero;
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= x.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var vb = new Vector<float>(b[i..]);
                Vector.Widen(new Vector<float>(x[i..]) - vb, out var xl, out var xh);
                Vector.Widen(new Vector<float>(y[i..]) - vb, out var yl, out var yh);
                sum += xl * yl + xh * yh;
            }
        }
        double total = Vector.Sum(sum);
        for (; i < x.Length; i++)
            total += (double)(x[i] - b[i]) * (y[i] - b[i]);
        return total;
    }

    /// <summary>
    /// output[j] += c·(x[j] − b[j]) in one pass: a task vector weighted and added without storing it. Each step rounds
    /// to float32 as the separate operations would (difference, product, sum; no fused multiply-add), so the result is
    /// exactly that of a subtraction followed by <c>TensorPrimitives.MultiplyAdd</c>.
    /// </summary>
    public static void AddScaledDifference(ReadOnlySpan<float> x, ReadOnlySpan<float> b, float c, Span<float> output)
    {
        if (x.Length != b.Length || x.Length != output.Length)
            throw new ArgumentException("spans differ in length");
        ref float rx = ref MemoryMarshal.GetReference(x);
        ref float rb = ref MemoryMarshal.GetReference(b);
        ref float ro = ref MemoryMarshal.GetReference(output);
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vc = Vector512.Create(c);
            for (; i <= x.Length - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var difference = Vector512.LoadUnsafe(ref rx, (nuint)i) - Vector512.LoadUnsafe(ref rb, (nuint)i);
                (difference * vc + Vector512.LoadUnsafe(ref ro, (nuint)i)).StoreUnsafe(ref ro, (nuint)i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var vc = Vector256.Create(c);
            for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var difference = Vector256.LoadUnsafe(ref rx, (nuint)i) - Vector256.LoadUnsafe(ref rb, (nuint)i);
                (difference * vc + Vector256.LoadUnsafe(ref ro, (nuint)i)).StoreUnsafe(ref ro, (nuint)i);
            }
        }
        for (; i < x.Length; i++)
            output[i] = (x[i] - b[i]) * c + output[i];
    }

    /// <summary>
    /// output = ca·a + cb·b, computed in double and rounded once, so (1 − t)·x + t·x is exactly x and coefficients
    /// (1, 0) return a exactly. <paramref name="output"/> may be <paramref name="a"/> or <paramref name="b"/>.
    /// </summary>
    public static void Combine(ReadOnlySpan<float> a, double ca, ReadOnlySpan<float> b, double cb, Span<float> output)
    {
        if (a.Length != b.Length || a.Length != output.Length)
            throw new ArgumentException("spans differ in length");
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var va = new Vector<double>(ca);
            var vb = new Vector<double>(cb);
            for (; i <= a.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                Vector.Widen(new Vector<float>(a[i..]), out var al, out var ah);
                Vector.Widen(new Vector<float>(b[i..]), out var bl, out var bh);
                Vector.Narrow(al * va + bl * vb, ah * va + bh * vb).CopyTo(output[i..]);
            }
        }
        for (; i < a.Length; i++)
            output[i] = (float)(ca * a[i] + cb * b[i]);
    }
}
