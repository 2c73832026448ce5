using Alloy.Methods;
using Alloy.Methods.Geometric;
using static Alloy.Tests.Methods.MethodTestKit;

namespace Alloy.Tests.Methods.Geometric;

/// <summary>model_stock: the worked examples, orthogonal offsets, filter_wise rows, and the refused cases.</summary>
public sealed class ModelStockTests
{
    private static readonly ModelStock Method = new();

    [Fact]
    public void Two_models_at_45_degrees()
    {
        // cos = √½, t = 2c/(1 + c); out = t·mean([1,0], [1,1]) from base 0.
        double c = Math.Sqrt(0.5),
            t = 2 * c / (1 + c);
        Golden.Check(
            Method,
            [
                [0, 0],
                [1, 0],
                [1, 1],
            ],
            0,
            [t, t / 2]
        );
        var result = Run(
            Method,
            [
                [0, 0],
                [1, 0],
                [1, 1],
            ],
            0
        );
        Assert.Equal(0.828427, result[0], 6);
        Assert.Equal(0.414214, result[1], 6);
    }

    [Fact]
    public void Three_models_use_the_mean_of_pairwise_cosines()
    {
        // Pairs: √½, 0, √½ → mean √2/3; t = 3c/(1 + 2c); mean of the models is [2/3, 2/3].
        double c = Math.Sqrt(2) / 3,
            t = 3 * c / (1 + 2 * c);
        Golden.Check(
            Method,
            [
                [0, 0],
                [1, 0],
                [1, 1],
                [0, 1],
            ],
            0,
            [t * 2 / 3, t * 2 / 3]
        );
        Assert.Equal(
            0.485281,
            Run(
                Method,
                [
                    [0, 0],
                    [1, 0],
                    [1, 1],
                    [0, 1],
                ],
                0
            )[0],
            6
        );
    }

    [Fact]
    public void Orthogonal_offsets_give_the_base()
    {
        float[] b = [1, 2, 3];
        Assert.Equal(
            b,
            Run(
                Method,
                [
                    [2, 2, 3],
                    b,
                    [1, 3, 3],
                    [1, 2, 4],
                ],
                1
            )
        );
    }

    [Fact]
    public void Filter_wise_computes_t_per_row()
    {
        // Row 0: offsets [1,0] and [1,1] (t = 2c/(1+c), c = √½). Row 1: orthogonal offsets → t = 0 → the base row.
        double c = Math.Sqrt(0.5),
            t = 2 * c / (1 + c);
        float[][] inputs =
        [
            [0, 0, 5, 5],
            [1, 0, 6, 5],
            [1, 1, 5, 6],
        ];
        Golden.Check(Method, inputs, 0, [t, t / 2, 5, 5], Globals(("filter_wise", 1)), shape: [2, 2]);
        // Per tensor the two rows share one cosine instead.
        Golden.Check(Method, inputs, 0, x => GeometricReference.ModelStock(x[0], [x[1], x[2]], 4), shape: [2, 2]);
    }

    [Fact]
    public void Random_tensors_match_the_reference_per_tensor_and_per_row()
    {
        var b = Golden.Values(60, 41);
        float[][] inputs =
        [
            b,
            .. Enumerable.Range(0, 3).Select(k => b.Zip(Golden.Values(60, 42 + k, 0.1), (x, d) => x + d).ToArray()),
        ];
        Golden.Check(
            Method,
            inputs,
            0,
            x => GeometricReference.ModelStock(x[0], x[1..], 60),
            shape: [6, 10],
            operandScale: 1
        );
        Golden.Check(
            Method,
            inputs,
            0,
            x => GeometricReference.ModelStock(x[0], x[1..], 10),
            Globals(("filter_wise", 1)),
            shape: [6, 10],
            operandScale: 1
        );
    }

    [Fact]
    public void Identical_inputs_give_that_input()
    {
        var a = Golden.Values(30, 45);
        Assert.Equal(a, Run(Method, [a, a, a], 0));
    }

    [Fact]
    public void Opposite_offsets_would_divide_by_zero_and_are_refused()
    {
        // N = 2 with cos = −1 = −1/(N−1): mergekit writes inf/NaN.
        var e = Assert.Throws<AlloyException>(() =>
            Run(
                Method,
                [
                    [0, 0],
                    [1, 0],
                    [-2, 0],
                ],
                0
            )
        );
        Assert.Contains("divides by zero", e.Message);
        Assert.Contains("'t.weight'", e.Message);
    }

    [Fact]
    public void Fewer_than_three_inputs_are_refused_but_the_base_alone_passes_through()
    {
        var e = Assert.Throws<AlloyException>(() =>
            Run(
                Method,
                [
                    [0],
                    [1],
                ],
                0
            )
        );
        Assert.Contains("model_stock needs base_model plus at least two other models", e.Message);
        Assert.Equal(
            [7f],
            Run(
                Method,
                [
                    [7],
                ],
                0
            )
        );
    }
}
