using Alloy.Recipes;
using static Alloy.Tests.Recipes.RecipeTestHelpers;

namespace Alloy.Tests.Recipes;

public sealed class ModelReferenceTests
{
    [Theory]
    [InlineData("user/model", "user/model", null, null, null)]
    [InlineData("a+b", "a", null, "b", null)]
    [InlineData("a@rev", "a", "rev", null, null)]
    [InlineData("a@rev+b@main", "a", "rev", "b", "main")]
    [InlineData("hf_user/model@v0.0.1+hf_user/lora", "hf_user/model", "v0.0.1", "hf_user/lora", null)]
    public void Parse_and_round_trip(string text, string path, string? revision, string? lora, string? loraRevision)
    {
        var r = ModelReference.Parse(text);
        Assert.Equal(path, r.Path);
        Assert.Equal(revision, r.Revision);
        Assert.Equal(lora, r.Lora?.Path);
        Assert.Equal(loraRevision, r.Lora?.Revision);
        Assert.Null(r.OverrideArchitecture);
        Assert.Equal(text, r.ToString());
        Assert.Equal(r, ModelReference.Parse(r.ToString()));
    }

    [Theory]
    [InlineData("@@@@@", "more than one '@'")]
    [InlineData("a+b+c", "more than one '+'")]
    [InlineData("a+b+c@d+e@f@g", "more than one '+'")]
    [InlineData("", "empty path")]
    [InlineData("a@", "empty path or revision")]
    [InlineData("+b", "empty path")]
    [InlineData("@rev", "empty path")]
    public void Malformed_references_are_rejected(string text, string why)
    {
        var ex = Assert.Throws<AlloyException>(() => ModelReference.Parse(text));
        Assert.Contains(why, ex.Message);
        Assert.False(ModelReference.TryParse(text, out _));
    }

    [Fact]
    public void Bad_reference_in_a_config_has_its_location()
    {
        Assert.StartsWith(
            "cfg.yml:3:15: invalid model reference 'a+b+c': more than one '+'",
            Error("merge_method: linear\nmodels:\n  - model:    a+b+c\n")
        );
    }

    [Fact]
    public void Dict_form_with_plain_and_nested_paths()
    {
        var r = Parse(
            """
            merge_method: linear
            base_model:
              model: {path: org/base, revision: main}
            models:
              - model:
                  model: org/a@v1
                  lora: {path: org/lora}
                  override_architecture: MistralForCausalLM
              - model: {model: org/b, lora: org/lora2@r2}
            """
        );
        Assert.Equal(new ModelReference("org/base", "main"), r.BaseModel);
        Assert.Equal(
            new ModelReference("org/a", "v1", new LoraReference("org/lora"), "MistralForCausalLM"),
            r.Models![0].Model
        );
        Assert.Equal(ModelReference.Parse("org/b+org/lora2@r2"), r.Models[1].Model);
    }

    [Fact]
    public void Dict_form_unknown_key_warns()
    {
        Parse("merge_method: linear\nmodels:\n  - model: {model: a, revison: main}\n", out var diagnostics);
        var w = Assert.Single(diagnostics.Warnings);
        Assert.StartsWith("cfg.yml:3:23: unknown key 'revison' in 'model' (model reference) (ignored", w);
    }

    [Fact]
    public void Referenced_models_are_ordered_and_deduplicated()
    {
        var r = Parse(
            """
            merge_method: ties
            slices:
              - sources:
                  - model: c
                    layer_range: [0, 2]
                  - model: a@v1
                    layer_range: [0, 2]
                base_model: d
              - sources:
                  - model: a
                    layer_range: [2, 4]
                  - model: c
                    layer_range: [2, 4]
                  - model: a@v1
                    layer_range: [2, 4]
            base_model: b
            tokenizer_source: e
            """
        );
        // base first, then appearance order; a and a@v1 are different models; the slice base follows its sources.
        Assert.Equal(["b", "c", "a@v1", "d", "a"], r.ReferencedModels().Select(m => m.ToString()));
        Assert.Equal(["e"], r.TokenizerModels().Select(m => m.ToString()));
    }
}
