using Alloy.Tensors;

namespace Alloy.Tests.Tensors;

public sealed class BFloat16Tests
{
    private static uint BitsOf(float f) => BitConverter.SingleToUInt32Bits(f);

    private static float FloatOf(uint bits) => BitConverter.UInt32BitsToSingle(bits);

    [Fact]
    public void EveryBitPatternWidensExactlyAndNarrowsBackToItself()
    {
        for (int b = 0; b <= ushort.MaxValue; b++)
        {
            var value = BFloat16.FromBits((ushort)b);
            float wide = (float)value;
            Assert.Equal((uint)b << 16, BitsOf(wide));
            var back = (BFloat16)wide;
            if ((b & 0x7FFF) > 0x7F80)
            {
                Assert.True(float.IsNaN(wide));
                Assert.True(back.IsNaN);
                Assert.Equal(0x7FC0, back.Bits);
            }
            else
            {
                Assert.Equal(b, back.Bits);
            }
        }
    }

    [Theory]
    [InlineData(0x3F80_8000u, 0x3F80)] // tie, kept mantissa even: round down
    [InlineData(0x3F81_8000u, 0x3F82)] // tie, kept mantissa odd: round up
    [InlineData(0x3F80_8001u, 0x3F81)] // just above half
    [InlineData(0x3F80_7FFFu, 0x3F80)] // just below half
    [InlineData(0xBF81_8000u, 0xBF82)] // ties are symmetric in sign
    [InlineData(0x3FFF_8000u, 0x4000)] // mantissa carry into the exponent
    [InlineData(0x3FFF_FFFFu, 0x4000)]
    [InlineData(0x7F7F_FFFFu, 0x7F80)] // float.MaxValue overflows to +inf
    [InlineData(0x7F7F_8000u, 0x7F80)] // tie at the top, odd mantissa: rounds to +inf
    [InlineData(0x7F7E_8000u, 0x7F7E)] // tie at the top, even mantissa: stays finite
    [InlineData(0xFF7F_FFFFu, 0xFF80)] // -float.MaxValue to -inf
    [InlineData(0x7F80_0000u, 0x7F80)] // +inf
    [InlineData(0xFF80_0000u, 0xFF80)] // -inf
    [InlineData(0x0000_0000u, 0x0000)]
    [InlineData(0x8000_0000u, 0x8000)] // negative zero keeps its sign
    [InlineData(0x0000_8000u, 0x0000)] // subnormal tie to even zero
    [InlineData(0x8000_8000u, 0x8000)]
    [InlineData(0x0001_8000u, 0x0002)] // subnormal tie, odd: up
    [InlineData(0x0000_8001u, 0x0001)] // subnormal above half
    [InlineData(0x807F_FFFFu, 0x8080)] // largest subnormal rounds to the smallest normal
    [InlineData(0x0001_0000u, 0x0001)] // smallest bf16 subnormal is exact
    [InlineData(0x7F80_0001u, 0x7FC0)] // signalling NaN with a low payload must not become inf
    [InlineData(0xFFFF_FFFFu, 0x7FC0)] // all-ones NaN must not wrap around to zero
    [InlineData(0xFFC0_0000u, 0x7FC0)] // NaN sign is dropped, as in PyTorch
    [InlineData(0x7FC0_0001u, 0x7FC0)]
    public void NarrowingRoundsToNearestEven(uint floatBits, int expected)
    {
        Assert.Equal(expected, ((BFloat16)FloatOf(floatBits)).Bits);
    }

    [Fact]
    public void NarrowingPicksTheNearestNeighbourOnRandomFloats()
    {
        // Independent oracle: compare distances to the two bf16 neighbours in double (exact for neighbours).
        var random = new Random(1234);
        for (int n = 0; n < 200_000; n++)
        {
            uint bits = (uint)random.NextInt64(0, 1L << 32);
            float f = FloatOf(bits);
            if (!float.IsFinite(f))
                continue;
            uint down = bits & 0xFFFF_0000u;
            uint up = down + 0x1_0000u;
            double toDown = Math.Abs((double)f - FloatOf(down));
            // Past the largest finite value the next step up is ±2^128 (inf's place); RNE measures against it there.
            double upValue = (up & 0x7FFF_FFFFu) == 0x7F80_0000u ? Math.CopySign(Math.Pow(2, 128), f) : FloatOf(up);
            double toUp = Math.Abs(upValue - f);
            ushort expected =
                toDown < toUp ? (ushort)(down >> 16)
                : toUp < toDown ? (ushort)(up >> 16)
                : (ushort)(((down >> 16) & 1) == 0 ? down >> 16 : up >> 16);
            Assert.Equal(expected, ((BFloat16)f).Bits);
        }
    }

    [Fact]
    public void EqualityTreatsNaNsAsEqualAndZerosAsEqual()
    {
        var nanA = BFloat16.FromBits(0x7FC0);
        var nanB = BFloat16.FromBits(0xFF81);
        var plusZero = BFloat16.FromBits(0x0000);
        var minusZero = BFloat16.FromBits(0x8000);
        Assert.True(nanA.Equals(nanB));
        Assert.Equal(nanA.GetHashCode(), nanB.GetHashCode());
        Assert.True(plusZero.Equals(minusZero));
        Assert.Equal(plusZero.GetHashCode(), minusZero.GetHashCode());
        Assert.False(BFloat16.FromBits(0x3F80).Equals(BFloat16.FromBits(0x3F81)));
        Assert.False(nanA.Equals(plusZero));
        Assert.True(BFloat16.FromBits(0x3F80).Equals((object)BFloat16.FromBits(0x3F80)));
        Assert.False(BFloat16.FromBits(0x3F80).Equals((object)1.0f));
    }

    [Fact]
    public void CompareToOrdersNumerically()
    {
        var values = new[] { 0x4000, 0xBF80, 0x7F80, 0x0000, 0x3F80, 0xFF80, 0x7FC0 }
            .Select(b => BFloat16.FromBits((ushort)b))
            .ToList();
        values.Sort();
        Assert.Equal(
            new ushort[] { 0x7FC0, 0xFF80, 0xBF80, 0x0000, 0x3F80, 0x4000, 0x7F80 },
            values.Select(v => v.Bits)
        );
        Assert.Equal(0, BFloat16.FromBits(0x8000).CompareTo(BFloat16.FromBits(0x0000)));
    }

    [Theory]
    [InlineData(0x3FC0, "1.5")]
    [InlineData(0xC000, "-2")]
    [InlineData(0x7F80, "Infinity")]
    [InlineData(0x7FC0, "NaN")]
    [InlineData(0x3DCD, "0.100097656")]
    public void ToStringPrintsTheFloatValueInvariantly(int bits, string expected)
    {
        Assert.Equal(expected, BFloat16.FromBits((ushort)bits).ToString());
    }
}
