using Alloy.Methods;
using Alloy.Methods.Geometric;
using static Alloy.Tests.Methods.MethodTestKit;

namespace Alloy.Tests.Methods.Geometric;

/// <summary>arcee_fusion against a direct computation (full sort), its degenerate cases and input counts.</summary>
public sealed class ArceeFusionTests
{
    private static readonly ArceeFusion Method = new();

    /// <summary>
    /// A base and a fine-tune that changes every fourth row and every fifth element more than the rest.
    /// </summary>
    private static (float[] Base, float[] Tuned) Pair(int rows, int columns, int seed)
    {
        var b = Golden.Values(rows * columns, seed);
        var noise = Golden.Values(rows * columns, seed + 1, 0.02);
        var x = b.Select((v, i) => v + noise[i] * (i / columns % 4 == 0 ? 10 : 1) * (i % 5 == 0 ? 10 : 1)).ToArray();
        return (b, x);
    }

    [Theory]
    [InlineData(8, 16)]
    [InlineData(37, 23)]
    [InlineData(1, 101)]
    public void Matches_an_independent_computation(int rows, int columns)
    {
        var (b, x) = Pair(rows, columns, 61);
        var expected = GeometricReference.ArceeFusion(b, x, columns);
        Assert.Equal(expected, Run(Method, [b, x], 0, shape: [rows, columns]));
        Assert.Equal(expected, Run(Method, [x, b], 1, shape: [rows, columns]));
        // Some elements come from each model.
        Assert.Contains(expected.Select((v, i) => v == x[i] && v != b[i]), kept => kept);
        Assert.Contains(expected.Select((v, i) => v == b[i] && v != x[i]), dropped => dropped);
    }

    [Fact]
    public void A_vector_is_one_row()
    {
        var (b, x) = Pair(1, 64, 63);
        Assert.Equal(GeometricReference.ArceeFusion(b, x, 64), Run(Method, [b, x], 0, shape: [64]));
    }

    [Fact]
    public void When_most_rows_are_unchanged_the_threshold_is_zero_and_everything_is_kept()
    {
        // mergekit's quirk: Q(0.25) = Q(0.5) = Q(0.75) = 0, so every importance passes and the output is the fine-tune.
        var b = Golden.Values(40, 65);
        var x = (float[])b.Clone();
        for (int i = 0; i < 8; i++)
            x[i] += 0.5f;
        Assert.Equal(x, Run(Method, [b, x], 0, shape: [5, 8]));
    }

    [Fact]
    public void Identical_inputs_give_that_input()
    {
        var a = Golden.Values(30, 66);
        Assert.Equal(a, Run(Method, [a, a], 0, shape: [5, 6]));
    }

    [Fact]
    public void Exactly_the_base_and_one_other_model()
    {
        var e = Assert.Throws<AlloyException>(() =>
            Run(
                Method,
                [
                    [0],
                    [1],
                    [2],
                ],
                0
            )
        );
        Assert.Contains("arcee_fusion needs exactly two models, one of them base_model", e.Message);
        Assert.Equal(
            [3f],
            Run(
                Method,
                [
                    [3],
                ],
                0
            )
        );
    }
}
