using Alloy.Recipes;

namespace Alloy.Tests.Recipes;

public sealed class ParameterValueTests
{
    [Fact]
    public void Three_point_gradient_over_five_layers()
    {
        var g = new ParameterValue.Gradient([0, 0.5, 1]);
        double[] expected = [0, 0.25, 0.5, 0.75, 1];
        for (var i = 0; i < 5; i++)
            Assert.Equal(expected[i], g.Evaluate("x", i / 4.0)!.Value.Number, 15);
    }

    [Theory]
    [InlineData(1, 0.051282051282)]
    [InlineData(10, 0.494871794872)]
    [InlineData(20, 0.320512820513)]
    [InlineData(38, 0.969230769231)]
    [InlineData(39, 1.0)]
    public void Five_point_gradient_over_forty_layers(int layer, double expected)
    {
        var g = new ParameterValue.Gradient([0, 0.5, 0.3, 0.7, 1]);
        var t = layer / 39.0;
        Assert.Equal(expected, g.Evaluate("model.layers.0.mlp.up_proj.weight", t)!.Value.Number, 11);
        // The same formula computed independently: position s among the 4 segments.
        var s = t * 4;
        var i0 = (int)Math.Floor(s);
        var i1 = Math.Min(4, i0 + 1);
        double[] v = [0, 0.5, 0.3, 0.7, 1];
        Assert.Equal((1 - (s - i0)) * v[i0] + (s - i0) * v[i1], g.Evaluate("", t)?.Number);
    }

    [Fact]
    public void Gradient_ends_and_single_value()
    {
        var g = new ParameterValue.Gradient([0.2, 0.9]);
        Assert.Equal(0.2, g.Evaluate("x", 0)?.Number);
        Assert.Equal(0.9, g.Evaluate("x", 1)?.Number);
        Assert.Equal(0.7, new ParameterValue.Gradient([0.7]).Evaluate("x", 0.6)?.Number);
        Assert.Throws<ArgumentOutOfRangeException>(() => g.Evaluate("x", 1.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => g.Evaluate("x", double.NaN));
    }

    [Fact]
    public void Scalar_ignores_tensor_and_fraction()
    {
        Assert.Equal(0.3, new ParameterValue.Scalar(0.3).Evaluate("anything", 0.77)?.Number);
    }

    private static readonly ParameterValue.Conditional Filters = new([
        new ConditionalEntry("self_attn", new ParameterValue.Scalar(1)),
        new ConditionalEntry("attn", new ParameterValue.Scalar(2)),
        new ConditionalEntry("mlp", new ParameterValue.Gradient([0, 1])),
    ]);

    [Fact]
    public void Filter_is_a_case_sensitive_substring_and_first_match_wins()
    {
        // both self_attn and attn match
        Assert.Equal(1, Filters.Evaluate("model.layers.3.self_attn.q_proj.weight", 0)?.Number);
        Assert.Equal(2, Filters.Evaluate("model.layers.3.cross_attn.q_proj.weight", 0)?.Number);
        Assert.Null(Filters.Evaluate("model.layers.3.SELF_ATTN.q_proj.weight", 0));
        Assert.Null(Filters.Evaluate("model.layers.3.input_layernorm.weight", 0)); // no match → null
    }

    [Fact]
    public void Gradient_nested_in_a_filter_is_evaluated_at_t()
    {
        Assert.Equal(0.25, Filters.Evaluate("model.layers.3.mlp.down_proj.weight", 0.25)?.Number);
        Assert.Equal(1.0, Filters.Evaluate("model.layers.3.mlp.down_proj.weight", 1)?.Number);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("*")]
    public void Null_and_star_filters_match_everything(string? filter)
    {
        var c = new ParameterValue.Conditional([
            new ConditionalEntry("mlp", new ParameterValue.Scalar(5)),
            new ConditionalEntry(filter, new ParameterValue.Scalar(7)),
        ]);
        Assert.Equal(7, c.Evaluate("lm_head.weight", 0)?.Number);
        Assert.Equal(7, c.Evaluate("", 0)?.Number);
        Assert.Equal(5, c.Evaluate("model.layers.0.mlp.gate_proj.weight", 0)?.Number);
    }

    [Fact]
    public void Parsed_conditional_matches_evaluation()
    {
        var r = RecipeTestHelpers.Parse(
            """
            merge_method: slerp
            models: [{model: a}, {model: b}]
            parameters:
              t:
                - filter: "*"
                  value: [0, 1]
                - value: 9
              u: {filter: mlp, value: [1, 0.5, 0]}
            """
        );
        Assert.True(r.Parameters.TryGet("t", out var t));
        Assert.Equal(0.5, t.Value.Evaluate("lm_head.weight", 0.5)?.Number);
        Assert.True(r.Parameters.TryGet("u", out var u));
        Assert.Equal(0.75, u.Value.Evaluate("model.layers.1.mlp.up_proj.weight", 0.25)?.Number);
        Assert.Null(u.Value.Evaluate("model.layers.1.self_attn.o_proj.weight", 0.25));
    }

    [Fact]
    public void Records_compare_gradients_by_value()
    {
        Assert.Equal(new ParameterValue.Gradient([0, 0.5]), new ParameterValue.Gradient(new List<double> { 0, 0.5 }));
        Assert.NotEqual(new ParameterValue.Gradient([0, 0.5]), new ParameterValue.Gradient([0, 0.6]));
    }

    [Fact]
    public void Parameter_set_rejects_duplicate_names()
    {
        var at = new SourceLocation("x", 1, 1);
        Assert.Throws<ArgumentException>(() =>
            new ParameterSettings([
                new ParameterSetting("weight", new ParameterValue.Scalar(1), at),
                new ParameterSetting("weight", new ParameterValue.Scalar(2), at),
            ])
        );
        Assert.Equal(0, ParameterSettings.Empty.Count);
        Assert.False(ParameterSettings.Empty.TryGet("weight", out _));
    }
}
