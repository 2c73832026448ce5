using Alloy.Recipes;
using Alloy.Tensors;
using static Alloy.Tests.Recipes.RecipeTestHelpers;

namespace Alloy.Tests.Recipes;

/// <summary>
/// mergekit's example configs (<see cref="MergekitExamples"/>), verbatim, parse to the expected recipes.
/// </summary>
public sealed class ExampleConfigTests
{
    [Fact]
    public void Ties_example()
    {
        var r = Parse(MergekitExamples.Ties, out var diagnostics);
        Assert.Empty(diagnostics.Warnings);
        Assert.Equal("ties", r.Method);
        Assert.Equal(new SourceLocation(Cfg, 17, 15), r.MethodLocation);
        Assert.Equal(ModelReference.Parse("TheBloke/Llama-2-13B-fp16"), r.BaseModel);
        Assert.Equal(DType.F16, r.DType);
        Assert.Null(r.OutDType);
        Assert.Null(r.Slices);
        Assert.Null(r.Tokenizer);
        Assert.Equal(MergekitExamples.Ties, r.Text);

        var models = r.Models!;
        Assert.Equal(
            ["psmathur/orca_mini_v3_13b", "garage-bAInd/Platypus2-13B", "WizardLM/WizardMath-13B-V1.0"],
            models.Select(m => m.Model.Path)
        );
        Assert.Equal(new SourceLocation(Cfg, 2, 5), models[0].Location);
        Assert.Equal([1, 0.7, 0.1], Gradient(models[0].Parameters, "density"));
        Assert.Equal(1.0, Scalar(models[0].Parameters, "weight"));
        Assert.Equal(["density", "weight"], models[0].Parameters.Select(p => p.Name));
        Assert.Equal(new SourceLocation(Cfg, 4, 7), models[0].Parameters.First().Location);
        Assert.Equal(0.5, Scalar(models[1].Parameters, "density"));
        Assert.Equal([0, 0.3, 0.7, 1], Gradient(models[1].Parameters, "weight"));
        Assert.Equal(0.33, Scalar(models[2].Parameters, "density"));
        var weight = Conditional(models[2].Parameters, "weight");
        Assert.Equal(2, weight.Count);
        Assert.Equal(new ConditionalEntry("mlp", new ParameterValue.Scalar(0.5)), weight[0]);
        Assert.Equal(new ConditionalEntry(null, new ParameterValue.Scalar(0)), weight[1]);

        Assert.Equal(1.0, Scalar(r.Parameters, "normalize"));
        Assert.Equal(1.0, Scalar(r.Parameters, "int8_mask"));
        Assert.Equal(
            [
                "TheBloke/Llama-2-13B-fp16",
                "psmathur/orca_mini_v3_13b",
                "garage-bAInd/Platypus2-13B",
                "WizardLM/WizardMath-13B-V1.0",
            ],
            r.ReferencedModels().Select(m => m.ToString())
        );
    }

    [Fact]
    public void Gradient_slerp_example()
    {
        var r = Parse(MergekitExamples.GradientSlerp);
        Assert.Equal("slerp", r.Method);
        Assert.Null(r.Models);
        var slice = Assert.Single(r.Slices!);
        Assert.Equal(40, slice.LayerCount);
        Assert.Equal([new LayerRange(0, 40), new LayerRange(0, 40)], slice.Sources.Select(s => s.Range));
        Assert.Equal(
            ["psmathur/orca_mini_v3_13b", "garage-bAInd/Platypus2-13B"],
            slice.Sources.Select(s => s.Model.Path)
        );
        Assert.Null(slice.BaseModel);
        Assert.Equal(0, slice.Parameters.Count);

        var t = Conditional(r.Parameters, "t");
        Assert.Equal(["self_attn", "mlp", null], t.Select(e => e.Filter));
        Assert.Equal([0, 0.5, 0.3, 0.7, 1], Assert.IsType<ParameterValue.Gradient>(t[0].Value).Values);
        Assert.Equal([1, 0.5, 0.7, 0.3, 0], Assert.IsType<ParameterValue.Gradient>(t[1].Value).Values);
        Assert.Equal(new ParameterValue.Scalar(0.5), t[2].Value);
        Assert.Equal(DType.F16, r.DType);

        // The filters route tensors: attention follows the first gradient, MLP the second, the rest get 0.5.
        var tValue = r.Parameters.First().Value;
        Assert.Equal(0.25, tValue.Evaluate("model.layers.10.self_attn.q_proj.weight", 0.125)!.Value.Number, 12);
        Assert.Equal(0.75, tValue.Evaluate("model.layers.10.mlp.up_proj.weight", 0.125)!.Value.Number, 12);
        Assert.Equal(0.5, tValue.Evaluate("model.layers.10.input_layernorm.weight", 0.125)?.Number);
    }

