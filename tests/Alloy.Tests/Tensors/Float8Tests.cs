using Alloy.Tensors;

namespace Alloy.Tests.Tensors;

public sealed class Float8Tests
{
    [Fact]
    public void E4M3DecodesAll256Patterns()
    {
        int nans = 0;
        for (int b = 0; b < 256; b++)
        {
            float value = Float8.DecodeE4M3((byte)b);
            Assert.False(float.IsInfinity(value)); // e4m3fn has no infinities
            if (float.IsNaN(value))
            {
                nans++;
                continue;
            }
            // The sign bit is the float's sign bit, negative zero included.
            Assert.Equal((b & 0x80) != 0, float.IsNegative(value));
        }
        Assert.Equal(2, nans);
        Assert.True(float.IsNaN(Float8.DecodeE4M3(0x7F)));
        Assert.True(float.IsNaN(Float8.DecodeE4M3(0xFF)));

        Assert.Equal(448f, Float8.DecodeE4M3(0x7E));
        Assert.Equal(-448f, Float8.DecodeE4M3(0xFE));
        Assert.Equal(1f, Float8.DecodeE4M3(0x38));
        Assert.Equal(MathF.ScaleB(1, -9), Float8.DecodeE4M3(0x01)); // smallest subnormal
        Assert.Equal(7 * MathF.ScaleB(1, -9), Float8.DecodeE4M3(0x07)); // largest subnormal
        Assert.Equal(MathF.ScaleB(1, -6), Float8.DecodeE4M3(0x08)); // smallest normal
        Assert.Equal(240f, Float8.DecodeE4M3(0x77)); // top binade minus one: 1.875 * 2^7
        Assert.Equal(256f, Float8.DecodeE4M3(0x78)); // exponent all ones is finite in e4m3fn
        Assert.Equal(0x8000_0000u, BitConverter.SingleToUInt32Bits(Float8.DecodeE4M3(0x80)));

        // Codes 0x00..0x7E are strictly increasing, so the encoding is monotone.
        for (int b = 1; b <= 0x7E; b++)
            Assert.True(Float8.DecodeE4M3((byte)b) > Float8.DecodeE4M3((byte)(b - 1)));
    }

    [Fact]
    public void E5M2DecodesAll256Patterns()
    {
        int nans = 0;
        for (int b = 0; b < 256; b++)
        {
            float value = Float8.DecodeE5M2((byte)b);
            // E5M2 is the top byte of an IEEE half: check against .NET's Half as an independent decoder.
            float viaHalf = (float)BitConverter.UInt16BitsToHalf((ushort)(b << 8));
            if (float.IsNaN(value))
            {
                nans++;
                Assert.True(float.IsNaN(viaHalf));
                continue;
            }
            Assert.Equal(BitConverter.SingleToUInt32Bits(viaHalf), BitConverter.SingleToUInt32Bits(value));
        }
        Assert.Equal(6, nans);

        Assert.Equal(57344f, Float8.DecodeE5M2(0x7B));
        Assert.Equal(float.PositiveInfinity, Float8.DecodeE5M2(0x7C));
        Assert.Equal(float.NegativeInfinity, Float8.DecodeE5M2(0xFC));
        Assert.Equal(MathF.ScaleB(1, -16), Float8.DecodeE5M2(0x01));
        Assert.Equal(MathF.ScaleB(1, -14), Float8.DecodeE5M2(0x04));
        Assert.Equal(1f, Float8.DecodeE5M2(0x3C));
        for (int b = 1; b <= 0x7C; b++)
            Assert.True(Float8.DecodeE5M2((byte)b) > Float8.DecodeE5M2((byte)(b - 1)));
    }

    [Fact]
    public void EncodeOfDecodeIsIdentityOnEveryNonNaNPattern()
    {
        for (int b = 0; b < 256; b++)
        {
            float e4m3 = Float8.DecodeE4M3((byte)b);
            if (!float.IsNaN(e4m3))
                Assert.Equal(b, Float8.EncodeE4M3(e4m3));
            float e5m2 = Float8.DecodeE5M2((byte)b);
            if (!float.IsNaN(e5m2))
                Assert.Equal(b, Float8.EncodeE5M2(e5m2));
        }
    }

