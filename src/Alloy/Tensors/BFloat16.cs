using System.Globalization;

namespace Alloy.Tensors;

/// <summary>
/// Brain floating point: the upper 16 bits of an IEEE float32 (1 sign, 8 exponent, 7 mantissa bits).
/// .NET 10 has no BFloat16 type, so Alloy carries its own; bulk conversions live in <see cref="TensorConvert"/>.
/// </summary>
public readonly struct BFloat16 : IEquatable<BFloat16>, IComparable<BFloat16>
{
    /// <summary>The quiet NaN PyTorch's c10::BFloat16 produces for every NaN input.</summary>
    internal const ushort CanonicalNaN = 0x7FC0;

    private BFloat16(ushort bits) => Bits = bits;

    public ushort Bits { get; }

    public static BFloat16 FromBits(ushort bits) => new(bits);

    /// <summary>Rounds to nearest, ties to even; NaN becomes 0x7FC0 and overflow becomes ±inf.</summary>
    public static explicit operator BFloat16(float value) => new(Narrow(BitConverter.SingleToUInt32Bits(value)));

    /// <summary>Exact: every bfloat16 is a float32 with 16 zero low bits.</summary>
    public static explicit operator float(BFloat16 value) => BitConverter.UInt32BitsToSingle((uint)value.Bits << 16);

    /// <summary>
    /// Float32 bits to bfloat16 bits. Shared with the scalar tails of the vector kernels so both agree.
    /// </summary>
    internal static ushort Narrow(uint bits)
    {
        if ((bits & 0x7FFF_FFFFu) > 0x7F80_0000u)
            return CanonicalNaN;
        // Adding 0x7FFF rounds half-way cases down; adding the kept LSB as well turns that into ties-to-even.
        // The largest finite float carries into the exponent and lands exactly on infinity (0x7F80).
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
    }

    public bool IsNaN => (Bits & 0x7FFF) > 0x7F80;

    // Value equality in the manner of System.Half: all NaNs are equal to each other and +0 equals -0,
    // so Equals stays reflexive and consistent with GetHashCode.
    public bool Equals(BFloat16 other) =>
        Bits == other.Bits || (IsNaN && other.IsNaN) || ((Bits | other.Bits) & 0x7FFF) == 0;

    public override bool Equals(object? obj) => obj is BFloat16 other && Equals(other);

    public override int GetHashCode()
    {
        if (IsNaN)
            return CanonicalNaN;
        if ((Bits & 0x7FFF) == 0)
            return 0;
        return Bits;
    }

    /// <summary>Orders like float.CompareTo: NaN first, then numeric order, with -0 equal to +0.</summary>
    public int CompareTo(BFloat16 other) => ((float)this).CompareTo((float)other);

    public override string ToString() => ((float)this).ToString(CultureInfo.InvariantCulture);
}
