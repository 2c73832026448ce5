using Alloy.Tensors;

namespace Alloy.Tests.Tensors;

public sealed class BFloat16KernelsTests
{
    public static TheoryData<int> OddLengths => new() { 0, 1, 7, 15, 17, 31, 33, 63, 65, 1023, 4097 };

    /// <summary>Random bits, with special values sprinkled in so NaN/inf/zero/tie lanes land inside vectors.</summary>
    private static float[] RandomFloats(int length, int seed)
    {
        var random = new Random(seed);
        uint[] specials =
        [
            0x7F80_0000,
            0xFF80_0000,
            0x7FC0_0000,
            0xFFC0_0000,
            0x7F80_0001,
            0xFFFF_FFFF,
            0x0000_0000,
            0x8000_0000,
            0x7F7F_FFFF,
            0x7F7F_8000,
            0x3F80_8000,
            0x3F81_8000,
            0x0000_8000,
            0x807F_FFFF,
        ];
        var values = new float[length];
        for (int i = 0; i < length; i++)
        {
            uint bits =
                random.Next(4) == 0 ? specials[random.Next(specials.Length)] : (uint)random.NextInt64(0, 1L << 32);
            values[i] = BitConverter.UInt32BitsToSingle(bits);
        }
        return values;
    }

    private static ushort[] RandomHalfWords(int length, int seed)
    {
        var random = new Random(seed);
        var values = new ushort[length];
        for (int i = 0; i < length; i++)
            values[i] = (ushort)random.Next(0x1_0000);
        return values;
    }

    private static ushort[] ScalarNarrow(float[] source)
    {
        var expected = new ushort[source.Length];
        for (int i = 0; i < source.Length; i++)
            expected[i] = ((BFloat16)source[i]).Bits;
        return expected;
    }

    private static uint[] Bits(float[] values) => values.Select(BitConverter.SingleToUInt32Bits).ToArray();

    [Theory]
    [MemberData(nameof(OddLengths))]
    public void VectorNarrowingMatchesScalar(int length)
    {
        var source = RandomFloats(length, seed: length);
        var expected = ScalarNarrow(source);

        var dispatched = new ushort[length];
        BFloat16Kernels.Narrow(source, dispatched);
        Assert.Equal(expected, dispatched);

        // Each width directly (Vector512/256 run in software where not accelerated), with the scalar tail after it.
        var wide = new ushort[length];
        int done512 = BFloat16Kernels.Narrow512(source, wide);
        Assert.Equal(length - length % 32, done512);
        BFloat16Kernels.NarrowScalar(source.AsSpan(done512), wide.AsSpan(done512));
        Assert.Equal(expected, wide);

        var narrow = new ushort[length];
        int done256 = BFloat16Kernels.Narrow256(source, narrow);
        Assert.Equal(length - length % 16, done256);
        BFloat16Kernels.NarrowScalar(source.AsSpan(done256), narrow.AsSpan(done256));
        Assert.Equal(expected, narrow);
    }

    [Theory]
    [MemberData(nameof(OddLengths))]
    public void VectorWideningMatchesScalar(int length)
    {
        var source = RandomHalfWords(length, seed: length + 1);
        var expected = new float[length];
        for (int i = 0; i < length; i++)
            expected[i] = (float)BFloat16.FromBits(source[i]);

        var dispatched = new float[length];
        BFloat16Kernels.Widen(source, dispatched);
        Assert.Equal(Bits(expected), Bits(dispatched));

        var wide = new float[length];
        int done512 = BFloat16Kernels.Widen512(source, wide);
        Assert.Equal(length - length % 32, done512);
        BFloat16Kernels.WidenScalar(source.AsSpan(done512), wide.AsSpan(done512));
        Assert.Equal(Bits(expected), Bits(wide));

        var narrow = new float[length];
        int done256 = BFloat16Kernels.Widen256(source, narrow);
        Assert.Equal(length - length % 16, done256);
        BFloat16Kernels.WidenScalar(source.AsSpan(done256), narrow.AsSpan(done256));
        Assert.Equal(Bits(expected), Bits(narrow));
    }

    [Fact]
    public void VectorPathsRoundTripEveryBitPattern()
    {
        var all = new ushort[0x1_0000];
        for (int i = 0; i < all.Length; i++)
            all[i] = (ushort)i;
        var floats = new float[all.Length];
        BFloat16Kernels.Widen(all, floats);
        var back = new ushort[all.Length];
        BFloat16Kernels.Narrow(floats, back);
        for (int i = 0; i < all.Length; i++)
        {
            Assert.Equal((i & 0x7FFF) > 0x7F80 ? 0x7FC0 : i, back[i]);
        }
    }

    [Fact]
    public void MismatchedLengthsThrow()
    {
        Assert.Throws<ArgumentException>(() => BFloat16Kernels.Narrow(new float[3], new ushort[2]));
        Assert.Throws<ArgumentException>(() => BFloat16Kernels.Widen(new ushort[2], new float[3]));
    }
}