    [Theory]
    [InlineData(448f, 0x7E)]
    [InlineData(-448f, 0xFE)]
    [InlineData(464f, 0x7E)] // half-way to the (NaN) next step: ties to the even 448
    [InlineData(464.00003f, 0x7F)] // past it: overflow, and overflow is NaN (PyTorch does not saturate)
    [InlineData(479.99997f, 0x7F)]
    [InlineData(480f, 0x7F)]
    [InlineData(1e6f, 0x7F)]
    [InlineData(-1e6f, 0xFF)]
    [InlineData(float.PositiveInfinity, 0x7F)]
    [InlineData(float.NegativeInfinity, 0xFF)]
    [InlineData(float.MaxValue, 0x7F)]
    [InlineData(0f, 0x00)]
    [InlineData(-0f, 0x80)]
    [InlineData(1e-10f, 0x00)]
    [InlineData(-1e-10f, 0x80)]
    [InlineData(0.0009765625f, 0x00)] // 2^-10: tie between 0 and the smallest subnormal, to even 0
    [InlineData(0.0009765626f, 0x01)]
    [InlineData(0.0029296875f, 0x02)] // 3·2^-10: tie between subnormals 1 and 2, to even 2
    [InlineData(0.0146484375f, 0x08)] // 7.5·2^-9: tie between largest subnormal and smallest normal, to even 0x08
    [InlineData(1.0625f, 0x38)] // tie between 1 and 1.125, to even 1
    [InlineData(1.1875f, 0x3A)] // tie between 1.125 and 1.25, to even 1.25
    [InlineData(15.4f, 0x57)] // 15 = 1.875·2^3, the top of its binade (steps of 1 here)
    [InlineData(15.5f, 0x58)] // tie between 15 (odd) and 16: rounds up and carries into the exponent
    public void E4M3EncodesKnownValues(float value, int expected)
    {
        Assert.Equal(expected, Float8.EncodeE4M3(value));
    }

    [Theory]
    [InlineData(57344f, 0x7B)]
    [InlineData(-57344f, 0xFB)]
    [InlineData(61439.996f, 0x7B)]
    [InlineData(61440f, 0x7C)] // tie between 57344 (odd mantissa) and 65536: rounds to +inf
    [InlineData(65536f, 0x7C)]
    [InlineData(1e30f, 0x7C)]
    [InlineData(-1e30f, 0xFC)]
    [InlineData(float.PositiveInfinity, 0x7C)]
    [InlineData(float.NegativeInfinity, 0xFC)]
    [InlineData(-0f, 0x80)]
    [InlineData(1.52587890625e-05f, 0x01)] // 2^-16, smallest subnormal
    [InlineData(7.62939453125e-06f, 0x00)] // 2^-17: tie to even 0
    [InlineData(2.288818359375e-05f, 0x02)] // 3·2^-17: tie between 1 and 2, to even 2
    [InlineData(1.125f, 0x3C)] // tie between 1 and 1.25, to even 1
    [InlineData(1.375f, 0x3E)] // tie between 1.25 and 1.5, to even 1.5
    public void E5M2EncodesKnownValues(float value, int expected)
    {
        Assert.Equal(expected, Float8.EncodeE5M2(value));
    }

    [Theory]
    [InlineData(0x7FC0_0000u, 0x7F)]
    [InlineData(0xFFC0_0000u, 0xFF)] // NaN keeps its sign bit, as in PyTorch
    [InlineData(0x7F80_0001u, 0x7F)]
    [InlineData(0xFFFF_FFFFu, 0xFF)]
    public void NaNEncodesToTheNaNPatternOfItsSign(uint floatBits, int expected)
    {
        float nan = BitConverter.UInt32BitsToSingle(floatBits);
        Assert.Equal(expected, Float8.EncodeE4M3(nan));
        Assert.Equal(expected, Float8.EncodeE5M2(nan));
    }

    [Fact]
    public void EncodingMatchesABruteForceNearestValueSearch()
    {
        // Oracle: the nearest value in the decode table, extended by one step past the largest finite value
        // (480 for E4M3, 65536 for E5M2) standing for overflow; ties go to the even code.
        var random = new Random(99);
        for (int n = 0; n < 20_000; n++)
        {
            // Exponents from far below the subnormals to far above the overflow threshold, plus random mantissas.
            uint exponent = (uint)random.Next(100, 150);
            uint bits = ((uint)random.Next(2) << 31) | (exponent << 23) | (uint)random.Next(1 << 23);
            if (random.Next(8) == 0)
                bits &= 0xFFFF_0000u; // many exact ties and representable values
            float value = BitConverter.UInt32BitsToSingle(bits);

            Assert.Equal(
                Oracle(value, Float8.DecodeE4M3, top: 0x7E, overflowValue: 480, overflowCode: 0x7F),
                Float8.EncodeE4M3(value)
            );
            Assert.Equal(
                Oracle(value, Float8.DecodeE5M2, top: 0x7B, overflowValue: 65536, overflowCode: 0x7C),
                Float8.EncodeE5M2(value)
            );
        }

        static byte Oracle(float value, Func<byte, float> decode, int top, double overflowValue, int overflowCode)
        {
            double magnitude = Math.Abs((double)value);
            int best = -1;
            double bestDistance = double.PositiveInfinity;
            for (int code = 0; code <= top + 1; code++)
            {
                double candidate = code <= top ? decode((byte)code) : overflowValue;
                int candidateCode = code <= top ? code : overflowCode;
                double distance = Math.Abs(candidate - magnitude);
                if (distance < bestDistance || (distance == bestDistance && (candidateCode & 1) == 0))
                {
                    best = candidateCode;
                    bestDistance = distance;
                }
            }
            return (byte)(best | (float.IsNegative(value) ? 0x80 : 0));
        }
    }
}
