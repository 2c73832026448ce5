using Alloy.Methods;
using Alloy.Methods.Geometric;
using Alloy.Tensors;
using Alloy.Tests.Support;
using static Alloy.Tests.Methods.MethodTestKit;

namespace Alloy.Tests.Methods.Geometric;

/// <summary>
/// karcher: the worked example, Alloy's weights, zero-norm models, and the iteration against the reference.
/// </summary>
public sealed class KarcherTests
{
    private static readonly double Half = Math.Sqrt(0.5);
    private static readonly Karcher Method = new();

    [Fact]
    public void Two_orthogonal_vectors_meet_at_45_degrees_scaled_by_the_mean_norm()
    {
        // Direction [√½, √½], scale (2 + 1)/2.
        Golden.Check(
            Method,
            [
                [2, 0],
                [0, 1],
            ],
            -1,
            [1.5 * Half, 1.5 * Half]
        );
        Assert.Equal(
            1.060660,
            Run(
                Method,
                [
                    [2, 0],
                    [0, 1],
                ],
                -1
            )[0],
            6
        );
    }

    [Fact]
    public void Weights_move_the_mean_along_the_arc()
    {
        // On a circle the weighted Karcher mean is at the weighted mean angle: (3·0 + 1·π/2)/4 = π/8; scale 3/4 + 1/4.
        Golden.Check(
            Method,
            [
                [1, 0],
                [0, 1],
            ],
            -1,
            [Math.Cos(Math.PI / 8), Math.Sin(Math.PI / 8)],
            perModel: Weights(3, 1)
        );
        var weighted = Run(
            Method,
            [
                [1, 0],
                [0, 1],
            ],
            -1,
            perModel: Weights(3, 1)
        );
        var unweighted = Run(
            Method,
            [
                [1, 0],
                [0, 1],
            ],
            -1
        );
        Assert.NotEqual(weighted, unweighted);
        Assert.Equal(
            unweighted,
            Run(
                Method,
                [
                    [1, 0],
                    [0, 1],
                ],
                -1,
                perModel: Weights(2, 2)
            )
        );
    }

    [Fact]
    public void Without_iterations_the_result_is_the_normalized_weighted_mean_of_the_directions()
    {
        double norm = Math.Sqrt(0.75 * 0.75 + 0.25 * 0.25);
        Golden.Check(
            Method,
            [
                [1, 0],
                [0, 1],
            ],
            -1,
            [0.75 / norm, 0.25 / norm],
            Globals(("max_iter", 0)),
            Weights(3, 1)
        );
    }

    [Fact]
    public void Zero_norm_models_have_no_direction_but_count_in_the_scale()
    {
        // Direction from [1,0] and [0,1]; scale (0 + 1 + 1)/3, as mergekit computes it.
        Golden.Check(
            Method,
            [
                [0, 0],
                [1, 0],
                [0, 1],
            ],
            -1,
            [2.0 / 3 * Half, 2.0 / 3 * Half]
        );
        Assert.Equal(
            [0f, 0f],
            Run(
                Method,
                [
                    [0, 0],
                    [0, 0],
                ],
                -1
            )
        );
    }

    [Fact]
    public void Many_models_match_the_reference_iteration()
    {
        float[][] inputs = [Golden.Values(120, 31), Golden.Values(120, 32, 2), Golden.Values(120, 33, 0.5)];
        Golden.Check(
            Method,
            inputs,
            -1,
            x => GeometricReference.Karcher(x, [1 / 3.0, 1 / 3.0, 1 / 3.0], 10, 1e-5),
            operandScale: 2
        );
        Golden.Check(
            Method,
            inputs,
            -1,
            x => GeometricReference.Karcher(x, [0.1, 0.6, 0.3], 10, 1e-5),
            perModel: Weights(1, 6, 3),
            operandScale: 2
        );
    }

    [Fact]
    public void One_point_and_identical_points_give_that_point()
    {
        var a = Golden.Values(80, 34);
        Assert.Equal(a, Run(Method, [a], -1));
        Expect.Close("identical", GeometricReference.ToDouble(a), Run(Method, [a, a, a], -1), DType.F32, 1);
    }

    [Theory]
    [InlineData("max_iter", 2.5, "whole number")]
    [InlineData("max_iter", -1, "whole number")]
    [InlineData("tol", -1e-5, "a number of at least 0")]
    public void Bad_settings_are_refused(string name, double value, string message)
    {
        var e = Assert.Throws<AlloyException>(() =>
            Run(
                Method,
                [
                    [1],
                    [2],
                ],
                -1,
                Globals((name, value))
            )
        );
        Assert.Contains(message, e.Message);
        Assert.Contains(name, e.Message);
    }

    [Fact]
    public void Negative_or_all_zero_weights_are_refused()
    {
        Assert.Contains(
            "-1 is outside the range; it takes a number of at least 0",
            Assert
                .Throws<AlloyException>(() =>
                    Run(
                        Method,
                        [
                            [1],
                            [2],
                        ],
                        -1,
                        perModel: Weights(1, -1)
                    )
                )
                .Message
        );
        Assert.Contains(
            "all zero",
            Assert
                .Throws<AlloyException>(() =>
                    Run(
                        Method,
                        [
                            [1],
                            [2],
                        ],
                        -1,
                        perModel: Weights(0, 0)
                    )
                )
                .Message
        );
    }
}
