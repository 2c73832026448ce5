using Alloy.Tensors;
using CsCheck;

namespace Alloy.Tests.Tensors;

/// <summary>
/// PackedBits: numpy.packbits(axis=-1) layout, and ranges packed apart then joined by OR give the whole.
/// </summary>
public sealed class PackedBitsTests
{
    [Fact]
    public void Shapes_pack_the_last_axis_into_bytes()
    {
        Assert.Equal([3L, 2], PackedBits.Shape([3, 10]));
        Assert.Equal([3L], PackedBits.Shape([17]));
        Assert.Equal([2L, 4, 1], PackedBits.Shape([2, 4, 8]));
        Assert.Equal([1L], PackedBits.Shape([]));
    }

    [Fact]
    public void Rows_start_on_a_byte_with_the_first_entry_in_the_high_bit()
    {
        // numpy.packbits([[1,0,1,1,0,0,0,1,1,1],[0,1,0,0,0,0,0,0,0,1]], axis=-1) = [[177, 192], [64, 64]].
        float[] mask = [1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        var packed = new byte[8];
        Assert.Equal(4, PackedBits.Pack(mask, 0, 10, packed));
        Assert.Equal(new byte[] { 177, 192, 64, 64 }, packed[..4]);
        // Entries 9…12 cover bytes 1 and 2: entry 9 in byte 1 (bit 6), entries 10…12 in byte 2 (bits 7…5).
        Array.Clear(packed);
        Assert.Equal(2, PackedBits.Pack(mask.AsSpan(9, 4), 9, 10, packed));
        Assert.Equal(new byte[] { 0b0100_0000, 0b0100_0000 }, packed[..2]);
        Assert.Equal(1, PackedBits.ByteOf(9, 10));
        Assert.Equal(2, PackedBits.ByteOf(10, 10));
    }

    [Fact]
    public void Ranges_packed_apart_and_joined_by_or_equal_the_whole()
    {
        Gen.Int[0, 1]
            .Select(b => (float)b)
            .Array[1, 120]
            .Select(Gen.Int[1, 20], Gen.Int[1, 30])
            .Sample(
                (mask, columns, chunk) =>
                {
                    var whole = new byte[mask.Length];
                    int length = PackedBits.Pack(mask, 0, columns, whole);
                    Assert.Equal(PackedBits.ByteCount(0, mask.Length, columns), length);
                    var joined = new byte[length];
                    for (int start = 0; start < mask.Length; start += chunk)
                    {
                        int count = Math.Min(chunk, mask.Length - start);
                        var part = new byte[count];
                        int n = PackedBits.Pack(mask.AsSpan(start, count), start, columns, part);
                        long first = PackedBits.ByteOf(start, columns);
                        for (int k = 0; k < n; k++)
                            joined[first + k] |= part[k];
                    }
                    Assert.Equal(whole[..length], joined);
                }
            );
    }
}
