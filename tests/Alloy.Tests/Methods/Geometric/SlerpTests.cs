using Alloy.Methods;
using Alloy.Methods.Geometric;
using Alloy.Tensors;
using Alloy.Tests.Support;
using static Alloy.Tests.Methods.MethodTestKit;

namespace Alloy.Tests.Methods.Geometric;

/// <summary>slerp: worked examples of mergekit's rules, endpoints, the colinear rule and input counts.</summary>
public sealed class SlerpTests
{
    private static readonly double Half = Math.Sqrt(0.5);
    private static readonly Slerp Method = new();

    [Fact]
    public void Orthogonal_unit_vectors_at_t_half_meet_on_the_diagonal()
    {
        Golden.Check(
            Method,
            [
                [1, 0],
                [0, 1],
            ],
            0,
            [Half, Half],
            Globals(("t", 0.5))
        );
        Assert.Equal(
            0.707107,
            Run(
                Method,
                [
                    [1, 0],
                    [0, 1],
                ],
                0,
                Globals(("t", 0.5))
            )[0],
            6
        );
    }

    [Fact]
    public void Coefficients_apply_to_the_unnormalized_vectors()
    {
        // [2,0] and [0,1] are orthogonal: both coefficients are sin(π/4)/sin(π/2) = √½, applied to the raw vectors.
        Golden.Check(
            Method,
            [
                [2, 0],
                [0, 1],
            ],
            0,
            [2 * Half, Half],
            Globals(("t", 0.5))
        );
    }

    [Fact]
    public void Colinear_vectors_are_interpolated_linearly()
    {
        Golden.Check(
            Method,
            [
                [1, 1],
                [2, 2],
            ],
            0,
            [1.5, 1.5],
            Globals(("t", 0.5))
        );
        // Anti-colinear too (|cos| > 0.9995): the lerp passes through zero.
        Golden.Check(
            Method,
            [
                [1, 1],
                [-2, -2],
            ],
            0,
            [-0.5, -0.5],
            Globals(("t", 0.5))
        );
    }

    [Fact]
    public void T_0_3_between_45_degree_vectors()
    {
        // θ = π/4: s0 = sin(0.7θ)/sin θ, s1 = sin(0.3θ)/sin θ; out = s0·[1,0] + s1·[1,1].
        double theta = Math.PI / 4,
            s0 = Math.Sin(0.7 * theta) / Math.Sin(theta),
            s1 = Math.Sin(0.3 * theta) / Math.Sin(theta);
        Golden.Check(
            Method,
            [
                [1, 0],
                [1, 1],
            ],
            0,
            [s0 + s1, s1],
            Globals(("t", 0.3))
        );
        var result = Run(
            Method,
            [
                [1, 0],
                [1, 1],
            ],
            0,
            Globals(("t", 0.3))
        );
        Assert.Equal(1.069066, result[0], 6);
        Assert.Equal(0.330142, result[1], 6);
    }

    [Fact]
    public void The_base_is_the_t_0_end_wherever_it_sits_among_the_inputs()
    {
        Golden.Check(
            Method,
            [
                [1, 1],
                [1, 0],
            ],
            1,
            x => GeometricReference.Slerp(x[1], x[0], 0.3),
            Globals(("t", 0.3))
        );
    }

    [Fact]
    public void T_0_and_t_1_return_the_endpoints_exactly()
    {
        var a = Golden.Values(100, 1);
        var b = Golden.Values(100, 2);
        Assert.Equal(a, Run(Method, [a, b], 0, Globals(("t", 0))));
        Assert.Equal(b, Run(Method, [a, b], 0, Globals(("t", 1))));
    }

    [Fact]
    public void Whole_tensors_match_the_reference_in_float32_and_bfloat16()
    {
        Golden.Check(
            Method,
            [Golden.Values(300, 3), Golden.Values(300, 4)],
            0,
            x => GeometricReference.Slerp(x[0], x[1], 0.37),
            Globals(("t", 0.37)),
            operandScale: 1
        );
    }

    [Fact]
    public void Identical_inputs_give_that_input()
    {
        var a = Golden.Values(50, 5);
        Assert.Equal(a, Run(Method, [a, a], 0, Globals(("t", 0.4))));
    }

    [Fact]
    public void A_zero_tensor_is_not_normalized()
    {
        // The zero base has no direction: cos = 0, θ = π/2, so the result is sin(tπ/2)·other.
        var result = Run(
            Method,
            [
                [0, 0],
                [3, 4],
            ],
            0,
            Globals(("t", 0.5))
        );
        Expect.Close("result", [3 * Half, 4 * Half], result, DType.F32);
    }

    [Fact]
    public void One_input_passes_through_and_three_are_refused()
    {
        Assert.Equal(
            [1f, 2f],
            Run(
                Method,
                [
                    [1, 2],
                ],
                0,
                Globals(("t", 0.5))
            )
        );
        var e = Assert.Throws<AlloyException>(() =>
            Run(
                Method,
                [
                    [1],
                    [2],
                    [3],
                ],
                0,
                Globals(("t", 0.5))
            )
        );
        Assert.Contains("slerp needs exactly two models, one of them base_model", e.Message);
        Assert.Contains("'t.weight'", e.Message);
    }
}

