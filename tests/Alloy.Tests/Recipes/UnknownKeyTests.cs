using static Alloy.Tests.Recipes.RecipeTestHelpers;

namespace Alloy.Tests.Recipes;

/// <summary>mergekit ignores unknown keys silently; we warn with the location.</summary>
public sealed class UnknownKeyTests
{
    [Fact]
    public void Parameter_name_directly_in_a_model_entry_warns()
    {
        var r = Parse(
            """
            merge_method: ties
            models:
              - model: a
                desnity: 0.5
                parameters:
                  weight: 1
            """,
            out var diagnostics
        );
        Assert.Equal(1, r.Models![0].Parameters.Count);
        var w = Assert.Single(diagnostics.Warnings);
        Assert.Equal(
            "cfg.yml:4:5: unknown key 'desnity' in a model entry (ignored; merge parameters go under 'parameters:')",
            w
        );
    }

    [Fact]
    public void Top_level_typo_warns_with_a_suggestion()
    {
        var diagnostics = Diagnostics.Silent();
        var ex = Assert.Throws<AlloyException>(() =>
            Alloy.Recipes.RecipeParser.Parse("models:\n  - model: a\nmerge_methd: linear\n", Cfg, diagnostics)
        );
        Assert.StartsWith("cfg.yml:1:1: missing required key 'merge_method'", ex.Message);
        Assert.Equal(
            "cfg.yml:3:1: unknown key 'merge_methd' in the config (ignored; did you mean 'merge_method'?)",
            Assert.Single(diagnostics.Warnings)
        );
    }

    [Fact]
    public void Unknown_keys_in_slices_sources_tokenizer_and_filters()
    {
        Parse(
            """
            merge_method: linear
            slices:
              - sources:
                  - model: a
                    layer_range: [0, 2]
                    weight: 1
                typo: 1
                paramters: {}
            tokenizer:
              source: union
              tokens:
                <x>: {source: a, forse: true}
              pad: 8
            parameters:
              t: [{filter: mlp, value: 1, fliter: attn}]
            """,
            out var diagnostics
        );
        Assert.Equal(
            [
                "cfg.yml:6:9: unknown key 'weight' in a slice source (ignored; merge parameters go under "
                    + "'parameters:')",
                "cfg.yml:7:5: unknown key 'typo' in a slice (ignored; merge parameters go under 'parameters:')",
                "cfg.yml:8:5: unknown key 'paramters' in a slice (ignored; did you mean 'parameters'?)",
                "cfg.yml:12:22: unknown key 'forse' in token '<x>' (ignored; did you mean 'force'?)",
                "cfg.yml:13:3: unknown key 'pad' in 'tokenizer' (ignored)",
                "cfg.yml:15:31: unknown key 'fliter' in a filter entry of parameter 't' (ignored; it has only "
                    + "'filter' and 'value')",
            ],
            diagnostics.Warnings.OrderBy(LineThenColumn)
        );
    }

    // Warnings come in processing order; compare them in file order.
    private static (int, int) LineThenColumn(string warning)
    {
        var parts = warning.Split(':');
        return (int.Parse(parts[1]), int.Parse(parts[2]));
    }

    [Fact]
    public void Residual_weight_is_parsed_and_warned_as_having_no_effect()
    {
        var r = Parse(
            "merge_method: linear\nslices:\n  - sources:\n      - model: a\n        layer_range: [0, 1]\n    "
                + "residual_weight: 0.5\n",
            out var diagnostics
        );
        Assert.Single(r.Slices!);
        Assert.StartsWith("cfg.yml:6:5: 'residual_weight' has no effect", Assert.Single(diagnostics.Warnings));
    }

    [Fact]
    public void Parameter_names_are_not_checked_here()
    {
        var r = Parse(
            "merge_method: ties\nmodels:\n  - model: a\n    parameters: {desnity: 0.5}\n",
            out var diagnostics
        );
        Assert.Empty(diagnostics.Warnings);
        Assert.True(r.Models![0].Parameters.TryGet("desnity", out _));
    }

    [Fact]
    public void A_mapping_reused_through_aliases_warns_once()
    {
        Parse(
            """
            merge_method: linear
            models:
              - &entry {model: a, wieght: 1}
              - {<<: *entry, model: b}
              - {<<: *entry, model: c}
            """,
            out var diagnostics
        );
        Assert.Equal(
            "cfg.yml:3:23: unknown key 'wieght' in a model entry (ignored; merge parameters go under 'parameters:')",
            Assert.Single(diagnostics.Warnings)
        );
    }
}
