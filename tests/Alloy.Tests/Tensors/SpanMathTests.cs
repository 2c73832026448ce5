using Alloy.Tensors;
using CsCheck;

namespace Alloy.Tests.Tensors;

/// <summary>Double-accumulated span math and quickselect, against plain loops and a full sort.</summary>
public sealed class SpanMathTests
{
    [Fact]
    public void Dot_norm_and_delta_dot_accumulate_in_double()
    {
        // 10 million ones: a float32 accumulator stalls at 2^24; double is exact.
        var ones = new float[10_000_000];
        Array.Fill(ones, 1f);
        Assert.Equal(1e7, SpanMath.SumOfSquares(ones));
        Assert.Equal(Math.Sqrt(1e7), SpanMath.Norm(ones));
        var twos = new float[ones.Length];
        Array.Fill(twos, 2f);
        Assert.Equal(1e7, SpanMath.DeltaDot(twos, twos, ones));
    }

    [Fact]
    public void A_fused_weighted_difference_rounds_exactly_as_subtract_then_multiply_add()
    {
        Gen.Float[-4, 4]
            .Array[0, 70]
            .Sample(x =>
            {
                var b = x.Select((v, i) => v * 0.37f + i / 7f).ToArray();
                var start = x.Select((v, i) => (float)Math.Sin(i)).ToArray();
                var expected = start.ToArray();
                var delta = new float[x.Length];
                System.Numerics.Tensors.TensorPrimitives.Subtract(x, b, delta);
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(delta, 0.3337f, expected, expected);
                var fused = start.ToArray();
                SpanMath.AddScaledDifference(x, b, 0.3337f, fused);
                Assert.Equal(expected, fused);
            });
    }

    [Fact]
    public void Results_match_plain_loops_for_every_length_and_tail()
    {
        Gen.Float[-4, 4]
            .Array[0, 70]
            .Sample(x =>
            {
                var y = x.Select((v, i) => v * 0.5f - i).ToArray();
                var b = x.Select((v, i) => (float)i / 3).ToArray();
                double dot = 0,
                    delta = 0;
                for (int i = 0; i < x.Length; i++)
                {
                    dot += (double)x[i] * y[i];
                    delta += (double)(x[i] - b[i]) * (y[i] - b[i]);
                }
                Assert.Equal(dot, SpanMath.Dot(x, y), 1e-9);
                Assert.Equal(delta, SpanMath.DeltaDot(x, y, b), 1e-9);
                var combined = new float[x.Length];
                SpanMath.Combine(x, 0.3, y, -1.7, combined);
                Assert.Equal(x.Select((v, i) => (float)(0.3 * v - 1.7 * y[i])), combined);
            });
    }

    [Fact]
    public void Combine_is_exact_at_the_endpoints_and_for_equal_inputs_and_may_write_in_place()
    {
        var x = Enumerable.Range(0, 37).Select(i => MathF.Sin(i) * 1e3f).ToArray();
        var y = Enumerable.Range(0, 37).Select(i => MathF.Cos(i)).ToArray();
        var output = new float[37];
        SpanMath.Combine(x, 1, y, 0, output);
        Assert.Equal(x, output);
        SpanMath.Combine(x, 0.6, x, 0.4, output);
        Assert.Equal(x, output);
        // The output may be one of the inputs.
        SpanMath.Combine(x, 0.25, y, 2, output);
        SpanMath.Combine(x, 0.25, y, 2, x);
        Assert.Equal(output, x);
    }

    [Fact]
    public void Select_finds_the_same_order_statistic_as_sorting()
    {
        // Few distinct values, so ties are common.
        Gen.Int[-5, 5]
            .Array[1, 300]
            .Select(Gen.Int[0, 1000])
            .Sample(
                (values, seed) =>
                {
                    var floats = values.Select(v => (float)v).ToArray();
                    var sorted = floats.Order().ToArray();
                    int k = seed % floats.Length;
                    var work = (float[])floats.Clone();
                    Assert.Equal(sorted[k], Selection.Select(work, k));
                    Assert.All(work.AsSpan(0, k).ToArray(), v => Assert.True(v <= sorted[k]));
                    Assert.All(work.AsSpan(k + 1).ToArray(), v => Assert.True(v >= sorted[k]));
                    Assert.Equal(sorted, work.Order());
                }
            );
    }

    [Fact]
    public void Select_handles_sorted_reversed_and_constant_input()
    {
        var up = Enumerable.Range(0, 1001).Select(i => (float)i).ToArray();
        Assert.Equal(500f, Selection.Select((float[])up.Clone(), 500));
        Assert.Equal(250f, Selection.Select(up.Reverse().ToArray(), 250));
        Assert.Equal(3f, Selection.Select(Enumerable.Repeat(3f, 100).ToArray(), 99));
        Assert.Throws<ArgumentOutOfRangeException>(() => Selection.Select(new float[3], 3));
    }
}