    [Fact]
    public void Orcamini_platy_44_layer_passthrough_example()
    {
        var r = Parse(MergekitExamples.OrcaminiPlaty44Layer);
        Assert.Equal("passthrough", r.Method);
        Assert.Null(r.BaseModel);
        Assert.Equal(2, r.Slices!.Count);
        Assert.Equal(new LayerRange(0, 24), Assert.Single(r.Slices[0].Sources).Range);
        Assert.Equal(new LayerRange(20, 40), Assert.Single(r.Slices[1].Sources).Range);
        Assert.Equal(44, r.Slices.Sum(s => s.LayerCount));
        Assert.Equal(
            ["psmathur/orca_mini_v3_13b", "garage-bAInd/Platypus2-13B"],
            r.ReferencedModels().Select(m => m.Path)
        );
    }

    [Fact]
    public void Bio_merge_example()
    {
        var r = Parse(MergekitExamples.BioMerge);
        Assert.Equal(2, r.Models!.Count);
        Assert.All(r.Models, m => Assert.Equal(0.5, Scalar(m.Parameters, "density")));
        Assert.All(r.Models, m => Assert.Equal(0.5, Scalar(m.Parameters, "weight")));
        Assert.Equal(0.0, Scalar(r.Parameters, "normalize"));
        Assert.Equal(1.0, Scalar(r.Parameters, "int8_mask"));
        Assert.Equal("mistralai/Mistral-7B-v0.1", r.BaseModel!.Path);
    }

    [Fact]
    public void Linear_example()
    {
        var r = Parse(MergekitExamples.Linear);
        Assert.Equal("linear", r.Method);
        Assert.Null(r.BaseModel);
        Assert.Equal([1.0, 0.3, 0.5], r.Models!.Select(m => Scalar(m.Parameters, "weight")));
        Assert.Equal(0, r.Parameters.Count);
        Assert.Equal("psmathur/orca_mini_v3_13b", r.ReferencedModels()[0].Path);
    }

    [Fact]
    public void Arcee_fusion_example()
    {
        var r = Parse(MergekitExamples.ArceeFusion);
        Assert.Equal(DType.BF16, r.DType);
        Assert.All(r.Models!, m => Assert.Equal(0, m.Parameters.Count));
        Assert.Equal(new SourceLocation(Cfg, 5, 13), r.BaseModelLocation);
        // base_model is also listed: referenced once, first.
        Assert.Equal(["model_a", "model_b"], r.ReferencedModels().Select(m => m.Path));
    }

    [Fact]
    public void Tokenizer_example()
    {
        var r = Parse(MergekitExamples.Tokenizer);
        var tok = r.Tokenizer!;
        Assert.Equal(TokenizerSourceKind.Union, tok.Kind);
        Assert.Null(tok.Model);
        Assert.Null(tok.PadToMultipleOf);
        Assert.Equal(new SourceLocation(Cfg, 8, 3), tok.Location);
        Assert.Equal(["<|im_start|>", "<|start_header_id|>", "<|renamed_token|>", "<|unused|>"], tok.Tokens.Keys);
        Assert.Equal(
            new TokenSettings(new TokenSource.FromModel(ModelReference.Parse("chatml_model")), false),
            tok.Tokens["<|im_start|>"]
        );
        Assert.Equal(
            new TokenSettings(new TokenSource.FromModel(ModelReference.Parse("llama3_model")), true),
            tok.Tokens["<|start_header_id|>"]
        );
        Assert.Equal(
            new TokenSettings(
                new TokenSource.ModelToken(ModelReference.Parse("path/to/model"), "<|original_token|>", null),
                false
            ),
            tok.Tokens["<|renamed_token|>"]
        );
        Assert.IsType<TokenSource.Zero>(tok.Tokens["<|unused|>"].Source);
        // The row donor is named only by the tokenizer settings.
        Assert.Equal(["path/to/model"], r.TokenizerModels().Select(m => m.Path));
        Assert.Equal(["chatml_model", "llama3_model"], r.ReferencedModels().Select(m => m.Path));
    }

    [Fact]
    public void Tokenizer_token_id_and_padding()
    {
        var r = Parse(MergekitExamples.TokenizerTokenIdAndPadding);
        Assert.Equal(TokenizerSourceKind.Base, r.Tokenizer!.Kind);
        Assert.Equal(64, r.Tokenizer.PadToMultipleOf);
        Assert.Equal(
            new TokenSource.ModelToken(ModelReference.Parse("b"), null, 1234),
            r.Tokenizer.Tokens["<x>"].Source
        );
        Assert.Equal(new TokenSettings(null, false), r.Tokenizer.Tokens["<y>"]);
    }

