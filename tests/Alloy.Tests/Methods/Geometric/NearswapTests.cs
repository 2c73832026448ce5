using Alloy.Methods;
using Alloy.Methods.Geometric;
using static Alloy.Tests.Methods.MethodTestKit;

namespace Alloy.Tests.Methods.Geometric;

/// <summary>nearswap: the worked example, its limits and input counts.</summary>
public sealed class NearswapTests
{
    private static readonly Nearswap Method = new();

    [Fact]
    public void Close_values_are_swapped_in_and_far_ones_only_partly()
    {
        // |a − b| = 0.25, 1, 2 → w = 1, 0.5, 0.25.
        Golden.Check(
            Method,
            [
                [0, 0, 0],
                [0.25f, 1, 2],
            ],
            0,
            [0.25, 0.5, 0.5],
            Globals(("t", 0.5))
        );
    }

    [Fact]
    public void The_base_may_be_the_second_input_and_random_values_match_the_reference()
    {
        Golden.Check(
            Method,
            [Golden.Values(100, 51), Golden.Values(100, 52)],
            1,
            x => GeometricReference.Nearswap(x[1], x[0], 0.3),
            Globals(("t", 0.3))
        );
    }

    [Fact]
    public void T_zero_keeps_the_base_and_identical_inputs_stay()
    {
        var a = Golden.Values(40, 53);
        var b = Golden.Values(40, 54);
        Assert.Equal(a, Run(Method, [a, b], 0, Globals(("t", 0))));
        Assert.Equal(a, Run(Method, [a, a], 0, Globals(("t", 0.001))));
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
                0,
                Globals(("t", 0.5))
            )
        );
        Assert.Contains("nearswap needs exactly two models, one of them base_model", e.Message);
        Assert.Equal(
            [3f],
            Run(
                Method,
                [
                    [3],
                ],
                0,
                Globals(("t", 0.5))
            )
        );
    }
}
