using Alloy.Methods;
using Alloy.Methods.TaskVectors;

namespace Alloy.Tests.Methods;

/// <summary>Golden values from the mergekit reference's worked examples, computed by hand.</summary>
public sealed class CoreMethodTests
{
    [Fact]
    public void Linear_normalized_weighted_average()
    {
        var result = MethodTestKit.Run(
            new WeightedAverage(),
            [
                [1, 2, 3, 4],
                [3, 2, 1, 0],
            ],
            -1,
            perModel: MethodTestKit.Weights(0.6, 0.4)
        );
        Assert.Equal([1.8f, 2.0f, 2.2f, 2.4f], result, (a, b) => Math.Abs(a - b) < 1e-6);
    }

    [Fact]
    public void Linear_without_normalize_is_the_plain_weighted_sum()
    {
        var result = MethodTestKit.Run(
            new WeightedAverage(),
            [
                [1, 2],
                [3, 4],
            ],
            -1,
            new Dictionary<string, double> { ["normalize"] = 0 },
            MethodTestKit.Weights(2, 1)
        );
        Assert.Equal([5f, 8f], result);
    }

    [Fact]
    public void Linear_refuses_weights_that_sum_to_zero_when_normalizing()
    {
        var e = Assert.Throws<AlloyException>(() =>
            MethodTestKit.Run(
                new WeightedAverage(),
                [
                    [1],
                    [2],
                ],
                -1,
                perModel: MethodTestKit.Weights(1, -1)
            )
        );
        Assert.Contains("sum to zero", e.Message);
    }

    [Fact]
    public void Task_arithmetic_adds_weighted_task_vectors_to_the_base()
    {
        // base 0, δa = [1,−2,3,0], δb = [2,1,−1,0], w = 1,1 → [3,−1,2,0]; λ = 0.5 → [1.5,−0.5,1,0].
        float[][] inputs =
        [
            [0, 0, 0, 0],
            [1, -2, 3, 0],
            [2, 1, -1, 0],
        ];
        var weights = MethodTestKit.Weights(null, 1, 1);
        Assert.Equal([3f, -1f, 2f, 0f], MethodTestKit.Run(new TaskArithmetic(), inputs, 0, perModel: weights));
        Assert.Equal(
            [1.5f, -0.5f, 1f, 0f],
            MethodTestKit.Run(
                new TaskArithmetic(),
                inputs,
                0,
                new Dictionary<string, double> { ["lambda"] = 0.5 },
                weights
            )
        );
    }

    [Fact]
    public void Task_arithmetic_normalize_divides_by_the_weight_sum_and_lambda_zero_gives_the_base()
    {
        float[][] inputs =
        [
            [10, 20],
            [12, 18],
            [14, 26],
        ];
        var weights = MethodTestKit.Weights(null, 1, 3);
        var normalized = MethodTestKit.Run(
            new TaskArithmetic(),
            inputs,
            0,
            new Dictionary<string, double> { ["normalize"] = 1 },
            weights
        );
        Assert.Equal([10 + (2 + 12) / 4f, 20 + (-2 + 18) / 4f], normalized);
        var none = MethodTestKit.Run(
            new TaskArithmetic(),
            inputs,
            0,
            new Dictionary<string, double> { ["lambda"] = 0 },
            weights
        );
        Assert.Equal([10f, 20f], none);
    }

    [Fact]
    public void Task_arithmetic_works_with_the_base_anywhere_among_the_inputs()
    {
        float[][] inputs =
        [
            [1, -2, 3, 0],
            [0, 0, 0, 0],
            [2, 1, -1, 0],
        ];
        Assert.Equal(
            [3f, -1f, 2f, 0f],
            MethodTestKit.Run(new TaskArithmetic(), inputs, 1, perModel: MethodTestKit.Weights(1, null, 1))
        );
    }

    [Fact]
    public void Passthrough_copies_or_scales_its_single_input_and_refuses_two()
    {
        Assert.Equal(
            [1f, -2f],
            MethodTestKit.Run(
                new Passthrough(),
                [
                    [1, -2],
                ],
                -1
            )
        );
        var scaled = MethodTestKit.Run(
            new Passthrough(),
            [
                [1, -2],
            ],
            -1,
            perModel: [new Dictionary<string, double> { ["scale"] = 0.5 }]
        );
        Assert.Equal([0.5f, -1f], scaled);
        Assert.Throws<AlloyException>(() =>
            MethodTestKit.Run(
                new Passthrough(),
                [
                    [1],
                    [2],
                ],
                -1
            )
        );
    }

    [Fact]
    public void Every_registered_method_has_a_unique_name_title_and_documented_parameters()
    {
        Assert.Equal(MethodRegistry.All.Count, MethodRegistry.All.Select(m => m.Name).Distinct().Count());
        Assert.All(MethodRegistry.All, m =>
        {
            Assert.False(string.IsNullOrWhiteSpace(m.Declaration.Title));
            Assert.False(string.IsNullOrWhiteSpace(m.Declaration.Summary));
            Assert.All(m.Parameters, p => Assert.False(string.IsNullOrWhiteSpace(p.Description)));
        });
        Assert.Same(
            MethodRegistry.Find("task_arithmetic"),
            MethodRegistry.All.Single(m => m.Name == "task_arithmetic")
        );
        Assert.Null(MethodRegistry.Find("tiess"));
    }
}
