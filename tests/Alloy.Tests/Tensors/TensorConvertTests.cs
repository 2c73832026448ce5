using Alloy.Tensors;

namespace Alloy.Tests.Tensors;

public sealed class TensorConvertTests
{
    private static float[] ToFloat32(byte[] bytes, DType dtype)
    {
        var result = new float[bytes.Length / dtype.Size()];
        TensorConvert.ToFloat32(bytes, dtype, result);
        return result;
    }

    private static byte[] FromFloat32(float[] values, DType dtype)
    {
        var result = new byte[values.Length * dtype.Size()];
        TensorConvert.FromFloat32(values, dtype, result);
        return result;
    }

    private static uint[] Bits(IEnumerable<float> values) => values.Select(BitConverter.SingleToUInt32Bits).ToArray();

    public static TheoryData<DType, byte[], float[]> HandWritten =>
        new()
        {
            { DType.F32, [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x20, 0xC1], [1f, -10f] },
            {
                DType.F16,
                [0x00, 0x3C, 0x00, 0xC0, 0x00, 0x7C, 0x01, 0x00],
                [1f, -2f, float.PositiveInfinity, MathF.ScaleB(1, -24)]
            },
            { DType.BF16, [0x80, 0x3F, 0xC0, 0xBF, 0x80, 0xFF], [1f, -1.5f, float.NegativeInfinity] },
            {
                DType.F64,
                [
                    0x00,
                    0x00,
                    0x00,
                    0x00,
                    0x00,
                    0x00,
                    0xF8,
                    0x3F, // 1.5
                    0x00,
                    0x00,
                    0x00,
                    0x10,
                    0x00,
                    0x00,
                    0xF0,
                    0x3F, // 1 + 2^-24: tie, rounds to even 1
                    0x00,
                    0x00,
                    0x00,
                    0x30,
                    0x00,
                    0x00,
                    0xF0,
                    0x3F, // 1 + 3·2^-24: tie, rounds up to 1 + 2^-22
                    0x00,
                    0x00,
                    0x00,
                    0x00,
                    0x00,
                    0x00,
                    0xF0,
                    0x7F, // +inf
                ],
                [1.5f, 1f, 1f + MathF.ScaleB(1, -22), float.PositiveInfinity]
            },
            {
                DType.I64,
                [
                    0xFF,
                    0xFF,
                    0xFF,
                    0xFF,
                    0xFF,
                    0xFF,
                    0xFF,
                    0xFF, // -1
                    0x01,
                    0x00,
                    0x00,
                    0x01,
                    0x00,
                    0x00,
                    0x00,
                    0x00, // 2^24 + 1: rounds to even 2^24
                    0x00,
                    0x00,
                    0x00,
                    0x00,
                    0x00,
                    0x00,
                    0x00,
                    0x80, // long.MinValue = -2^63
                ],
                [-1f, 16777216f, -9.223372E+18f]
            },
            {
                DType.I32,
                [0x01, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x80, 0x03, 0x00, 0x00, 0x01],
                [1f, -1f, -2147483648f, 16777220f]
            },
            { DType.I16, [0xFF, 0x7F, 0x00, 0x80, 0x2A, 0x00], [32767f, -32768f, 42f] },
            { DType.I8, [0x80, 0x7F, 0xFF, 0x00], [-128f, 127f, -1f, 0f] },
            { DType.U8, [0x80, 0xFF, 0x00], [128f, 255f, 0f] },
            { DType.Bool, [0x00, 0x01, 0x02], [0f, 1f, 1f] },
            { DType.F8_E4M3, [0x38, 0x7E, 0x01, 0xC0], [1f, 448f, MathF.ScaleB(1, -9), -2f] },
            { DType.F8_E5M2, [0x3C, 0x7B, 0x7C, 0x01], [1f, 57344f, float.PositiveInfinity, MathF.ScaleB(1, -16)] },
        };

    [Theory]
    [MemberData(nameof(HandWritten))]
    public void ToFloat32DecodesHandWrittenBytes(DType dtype, byte[] bytes, float[] expected)
    {
        Assert.Equal(Bits(expected), Bits(ToFloat32(bytes, dtype)));
    }

    [Fact]
    public void ToFloat32ReadsFromUnalignedSlices()
    {
        // Tensor data in a safetensors file starts at any byte offset, so the source need not be aligned.
        byte[] buffer = [0xEE, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xF8, 0x3F, 0x80, 0x3F];
        var f64 = new float[1];
        TensorConvert.ToFloat32(buffer.AsSpan(1, 8), DType.F64, f64);
        Assert.Equal(1.5f, f64[0]);
        var bf16 = new float[1];
        TensorConvert.ToFloat32(buffer.AsSpan(9, 2), DType.BF16, bf16);
        Assert.Equal(1f, bf16[0]);
        var f32 = new float[1];
        TensorConvert.ToFloat32(buffer.AsSpan(7, 4), DType.F32, f32);
        Assert.Equal(BitConverter.ToSingle(buffer, 7), f32[0]);
    }