/// <summary>nuslerp: t from the weights, the three vector modes on a 2×3 matrix by hand, task-vector mode.</summary>
public sealed class NuSlerpTests
{
    private static readonly double Half = Math.Sqrt(0.5);
    private static readonly NuSlerp Method = new();

    [Fact]
    public void Weights_1_and_3_give_t_three_quarters()
    {
        // t = 3/4 between orthogonal unit vectors: [sin(π/8), sin(3π/8)].
        Golden.Check(
            Method,
            [
                [1, 0],
                [0, 1],
            ],
            -1,
            [Math.Sin(Math.PI / 8), Math.Sin(3 * Math.PI / 8)],
            perModel: Weights(1, 3)
        );
        var result = Run(
            Method,
            [
                [1, 0],
                [0, 1],
            ],
            -1,
            perModel: Weights(1, 3)
        );
        Assert.Equal(0.382683, result[0], 6);
        Assert.Equal(0.923880, result[1], 6);
    }

    // v0 = [[1,0,0],[1,0,0]], v1 = [[0,1,0],[2,0,0]], t = 0.5 (weights 1, 1).
    private static readonly float[] V0 = [1, 0, 0, 1, 0, 0];
    private static readonly float[] V1 = [0, 1, 0, 2, 0, 0];
    private static readonly long[] Shape = [2, 3];

    [Fact]
    public void Row_mode_interpolates_each_W_i()
    {
        // Row 0: orthogonal unit vectors → √½ each. Row 1: [1,0,0] and [2,0,0] are parallel → lerp [1.5, 0, 0].
        double[] expected = [Half, Half, 0, 1.5, 0, 0];
        Golden.Check(Method, [V0, V1], -1, expected, Globals(("nuslerp_flatten", 0)), Weights(1, 1), Shape);
    }

    [Fact]
    public void Row_wise_mode_interpolates_each_column_W_j()
    {
        // Column 0: [1,1] and [0,2] at 45°: c = sin(π/8)/sin(π/4) on both → c·[1,3].
        // Column 1: [0,0] and [1,0]: the zero vector makes cos 0, θ = π/2 → √½·[1,0]. Column 2: both zero → 0.
        double c = Math.Sin(Math.PI / 8) / Math.Sin(Math.PI / 4);
        double[] expected = [c, Half, 0, 3 * c, 0, 0];
        Golden.Check(
            Method,
            [V0, V1],
            -1,
            expected,
            Globals(("nuslerp_flatten", 0), ("nuslerp_row_wise", 1)),
            Weights(1, 1),
            Shape
        );
    }

    [Fact]
    public void Flatten_mode_interpolates_the_whole_tensor()
    {
        // cos θ = v0·v1/(‖v0‖‖v1‖) = 2/(√2·√5); both coefficients are sin(θ/2)/sin θ; out = s·(v0 + v1).
        double theta = Math.Acos(2 / Math.Sqrt(10)),
            s = Math.Sin(theta / 2) / Math.Sin(theta);
        double[] expected = [s, s, 0, 3 * s, 0, 0];
        Golden.Check(Method, [V0, V1], -1, expected, null, Weights(1, 1), Shape);
        // Flatten wins over row_wise, as in mergekit.
        Golden.Check(Method, [V0, V1], -1, expected, Globals(("nuslerp_row_wise", 1)), Weights(1, 1), Shape);
    }

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, false)]
    [InlineData(false, true)]
    public void Every_mode_matches_the_reference_on_a_3d_tensor(bool flatten, bool rowWise)
    {
        long[] shape = [3, 4, 5];
        var globals = Globals(("nuslerp_flatten", flatten ? 1 : 0), ("nuslerp_row_wise", rowWise ? 1 : 0));
        Golden.Check(
            Method,
            [Golden.Values(60, 11), Golden.Values(60, 12)],
            -1,
            x => GeometricReference.NuSlerp(x[0], x[1], 0.25, shape, flatten, rowWise),
            globals,
            Weights(3, 1),
            shape,
            operandScale: 1
        );
    }

    [Fact]
    public void With_a_base_the_task_vectors_are_interpolated_and_added_back()
    {
        // base [1,2]; task vectors [1,0] and [0,1]; t = 3/4.
        double[] expected = [1 + Math.Sin(Math.PI / 8), 2 + Math.Sin(3 * Math.PI / 8)];
        Golden.Check(
            Method,
            [
                [2, 2],
                [1, 2],
                [1, 3],
            ],
            1,
            expected,
            perModel: Weights(1, null, 3)
        );
    }

    [Fact]
    public void Weights_summing_to_zero_give_t_one_half()
    {
        Golden.Check(
            Method,
            [
                [1, 0],
                [0, 1],
            ],
            -1,
            [Half, Half],
            perModel: Weights(1, -1)
        );
    }

    [Fact]
    public void Identical_inputs_give_that_input()
    {
        var a = Golden.Values(40, 13);
        Assert.Equal(a, Run(Method, [a, a], -1, perModel: Weights(1, 2)));
        Assert.Equal(a, Run(Method, [a, a], -1, Globals(("nuslerp_flatten", 0)), Weights(1, 2), shape: [8, 5]));
    }

    [Fact]
    public void The_base_can_not_be_one_of_the_two_models_and_two_are_needed()
    {
        var e = Assert.Throws<AlloyException>(() =>
            Run(
                Method,
                [
                    [1],
                    [2],
                ],
                0,
                perModel: Weights(null, 1)
            )
        );
        Assert.Contains("the base can not be one of the two models", e.Message);
        e = Assert.Throws<AlloyException>(() =>
            Run(
                Method,
                [
                    [1],
                    [2],
                    [3],
                ],
                -1,
                perModel: Weights(1, 1, 1)
            )
        );
        Assert.Contains("nuslerp needs exactly two models", e.Message);
        Assert.Equal(
            [5f],
            Run(
                Method,
                [
                    [5],
                ],
                -1,
                perModel: Weights(1)
            )
        );
    }
}

