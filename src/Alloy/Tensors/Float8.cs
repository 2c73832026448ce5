namespace Alloy.Tensors;

/// <summary>
/// Scalar codecs for the two 8-bit float formats safetensors stores.
/// <list type="bullet">
/// <item>F8_E4M3 is PyTorch's float8_e4m3fn: bias 7, no infinities, 0x7F/0xFF are NaN, largest finite ±448.</item>
/// <item>F8_E5M2 is IEEE-like: bias 15, ±inf at 0x7C/0xFC, NaN above, largest finite ±57344.</item>
/// </list>
/// Encoding rounds to nearest, ties to even, and overflows the way PyTorch (c10) does: E4M3 has no infinity, so
/// anything that rounds past 448 (and ±inf) becomes NaN; E5M2 overflows to ±inf. NaN keeps its sign bit (0x7F or 0xFF).
/// </summary>
public static class Float8
{
    private static readonly float[] E4M3Table = BuildTable(
        Decode,
        exponentBits: 4,
        mantissaBits: 3,
        finiteAllOnes: true
    );
    private static readonly float[] E5M2Table = BuildTable(
        Decode,
        exponentBits: 5,
        mantissaBits: 2,
        finiteAllOnes: false
    );

    /// <summary>All 256 E4M3 values indexed by bit pattern.</summary>
    internal static ReadOnlySpan<float> E4M3Values => E4M3Table;

    /// <summary>All 256 E5M2 values indexed by bit pattern.</summary>
    internal static ReadOnlySpan<float> E5M2Values => E5M2Table;

    public static float DecodeE4M3(byte bits) => E4M3Table[bits];

    public static float DecodeE5M2(byte bits) => E5M2Table[bits];

    public static byte EncodeE4M3(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        byte sign = (byte)((bits >> 24) & 0x80);
        uint magnitude = bits & 0x7FFF_FFFFu;
        // NaN and ±inf both map to NaN: the format has nowhere else to put them.
        if (magnitude >= 0x7F80_0000u)
            return (byte)(sign | 0x7F);
        uint code = RoundMagnitude(magnitude, mantissaBits: 3, bias: 7);
        // 0x7F is the NaN pattern, so rounding onto it (values above 464) is overflow, and overflow is NaN.
        return (byte)(sign | Math.Min(code, 0x7Fu));
    }

    public static byte EncodeE5M2(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        byte sign = (byte)((bits >> 24) & 0x80);
        uint magnitude = bits & 0x7FFF_FFFFu;
        if (magnitude > 0x7F80_0000u)
            return (byte)(sign | 0x7F);
        uint code = RoundMagnitude(magnitude, mantissaBits: 2, bias: 15);
        // Rounding to 65536 or beyond (values from 61440 up, and inf) saturates at the infinity pattern.
        return (byte)(sign | Math.Min(code, 0x7Cu));
    }

    /// <summary>
    /// Rounds a finite, non-negative float32 (given by its bits) to the nearest value with
    /// <paramref name="mantissaBits"/> mantissa bits and exponent bias <paramref name="bias"/>, ties to even. The
    /// result is the bit pattern of that value with an unbounded exponent field; callers clamp it to their format's
    /// range.
    /// </summary>
    private static uint RoundMagnitude(uint magnitude, int mantissaBits, int bias)
    {
        // Below the smallest normal the spacing is fixed at 2^(1 - bias - mantissaBits). Counting in those steps gives
        // the subnormal code directly, and a count of 2^mantissaBits is exactly the smallest normal's code.
        uint smallestNormalBits = (uint)(127 - bias + 1) << 23;
        if (magnitude < smallestNormalBits)
        {
            float steps = BitConverter.UInt32BitsToSingle(magnitude) * MathF.ScaleB(1f, bias - 1 + mantissaBits);
            return (uint)MathF.Round(steps, MidpointRounding.ToEven);
        }

        // Normal: drop the low (23 - mantissaBits) bits with ties-to-even, then move the exponent to the new bias.
        // A mantissa that rounds up past all ones carries into the exponent, which is the correct next binade.
        int shift = 23 - mantissaBits;
        uint half = (1u << (shift - 1)) - 1;
        uint rounded = (magnitude + half + ((magnitude >> shift) & 1u)) >> shift;
        return rounded - ((uint)(127 - bias) << mantissaBits);
    }

    private static float Decode(byte bits, int exponentBits, int mantissaBits, bool finiteAllOnes)
    {
        int bias = (1 << (exponentBits - 1)) - 1;
        int mantissaMask = (1 << mantissaBits) - 1;
        int exponentMask = (1 << exponentBits) - 1;
        bool negative = (bits & 0x80) != 0;
        int exponent = (bits >> mantissaBits) & exponentMask;
        int mantissa = bits & mantissaMask;

        // A positive quiet NaN, so the sign bit below decides the NaN's sign (float.NaN itself is negative on x64).
        float nan = BitConverter.UInt32BitsToSingle(0x7FC0_0000u);
        float magnitude;
        if (exponent == exponentMask && finiteAllOnes)
        {
            // e4m3fn spends only the all-ones pattern on NaN; the rest of the top binade is finite.
            magnitude = mantissa == mantissaMask ? nan : Normal(exponent, mantissa);
        }
        else if (exponent == exponentMask)
        {
            magnitude = mantissa == 0 ? float.PositiveInfinity : nan;
        }
        else if (exponent == 0)
        {
            magnitude = MathF.ScaleB(mantissa, 1 - bias - mantissaBits);
        }
        else
        {
            magnitude = Normal(exponent, mantissa);
        }
        return negative ? -magnitude : magnitude;

        float Normal(int e, int m) => MathF.ScaleB((1 << mantissaBits) + m, e - bias - mantissaBits);
    }

    private static float[] BuildTable(
        Func<byte, int, int, bool, float> decode,
        int exponentBits,
        int mantissaBits,
        bool finiteAllOnes
    )
    {
        var table = new float[256];
        for (int i = 0; i < table.Length; i++)
            table[i] = decode((byte)i, exponentBits, mantissaBits, finiteAllOnes);
        return table;
    }
}
