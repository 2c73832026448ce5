using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Alloy.Tensors;

/// <summary>
/// Converts raw little-endian tensor bytes to the float32 working precision and back. Every merge reads and writes
/// through here, so BF16, F16 and F32 take vectorized paths. Source and destination must not overlap.
/// </summary>
public static class TensorConvert
{
    // The byte layouts below are reinterpreted in place (MemoryMarshal.Cast), which is only right on little-endian
    // hosts.
    static TensorConvert()
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException(
                "Alloy reads tensor bytes in place and needs a little-endian machine."
            );
        }
    }

    /// <summary>
    /// Widens <c>destination.Length</c> elements stored little-endian as <paramref name="dtype"/> in
    /// <paramref name="source"/> to float32. Integers and booleans become their numeric value (large 32/64-bit
    /// integers round to nearest even); F64 narrows with round-to-nearest-even.
    /// </summary>
    /// <exception cref="ArgumentException"><c>source.Length != destination.Length * dtype.Size()</c>.</exception>
    public static void ToFloat32(ReadOnlySpan<byte> source, DType dtype, Span<float> destination)
    {
        CheckLengths(source.Length, dtype, destination.Length, nameof(source));
        switch (dtype)
        {
            case DType.F32:
                MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);
                break;
            case DType.BF16:
                BFloat16Kernels.Widen(MemoryMarshal.Cast<byte, ushort>(source), destination);
                break;
            case DType.F16:
                // Checked exhaustively against (float)Half for all 65,536 patterns, NaN payloads included.
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), destination);
                break;
            case DType.F64:
            {
                var values = MemoryMarshal.Cast<byte, double>(source);
                for (int i = 0; i < values.Length; i++)
                    destination[i] = (float)values[i];
                break;
            }
            case DType.I64:
            {
                var values = MemoryMarshal.Cast<byte, long>(source);
                for (int i = 0; i < values.Length; i++)
                    destination[i] = values[i];
                break;
            }
            case DType.I32:
            {
                var values = MemoryMarshal.Cast<byte, int>(source);
                for (int i = 0; i < values.Length; i++)
                    destination[i] = values[i];
                break;
            }
            case DType.I16:
            {
                var values = MemoryMarshal.Cast<byte, short>(source);
                for (int i = 0; i < values.Length; i++)
                    destination[i] = values[i];
                break;
            }
            case DType.I8:
                for (int i = 0; i < source.Length; i++)
                    destination[i] = (sbyte)source[i];
                break;
            case DType.U8:
                for (int i = 0; i < source.Length; i++)
                    destination[i] = source[i];
                break;
            case DType.Bool:
                // safetensors writes 0/1, but any nonzero byte is true, as in NumPy and PyTorch.
                for (int i = 0; i < source.Length; i++)
                    destination[i] = source[i] != 0 ? 1f : 0f;
                break;
            case DType.F8_E4M3:
                Lookup(source, Float8.E4M3Values, destination);
                break;
            case DType.F8_E5M2:
                Lookup(source, Float8.E5M2Values, destination);
                break;
            default:
                throw new ArgumentException($"Unknown dtype {dtype}.", nameof(dtype));
        }
    }

    /// <summary>
    /// Rounds each float32 once to <paramref name="dtype"/> (nearest, ties to even) and writes little-endian bytes. NaN
    /// stays NaN; ±inf stays ±inf where the format has infinities (F8_E4M3 has none: ±inf and overflow become NaN, as
    /// in PyTorch). BF16 NaNs become 0x7FC0 as in PyTorch; F16 NaNs follow .NET's (Half) conversion.
    /// </summary>
    /// <exception cref="ArgumentException">A non-float dtype, or <c>destination.Length != source.Length *
    /// dtype.Size()</c>.</exception>
    public static void FromFloat32(ReadOnlySpan<float> source, DType dtype, Span<byte> destination)
    {
        if (!CanWrite(dtype))
        {
            throw new ArgumentException(
                $"Cannot write float32 values as {dtype}: only float dtypes can be written.",
                nameof(dtype)
            );
        }
        CheckLengths(destination.Length, dtype, source.Length, nameof(destination));
        switch (dtype)
        {
            case DType.F32:
                MemoryMarshal.AsBytes(source).CopyTo(destination);
                break;
            case DType.BF16:
                BFloat16Kernels.Narrow(source, MemoryMarshal.Cast<byte, ushort>(destination));
                break;
            case DType.F16:
                // Checked exhaustively against (Half)float for all 2^32 patterns: round-to-nearest-even, overflow to
                // ±inf, NaN stays NaN (bit-identical to the cast).
                TensorPrimitives.ConvertToHalf(source, MemoryMarshal.Cast<byte, Half>(destination));
                break;
            case DType.F64:
            {
                var values = MemoryMarshal.Cast<byte, double>(destination);
                for (int i = 0; i < source.Length; i++)
                    values[i] = source[i];
                break;
            }
            case DType.F8_E4M3:
                for (int i = 0; i < source.Length; i++)
                    destination[i] = Float8.EncodeE4M3(source[i]);
                break;
            case DType.F8_E5M2:
                for (int i = 0; i < source.Length; i++)
                    destination[i] = Float8.EncodeE5M2(source[i]);
                break;
        }
    }

    /// <summary>True for the float dtypes <see cref="FromFloat32"/> can produce.</summary>
    public static bool CanWrite(DType dtype) =>
        dtype is DType.F64 or DType.F32 or DType.F16 or DType.BF16 or DType.F8_E4M3 or DType.F8_E5M2;

    private static void Lookup(ReadOnlySpan<byte> source, ReadOnlySpan<float> table, Span<float> destination)
    {
        for (int i = 0; i < source.Length; i++)
            destination[i] = table[source[i]];
    }

    private static void CheckLengths(int byteLength, DType dtype, int elementCount, string byteParameter)
    {
        long expected = (long)elementCount * dtype.Size(); // Size() rejects undefined enum values
        if (byteLength != expected)
        {
            throw new ArgumentException(
                $"{elementCount} elements of {dtype} take {expected} bytes, but {byteParameter} has {byteLength}.",
                byteParameter
            );
        }
    }
}
