using Alloy.Recipes;
using static Alloy.Tests.Recipes.RecipeTestHelpers;

namespace Alloy.Tests.Recipes;

public sealed class ParameterLookupTests
{
    private const string Tensor = "model.layers.2.self_attn.q_proj.weight";

    private static readonly MergeRecipe Sliced = Parse(
        """
        merge_method: ties
        slices:
          - sources:
              - model: a
                layer_range: [0, 4]
                parameters:
                  weight: 1.0
                  density: {filter: mlp, value: 0.1}
              - model: b
                layer_range: [4, 8]
            parameters:
              weight: 2.0
              density: 0.2
              epsilon: {filter: self_attn, value: 0.03}
        parameters:
          weight: 4.0
          density: 0.4
          epsilon: 0.04
          lambda: [0, 1]
        """
    );

    [Fact]
    public void Source_beats_slice_beats_top_level()
    {
        var slice = Sliced.Slices![0];
        Assert.Equal(1.0, ParameterLookup.Find("weight", Sliced, slice, slice.Sources[0], Tensor, 0)?.Number);
        Assert.Equal(2.0, ParameterLookup.Find("weight", Sliced, slice, slice.Sources[1], Tensor, 0)?.Number);
        // global lookup skips sources
        Assert.Equal(2.0, ParameterLookup.Find("weight", Sliced, slice, null, Tensor, 0)?.Number);
        Assert.Equal(4.0, ParameterLookup.Find("weight", Sliced, null, null, Tensor, 0)?.Number);
        Assert.Equal(0.5, ParameterLookup.Find("lambda", Sliced, slice, slice.Sources[0], Tensor, 0.5)?.Number);
        Assert.Null(ParameterLookup.Find("gamma", Sliced, slice, slice.Sources[0], Tensor, 0));
    }

    [Fact]
    public void Unmatched_filter_falls_through_to_the_next_level()
    {
        var slice = Sliced.Slices![0];
        // Source a's density only applies to mlp tensors: attention falls through to the slice's 0.2.
        Assert.Equal(0.2, ParameterLookup.Find("density", Sliced, slice, slice.Sources[0], Tensor, 0)?.Number);
        Assert.Equal(
            0.1,
            ParameterLookup
                .Find("density", Sliced, slice, slice.Sources[0], "model.layers.2.mlp.up_proj.weight", 0)
                ?.Number
        );
        // The slice's epsilon only applies to self_attn: mlp falls through to the top level.
        Assert.Equal(0.03, ParameterLookup.Find("epsilon", Sliced, slice, slice.Sources[0], Tensor, 0)?.Number);
        Assert.Equal(
            0.04,
            ParameterLookup
                .Find("epsilon", Sliced, slice, slice.Sources[0], "model.layers.2.mlp.up_proj.weight", 0)
                ?.Number
        );
    }

    [Fact]
    public void Modules_are_refused_where_they_are_written()
    {
        var message = Error(
            """
            merge_method: linear
            modules:
              text:
                models:
                  - model: a
            """
        );
        Assert.StartsWith(
            "cfg.yml:2:1: 'modules:' (per-module recipes for multi-module architectures) is not supported",
            message
        );
    }

    [Fact]
    public void A_model_entry_is_a_source_of_a_slice_without_parameters()
    {
        var r = Parse(
            """
            merge_method: linear
            models:
              - model: a
                parameters: {weight: [0, 1]}
              - model: b
            parameters: {weight: 0.25}
            """
        );
        // mergekit expands models: into one slice whose sources carry the entries' parameters (as the planner does).
        static InputSlice Source(ModelEntry e) => new(e.Model, new LayerRange(0, 1), e.Parameters, e.Location);
        Assert.Equal(0.75, ParameterLookup.Find("weight", r, null, Source(r.Models![0]), Tensor, 0.75)?.Number);
        Assert.Equal(0.25, ParameterLookup.Find("weight", r, null, Source(r.Models[1]), Tensor, 0.75)?.Number);
    }
}