/// <summary>
/// multislerp: the worked example, the antipodal fallback and error, and the full algorithm in double.
/// </summary>
public sealed class MultiSlerpTests
{
    private static readonly double Half = Math.Sqrt(0.5);
    private static readonly MultiSlerp Method = new();

    [Fact]
    public void Two_orthogonal_unit_vectors_with_equal_weights()
    {
        Golden.Check(
            Method,
            [
                [1, 0],
                [0, 1],
            ],
            -1,
            [Half, Half],
            perModel: Weights(0.5, 0.5)
        );
    }

    [Fact]
    public void Without_normalizing_the_scale_is_the_weighted_sum_of_norms()
    {
        Golden.Check(
            Method,
            [
                [1, 0],
                [0, 1],
            ],
            -1,
            [2 * Half, 2 * Half],
            Globals(("normalize_weights", 0)),
            Weights(1, 1)
        );
    }

    [Fact]
    public void With_a_base_it_works_on_task_vectors()
    {
        Golden.Check(
            Method,
            [
                [2, 1],
                [1, 1],
                [1, 2],
            ],
            1,
            [1 + Half, 1 + Half],
            perModel: Weights(1, null, 1)
        );
    }

    [Fact]
    public void Many_models_match_every_step_of_the_algorithm_done_in_double()
    {
        float[][] inputs =
        [
            Golden.Values(200, 21),
            Golden.Values(200, 22),
            Golden.Values(200, 23),
            Golden.Values(200, 24),
        ];
        double[] w = [0.5, 1.5, 1, 2];
        Golden.Check(
            Method,
            inputs,
            -1,
            x => GeometricReference.MultiSlerp(x, w, null, true, 1e-8),
            perModel: Weights(w.Cast<double?>().ToArray()),
            operandScale: 1
        );
        Golden.Check(
            Method,
            inputs,
            2,
            x => GeometricReference.MultiSlerp([x[0], x[1], x[3]], [0.5, 1.5, 2], x[2], false, 1e-8),
            Globals(("normalize_weights", 0)),
            Weights(0.5, 1.5, null, 2),
            operandScale: 1
        );
    }

    [Fact]
    public void A_large_eps_shortens_the_result_by_cos_eps_as_mergekit_does()
    {
        float[][] inputs = [Golden.Values(30, 25), Golden.Values(30, 26), Golden.Values(30, 27)];
        Golden.Check(
            Method,
            inputs,
            -1,
            x => GeometricReference.MultiSlerp(x, [1, 1, 1], null, true, 0.3),
            Globals(("eps", 0.3)),
            Weights(1, 1, 1),
            operandScale: 1
        );
    }

    [Fact]
    public void Two_antipodal_vectors_fall_back_to_the_weighted_sum()
    {
        Golden.Check(
            Method,
            [
                [2, 0],
                [-1, 0],
            ],
            -1,
            [0.5, 0],
            perModel: Weights(1, 1)
        );
    }

    [Fact]
    public void Three_vectors_whose_directions_cancel_are_an_error()
    {
        var e = Assert.Throws<AlloyException>(() =>
            Run(
                Method,
                [
                    [1, 0],
                    [-1, 0],
                    [1, 0],
                ],
                -1,
                perModel: Weights(1, 2, 1)
            )
        );
        Assert.Contains("weighted mean of the models' directions is zero", e.Message);
    }

    [Fact]
    public void Identical_inputs_give_that_input_and_one_model_passes_through()
    {
        var a = Golden.Values(64, 28);
        Expect.Close(
            "identity",
            GeometricReference.ToDouble(a),
            Run(Method, [a, a, a], -1, perModel: Weights(1, 2, 3)),
            DType.F32,
            1
        );
        Assert.Equal(a, Run(Method, [Golden.Values(64, 29), a], 0, perModel: Weights(null, 1)));
    }

    [Fact]
    public void Weights_summing_to_zero_and_the_base_alone_are_refused()
    {
        Assert.Contains(
            "sum to zero",
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
            "at least one model besides base_model",
            Assert
                .Throws<AlloyException>(() =>
                    Run(
                        Method,
                        [
                            [1],
                        ],
                        0
                    )
                )
                .Message
        );
    }
}
