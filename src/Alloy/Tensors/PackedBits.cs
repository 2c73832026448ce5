using System.Runtime.Intrinsics;

namespace Alloy.Tensors;

/// <summary>
/// Boolean tensors stored one bit per entry, as numpy's <c>packbits(mask, axis=-1)</c> stores them: each row (the last
/// axis) is packed into ⌈columns/8⌉ bytes, the row's first entry in the most significant bit, the last byte padded
/// with zero bits. <c>numpy.unpackbits(packed, axis=-1, count=columns)</c> restores the mask. Rows start on a byte, so
/// a tensor's packed bytes are a plain uint8 tensor of shape [..., ⌈columns/8⌉].
/// </summary>
public static class PackedBits
{
    /// <summary>
    /// The packed tensor's shape for a boolean tensor of <paramref name="shape"/> (a scalar packs as [1]).
    /// </summary>
    public static long[] Shape(long[] shape) => shape.Length == 0 ? [1] : [.. shape[..^1], (shape[^1] + 7) / 8];

    /// <summary>Entries per packed row: the last axis (1 for a scalar).</summary>
    public static long Columns(long[] shape) => shape.Length == 0 ? 1 : shape[^1];

    /// <summary>The index of the byte holding entry <paramref name="element"/> (flat, row-major).</summary>
    public static long ByteOf(long element, long columns) =>
        element / columns * ((columns + 7) / 8) + element % columns / 8;

    /// <summary>
    /// Packs entries [start, start + values.Length) of a tensor whose rows have <paramref name="columns"/> entries
    /// (value ≠ 0 → 1) into <paramref name="packed"/>, which receives the bytes from <see cref="ByteOf"/>(start) to
    /// ByteOf(last entry) and must hold at least that many; returns their count. A range that starts or ends inside a
    /// byte leaves that byte's other bits zero, so consecutive ranges combine by OR-ing the byte they share.
    /// </summary>
    public static int Pack(ReadOnlySpan<float> values, long start, long columns, Span<byte> packed)
    {
        int count = ByteCount(start, values.Length, columns);
        var bytes = packed[..count];
        bytes.Clear();
        long column = start % columns;
        int at = 0;
        for (int i = 0; i < values.Length; )
        {
            if (Vector256.IsHardwareAccelerated && (column & 7) == 0 && columns - column >= 8 && values.Length - i >= 8)
            {
                // A whole byte: eight lanes compared at once; lane 0 lands in bit 0, the format wants it in bit 7.
                uint lanes = (
                    ~Vector256.Equals(Vector256.Create(values.Slice(i, 8)), Vector256<float>.Zero)
                ).ExtractMostSignificantBits();
                bytes[at++] = HighBitFirst[lanes];
                i += 8;
                if ((column += 8) == columns)
                    column = 0;
                continue;
            }
            if (values[i++] != 0)
                bytes[at] |= (byte)(0x80 >> (int)(column & 7));
            if (++column == columns)
            {
                column = 0;
                at++;
            }
            else if ((column & 7) == 0)
                at++;
        }
        return count;
    }

    /// <summary>Each byte with its bits in reverse order.</summary>
    private static readonly byte[] HighBitFirst = Enumerable
        .Range(0, 256)
        .Select(b => (byte)Enumerable.Range(0, 8).Sum(bit => ((b >> bit) & 1) << (7 - bit)))
        .ToArray();

    /// <summary>
    /// How many bytes <see cref="Pack"/> writes for <paramref name="count"/> entries from <paramref name="start"/> (at
    /// most <paramref name="count"/>).
    /// </summary>
    public static int ByteCount(long start, int count, long columns) =>
        count == 0 ? 0 : (int)(ByteOf(start + count - 1, columns) - ByteOf(start, columns) + 1);
}