    public static TheoryData<DType> AllDTypes => new(Enum.GetValues<DType>());

    [Theory]
    [MemberData(nameof(AllDTypes))]
    public void ToFloat32RejectsAMismatchedLength(DType dtype)
    {
        var source = new byte[3 * dtype.Size() + 1];
        Assert.Throws<ArgumentException>(() => TensorConvert.ToFloat32(source, dtype, new float[3]));
        Assert.Throws<ArgumentException>(() =>
            TensorConvert.ToFloat32(source.AsSpan(0, 2 * dtype.Size()), dtype, new float[3])
        );
    }

    [Theory]
    [MemberData(nameof(AllDTypes))]
    public void CanWriteExactlyTheFloatDTypes(DType dtype)
    {
        Assert.Equal(dtype.IsFloat(), TensorConvert.CanWrite(dtype));
        if (TensorConvert.CanWrite(dtype))
        {
            // Writing must succeed and round-trip a value every format holds exactly.
            var bytes = FromFloat32([1.5f, -0.25f], dtype);
            Assert.Equal([1.5f, -0.25f], ToFloat32(bytes, dtype));
        }
        else
        {
            Assert.Throws<ArgumentException>(() => TensorConvert.FromFloat32([1f], dtype, new byte[dtype.Size()]));
        }
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    [InlineData(DType.F8_E4M3)]
    [InlineData(DType.F8_E5M2)]
    public void FromFloat32RejectsAMismatchedLength(DType dtype)
    {
        Assert.Throws<ArgumentException>(() =>
            TensorConvert.FromFloat32(new float[3], dtype, new byte[3 * dtype.Size() - 1])
        );
        Assert.Throws<ArgumentException>(() =>
            TensorConvert.FromFloat32(new float[3], dtype, new byte[3 * dtype.Size() + 1])
        );
    }

    [Fact]
    public void UndefinedDTypeIsRejected()
    {
        Assert.ThrowsAny<ArgumentException>(() => TensorConvert.ToFloat32([0], (DType)99, new float[1]));
        Assert.ThrowsAny<ArgumentException>(() => TensorConvert.FromFloat32([0f], (DType)99, new byte[1]));
    }

    /// <summary>
    /// Random bit patterns plus the F16 edge cases: overflow threshold, subnormals, ties, NaN, inf, zeros.
    /// </summary>
    private static float[] F16Inputs()
    {
        var values = new List<float>
        {
            65504f,
            65519.996f,
            65520f,
            -65520f,
            1e10f,
            float.MaxValue,
            float.Epsilon,
            MathF.ScaleB(1, -14),
            MathF.ScaleB(1, -24),
            MathF.ScaleB(1, -25),
            MathF.ScaleB(3, -26),
            MathF.ScaleB(3, -25),
            1f + MathF.ScaleB(1, -11),
            1f + MathF.ScaleB(3, -11),
            0f,
            -0f,
            float.PositiveInfinity,
            float.NegativeInfinity,
            float.NaN,
            -float.NaN,
            BitConverter.UInt32BitsToSingle(0x7F80_0001),
            BitConverter.UInt32BitsToSingle(0xFFFF_FFFF),
        };
        var random = new Random(7);
        for (int i = 0; i < 200_001; i++)
        {
            uint bits = (uint)random.NextInt64(0, 1L << 32);
            if (i % 2 == 0)
                bits = (bits & 0x807F_FFFFu) | ((uint)random.Next(95, 148) << 23); // concentrate on F16's range
            values.Add(BitConverter.UInt32BitsToSingle(bits));
        }
        return values.ToArray();
    }

    [Fact]
    public void F16WritingMatchesDotNetHalfConversion()
    {
        var inputs = F16Inputs();
        var bytes = FromFloat32(inputs, DType.F16);
        for (int i = 0; i < inputs.Length; i++)
        {
            ushort expected = BitConverter.HalfToUInt16Bits((Half)inputs[i]);
            ushort actual = BitConverter.ToUInt16(bytes, 2 * i);
            Assert.True(
                expected == actual,
                $"{BitConverter.SingleToUInt32Bits(inputs[i]):X8}: expected {expected:X4}, got {actual:X4}"
            );
            if (float.IsNaN(inputs[i]))
                Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf(actual)));
        }
        // Spot checks that the reference itself behaves as required: RNE ties, overflow to inf.
        Assert.Equal(0x3C00, BitConverter.ToUInt16(FromFloat32([1f + MathF.ScaleB(1, -11)], DType.F16)));
        Assert.Equal(0x3C02, BitConverter.ToUInt16(FromFloat32([1f + MathF.ScaleB(3, -11)], DType.F16)));
        Assert.Equal(0x7BFF, BitConverter.ToUInt16(FromFloat32([65519.996f], DType.F16)));
        Assert.Equal(0x7C00, BitConverter.ToUInt16(FromFloat32([65520f], DType.F16)));
        Assert.Equal(0xFC00, BitConverter.ToUInt16(FromFloat32([float.NegativeInfinity], DType.F16)));
    }

    [Fact]
    public void F16ReadingMatchesDotNetHalfForEveryPattern()
    {
        var bytes = new byte[2 * 0x1_0000];
        for (int b = 0; b < 0x1_0000; b++)
            BitConverter.TryWriteBytes(bytes.AsSpan(2 * b), (ushort)b);
        var values = ToFloat32(bytes, DType.F16);
        for (int b = 0; b < 0x1_0000; b++)
        {
            Assert.Equal(
                BitConverter.SingleToUInt32Bits((float)BitConverter.UInt16BitsToHalf((ushort)b)),
                BitConverter.SingleToUInt32Bits(values[b])
            );
        }
    }

    [Theory]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    [InlineData(DType.F8_E4M3)]
    [InlineData(DType.F8_E5M2)]
    public void EveryNonNaNPatternSurvivesARoundTripThroughFloat32(DType dtype)
    {
        int size = dtype.Size();
        int count = 1 << (8 * size);
        var bytes = new byte[count * size];
        for (int p = 0; p < count; p++)
        {
            if (size == 2)
                BitConverter.TryWriteBytes(bytes.AsSpan(2 * p), (ushort)p);
            else
                bytes[p] = (byte)p;
        }
        var floats = ToFloat32(bytes, dtype);
        var back = FromFloat32(floats, dtype);
        for (int p = 0; p < count; p++)
        {
            if (float.IsNaN(floats[p]))
            {
                Assert.True(float.IsNaN(ToFloat32(back.AsSpan(p * size, size).ToArray(), dtype)[0]));
            }
            else
            {
                Assert.Equal(bytes.AsSpan(p * size, size).ToArray(), back.AsSpan(p * size, size).ToArray());
            }
        }
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    public void F32AndF64RoundTripBitExact(DType dtype)
    {
        var random = new Random(11);
        var values = new float[1001];
        for (int i = 0; i < values.Length; i++)
            values[i] = BitConverter.UInt32BitsToSingle((uint)random.NextInt64(0, 1L << 32));
        values[0] = BitConverter.UInt32BitsToSingle(0x7FC0_1234); // quiet NaN with a payload
        var bytes = FromFloat32(values, dtype);
        if (dtype == DType.F32)
            Assert.Equal(values.SelectMany(BitConverter.GetBytes), bytes);
        else
            Assert.Equal(values.Select(v => (double)v).SelectMany(BitConverter.GetBytes), bytes);
        var back = ToFloat32(bytes, dtype);
        for (int i = 0; i < values.Length; i++)
        {
            // F32 is a byte copy, so even signalling NaNs survive; the F64 hardware conversions quiet them.
            if (
                dtype == DType.F64
                && float.IsNaN(values[i])
                && (BitConverter.SingleToUInt32Bits(values[i]) & 0x0040_0000) == 0
            )
            {
                Assert.True(float.IsNaN(back[i]));
            }
            else
            {
                Assert.Equal(BitConverter.SingleToUInt32Bits(values[i]), BitConverter.SingleToUInt32Bits(back[i]));
            }
        }
    }

    [Fact]
    public void BF16AndFloat8WritingMatchTheScalarConversionsAtEveryLength()
    {
        // Lengths 0..99 cross every vector width's boundary, so the dispatch and scalar tail are both exercised.
        var random = new Random(5);
        for (int length = 0; length < 100; length++)
        {
            var values = new float[length];
            for (int i = 0; i < length; i++)
            {
                values[i] = random.Next(4) switch
                {
                    0 => float.NaN,
                    1 => (float)(random.NextDouble() * 1000 - 500), // the range the F8 formats actually hold
                    _ => BitConverter.UInt32BitsToSingle((uint)random.NextInt64(0, 1L << 32)),
                };
            }
            Assert.Equal(
                values.SelectMany(v => BitConverter.GetBytes(((BFloat16)v).Bits)),
                FromFloat32(values, DType.BF16)
            );
            Assert.Equal(values.Select(Float8.EncodeE4M3), FromFloat32(values, DType.F8_E4M3));
            Assert.Equal(values.Select(Float8.EncodeE5M2), FromFloat32(values, DType.F8_E5M2));

            var bf16 = FromFloat32(values, DType.BF16);
            var widened = ToFloat32(bf16, DType.BF16);
            for (int i = 0; i < length; i++)
                Assert.Equal(
                    (uint)BitConverter.ToUInt16(bf16, 2 * i) << 16,
                    BitConverter.SingleToUInt32Bits(widened[i])
                );
        }
    }
}