    [Theory]
    [InlineData("union", TokenizerSourceKind.Union, null)]
    [InlineData("base", TokenizerSourceKind.Base, null)]
    [InlineData("org/model@v2", TokenizerSourceKind.Model, "org/model@v2")]
    public void Legacy_tokenizer_source(string value, TokenizerSourceKind kind, string? model)
    {
        var r = Parse($"merge_method: linear\nmodels: [{{model: a}}]\ntokenizer_source: {value}\n");
        Assert.Equal(kind, r.Tokenizer!.Kind);
        Assert.Equal(model, r.Tokenizer.Model?.ToString());
        Assert.Empty(r.Tokenizer.Tokens);
        Assert.Equal(new SourceLocation(Cfg, 3, 19), r.Tokenizer.Location);
    }

    [Fact]
    public void Tokenizer_source_defaults_to_union()
    {
        var r = Parse("merge_method: linear\nmodels: [{model: a}]\ntokenizer:\n  pad_to_multiple_of: 8\n");
        Assert.Equal(TokenizerSourceKind.Union, r.Tokenizer!.Kind);
        Assert.Equal(8, r.Tokenizer.PadToMultipleOf);
    }

    [Fact]
    public void Passthrough_scale_example()
    {
        var r = Parse(MergekitExamples.PassthroughScale);
        var entry = Assert.Single(r.Models!);
        var scale = Conditional(entry.Parameters, "scale");
        Assert.Equal(["o_proj", null], scale.Select(e => e.Filter));
        var source = new InputSlice(entry.Model, new LayerRange(0, 1), entry.Parameters, entry.Location);
        Assert.Equal(
            0.0,
            ParameterLookup.Find("scale", r, null, source, "model.layers.0.self_attn.o_proj.weight", 0)?.Number
        );
        Assert.Equal(
            1.0,
            ParameterLookup.Find("scale", r, null, source, "model.layers.0.self_attn.q_proj.weight", 0)?.Number
        );
    }

    [Fact]
    public void Modules_example_is_refused_in_one_line()
    {
        // mergekit's per-module recipes (multi-module architectures) are refused where 'modules:' is written.
        var message = Error(
            """
            merge_method: linear
            modules:
              text_decoder:
                models:
                  - model: org/vlm-a
                    parameters: {weight: 0.5}
            dtype: bfloat16
            """
        );
        Assert.StartsWith(
            "cfg.yml:2:1: 'modules:' (per-module recipes for multi-module architectures) is not supported",
            message
        );
    }

    [Fact]
    public void Mergekit_multi_example()
    {
        const string first = """
            name: first-merge
            merge_method: linear
            models:
              - model: mistralai/Mistral-7B-v0.1
              - model: BioMistral/BioMistral-7B
            parameters:
              weight: 0.5

            """;
        const string second = """
            name: second-merge
            merge_method: slerp
            base_model: first-merge
            models:
              - model: NousResearch/Hermes-2-Pro-Mistral-7B
            parameters:
              t: 0.5

            """;
        const string third = """
            merge_method: dare_ties
            base_model: mistralai/Mistral-7B-v0.1
            models:
              - model: second-merge
                parameters: {density: 0.6, weight: 0.5}
              - model: teknium/OpenHermes-2.5-Mistral-7B
                parameters: {density: 0.8, weight: 0.5}

            """;
        var text = first + "---\n" + second + "---\n" + third;
        var recipes = RecipeParser.ParseDocuments(text, Cfg, Diagnostics.Silent());

        Assert.Equal(3, recipes.Count);
        Assert.Equal(["first-merge", "second-merge", null], recipes.Select(r => r.Name));
        Assert.Equal(["linear", "slerp", "dare_ties"], recipes.Select(r => r.Method));
        Assert.Equal([first, second, third], recipes.Select(r => r.Text));
        Assert.Equal(0.5, Scalar(recipes[0].Parameters, "weight"));
        Assert.Equal("first-merge", recipes[1].BaseModel!.Path);
        Assert.Equal(0.5, Scalar(recipes[1].Parameters, "t"));
        Assert.Equal([0.6, 0.8], recipes[2].Models!.Select(m => Scalar(m.Parameters, "density")));
        // Locations stay those of the whole file.
        Assert.Equal(new SourceLocation(Cfg, 10, 15), recipes[1].MethodLocation);
        Assert.Equal(new SourceLocation(Cfg, 17, 15), recipes[2].MethodLocation);
    }
}
