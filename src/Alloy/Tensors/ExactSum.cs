using System.Numerics;
using System.Runtime.CompilerServices;

namespace Alloy.Tensors;

/// <summary>
/// The exact sum of float32 values: each value's 24-bit significand is added to an integer bucket for its binary
/// exponent, so the total does not depend on the order or grouping of the additions. Sums made chunk by chunk on any
/// number of threads and combined in any order are therefore identical, which a double accumulator cannot promise. The
/// total is rounded to double once, by <see cref="Value"/>, which is meant to be read once per sum (it is not cheap).
/// </summary>
public sealed class ExactSum
{
    // Bucket e holds Σ ±significand for values with exponent field e (1…254), each worth significand·2^(e−150);
    // subnormals (field 0) have the same scale as field 1. 2^39 additions fit in a bucket before it could overflow.
    private readonly long[] _buckets = new long[255];
    private double _nonFinite;

    /// <summary>Adds one value. Infinities and NaN make the total infinite or NaN, as in ordinary arithmetic.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add(float value)
    {
        int bits = BitConverter.SingleToInt32Bits(value);
        int exponent = (bits >> 23) & 0xFF;
        long significand = bits & 0x7FFFFF;
        if (exponent == 0)
            exponent = 1;
        else if (exponent == 0xFF)
        {
            _nonFinite += value;
            return;
        }
        else
            significand |= 0x800000;
        _buckets[exponent] += bits < 0 ? -significand : significand;
    }

    /// <summary>Adds every value of <paramref name="values"/>.</summary>
    public void Add(ReadOnlySpan<float> values)
    {
        foreach (float v in values)
            Add(v);
    }

    /// <summary>Adds another sum (exactly: the result is as if its values had been added here).</summary>
    public void Add(ExactSum other)
    {
        for (int e = 1; e < _buckets.Length; e++)
            _buckets[e] = checked(_buckets[e] + other._buckets[e]);
        _nonFinite += other._nonFinite;
    }

    /// <summary>The total, rounded to double once (the buckets are combined exactly first).</summary>
    public double Value
    {
        get
        {
            if (_nonFinite != 0)
                return _nonFinite; // also NaN, which compares unequal to 0
            // Σ bucket[e]·2^(e−1) in units of 2^−149, by Horner's rule from the largest exponent down.
            var units = BigInteger.Zero;
            for (int e = _buckets.Length - 1; e >= 1; e--)
                units = (units << 1) + _buckets[e];
            return Math.ScaleB((double)units, -149);
        }
    }
}
