using Alloy.Recipes;
using Alloy.Tensors;
using static Alloy.Tests.Recipes.RecipeTestHelpers;

namespace Alloy.Tests.Recipes;

/// <summary>Every user mistake is one AlloyException line that starts with file:line:column.</summary>
public sealed class RecipeErrorTests
{
    private const string Models = "models:\n  - model: a\n";

    [Fact]
    public void Yaml_syntax_error()
    {
        Assert.Equal(
            "cfg.yml:3:1: YAML syntax error: While parsing a flow sequence, did not find expected ',' or ']'.",
            Error("merge_method: linear\nmodels: [a, b\n")
        );
        Assert.StartsWith("cfg.yml:1:15: YAML syntax error:", Error("merge_method: \"linear\n"));
    }

    [Fact]
    public void Missing_merge_method()
    {
        Assert.StartsWith("cfg.yml:1:1: missing required key 'merge_method'", Error(Models));
    }

    [Fact]
    public void Merge_method_must_be_a_string()
    {
        Assert.StartsWith(
            "cfg.yml:1:15: 'merge_method' must be a string, not the number '1'",
            Error("merge_method: 1\n" + Models)
        );
    }

    [Fact]
    public void Both_models_and_slices()
    {
        var message = Error(
            """
            merge_method: linear
            models:
              - model: a
            slices:
              - sources:
                  - model: a
                    layer_range: [0, 2]
            """
        );
        Assert.StartsWith("cfg.yml:4:1: exactly one of 'models' or 'slices' must be present", message);
        Assert.Contains("'models' (line 2) and 'slices' both are", message);
    }

    [Fact]
    public void Neither_models_nor_slices()
    {
        Assert.StartsWith(
            "cfg.yml:1:1: exactly one of 'models' or 'slices' must be present",
            Error("merge_method: linear\nbase_model: a\n")
        );
        // An empty list counts as absent, as in mergekit.
        Assert.StartsWith("cfg.yml:1:1: exactly one of", Error("merge_method: linear\nmodels: []\n"));
    }

    [Fact]
    public void Empty_list_beside_a_real_one_is_ignored_with_a_warning()
    {
        var r = Parse("merge_method: linear\nslices: []\n" + Models, out var diagnostics);
        Assert.Single(r.Models!);
        Assert.Null(r.Slices);
        Assert.StartsWith("cfg.yml:2:1: 'slices' is empty (ignored)", Assert.Single(diagnostics.Warnings));
    }

    [Theory]
    [InlineData("bfloat16", DType.BF16)]
    [InlineData("float16", DType.F16)]
    [InlineData("float32", DType.F32)]
    [InlineData("torch.bfloat16", DType.BF16)]
    [InlineData("torch.float32", DType.F32)]
    public void Accepted_dtypes(string name, DType expected)
    {
        var r = Parse($"merge_method: linear\n{Models}dtype: {name}\nout_dtype: {name}\n");
        Assert.Equal(expected, r.DType);
        Assert.Equal(expected, r.OutDType);
    }

    [Theory]
    [InlineData("dtype", "float64")]
    [InlineData("dtype", "half")] // a torch alias mergekit does not accept
    [InlineData("out_dtype", "fp16")]
    public void Bad_dtype(string key, string name)
    {
        var message = Error($"merge_method: linear\n{Models}{key}: {name}\n");
        Assert.StartsWith(
            $"cfg.yml:4:{key.Length + 3}: '{key}: {name}' is not supported; use one of bfloat16, float16, float32",
            message
        );
    }

    [Theory]
    [InlineData("int64")]
    [InlineData("torch.int64")]
    public void Integer_dtype_is_rejected_because_it_destroys_weights(string name)
    {
        var message = Error($"merge_method: linear\n{Models}out_dtype: {name}\n");
        Assert.StartsWith($"cfg.yml:4:12: 'out_dtype: {name}' is not allowed: merging in an integer dtype", message);
        Assert.Contains("destroys the model", message);
    }

    [Fact]
    public void Tokenizer_and_tokenizer_source_together()
    {
        var message = Error($"merge_method: linear\n{Models}tokenizer_source: union\ntokenizer:\n  source: base\n");
        Assert.StartsWith("cfg.yml:5:1: cannot specify both 'tokenizer_source' and 'tokenizer'", message);
    }

    [Theory]
    [InlineData("{{ short }}")] // shorter than 20 characters
    [InlineData("just a long plain string without braces")]
    [InlineData("chatml2")]
    public void Bad_chat_template(string template)
    {
        var message = Error($"merge_method: linear\n{Models}chat_template: \"{template}\"\n");
        Assert.StartsWith($"cfg.yml:4:16: Invalid chat template '{template}'", message);
    }

    [Theory]
    [InlineData("auto")]
    [InlineData("alpaca")]
    [InlineData("chatml")]
    [InlineData("llama3")]
    [InlineData("mistral")]
    [InlineData("exaone")]
    [InlineData("{{messages[0]['content']}}")]
    public void Valid_chat_templates(string template)
    {
        Assert.Equal(template, Parse($"merge_method: linear\n{Models}chat_template: \"{template}\"\n").ChatTemplate);
    }

    [Theory]
    [InlineData("[0]", "must be [start, end]")]
    [InlineData("[0, 1, 2]", "must be [start, end]")]
    [InlineData("[4, 2]", "(start is after end)")]
    [InlineData("[-1, 2]", "got [-1, 2]")]
    [InlineData("[0, 2.5]", "'layer_range' end must be a whole number")]
    [InlineData("0", "must be [start, end]")]
    public void Bad_layer_range(string range, string why)
    {
        var message = Error(
            $"merge_method: passthrough\nslices:\n  - sources:\n      - model: a\n        layer_range: {range}\n"
        );
        Assert.StartsWith("cfg.yml:5:", message);
        Assert.Contains(why, message);
    }

    [Fact]
    public void Zero_length_slice_is_allowed()
    {
        var r = Parse(
            "merge_method: passthrough\nslices:\n  - sources:\n      - model: a\n        layer_range: [32, 32]\n"
        );
        Assert.Equal(0, r.Slices![0].LayerCount);
    }

    [Fact]
    public void Slice_sources_with_different_lengths()
    {
        var message = Error(
            """
            merge_method: slerp
            slices:
              - sources:
                  - model: a
                    layer_range: [0, 8]
                  - model: b
                    layer_range: [0, 6]
            """
        );
        Assert.StartsWith("cfg.yml:6:9: All inputs to a slice must contain the same number of layers", message);
        Assert.Contains("this source has 6, the first has 8", message);
    }

    [Theory]
    [InlineData("weight: [0.1, abc]", "cfg.yml:5:21:")]
    [InlineData("weight: [0.1, [1]]", "cfg.yml:5:21:")]
    [InlineData("weight: {filter: mlp, value: {a: 1}}", "cfg.yml:5:36:")]
    [InlineData("weight:", "cfg.yml:5:")]
    public void Bad_parameter_value(string line, string prefix)
    {
        var message = Error($"merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      {line}\n");
        Assert.StartsWith(prefix, message);
        Assert.Contains("parameter 'weight':", message);
    }

    [Fact]
    public void Parameter_value_error_message_is_exact()
    {
        Assert.StartsWith(
            "cfg.yml:5:17: parameter 'density': expected a number, a gradient list, or filter/value entries",
            Error("merge_method: ties\nmodels:\n  - model: a\n    parameters:\n      density: [abc]\n")
        );
    }

    [Fact]
    public void Empty_gradient_and_filter_without_value()
    {
        Assert.StartsWith(
            "cfg.yml:3:6: parameter 't': a gradient list needs at least one value",
            Error("merge_method: slerp\nparameters:\n  t: []\n" + Models)
        );
        Assert.StartsWith(
            "cfg.yml:3:6: parameter 't': a filter entry needs a 'value'",
            Error("merge_method: slerp\nparameters:\n  t: {filter: mlp}\n" + Models)
        );
        Assert.StartsWith(
            "cfg.yml:3:15: parameter 't': 'filter' must be a string, not the number '5'; YAML 1.1 reads 5 as a "
                + "number, so put it in quotes",
            Error("merge_method: slerp\nparameters:\n  t: {filter: 5, value: 1}\n" + Models)
        );
    }

    [Fact]
    public void Modules_are_refused_whatever_they_hold()
    {
        Assert.StartsWith(
            "cfg.yml:2:1: 'modules:' (per-module recipes for multi-module architectures) is not supported",
            Error("merge_method: linear\nmodules:\n  text:\n    parameters: {weight: 1}\n")
        );
        Assert.StartsWith(
            "cfg.yml:2:1: 'modules:' (per-module recipes for multi-module architectures) is not supported",
            Error(
                "merge_method: linear\nmodules:\n  text:\n    models: [{model: a}]\n    slices: [{sources: [{model: a, "
                    + "layer_range: [0, 1]}]}]\n"
            )
        );
    }

    [Fact]
    public void Models_entry_must_be_a_mapping()
    {
        Assert.StartsWith(
            "cfg.yml:2:10: each entry of 'models' must be a mapping with a 'model' key",
            Error("merge_method: linear\nmodels: [a, b]\n")
        );
    }

    [Fact]
    public void Token_source_shapes()
    {
        Assert.StartsWith(
            "cfg.yml:6:19: token '<x>': a 'model_token' source needs exactly one of 'token' or 'token_id'",
            Error(
                $"merge_method: linear\n{Models}tokenizer:\n  tokens:\n    <x>: {{source: {{kind: model_token, model: "
                    + $"m}}}}\n"
            )
        );
        Assert.StartsWith(
            "cfg.yml:6:26: token '<x>': source 'kind' must be 'model_token' or 'zero'",
            Error($"merge_method: linear\n{Models}tokenizer:\n  tokens:\n    <x>: {{source: {{kind: ones}}}}\n")
        );
        Assert.StartsWith(
            "cfg.yml:5:23: 'pad_to_multiple_of' must be a positive whole number",
            Error($"merge_method: linear\n{Models}tokenizer:\n  pad_to_multiple_of: 0\n")
        );
    }

    [Fact]
    public void Config_must_be_a_single_non_empty_mapping()
    {
        Assert.StartsWith("cfg.yml:1:1: the config is empty", Error("# nothing\n"));
        Assert.StartsWith("cfg.yml:1:1: a merge config must be a mapping", Error("- a\n- b\n"));
        Assert.StartsWith(
            "cfg.yml:4:1: expected a single YAML document",
            Error($"merge_method: linear\n{Models}---\nmerge_method: ties\n")
        );
    }

    [Fact]
    public void Missing_file()
    {
        var path = Path.Combine(Path.GetTempPath(), $"alloy-missing-{Guid.NewGuid():N}.yml");
        var ex = Assert.Throws<AlloyException>(() => RecipeParser.ParseFile(path, Diagnostics.Silent()));
        Assert.Equal($"{path}: no such file", ex.Message);
    }

    [Fact]
    public void Parse_file_keeps_text_and_path()
    {
        var path = Path.Combine(Path.GetTempPath(), $"alloy-recipe-{Guid.NewGuid():N}.yml");
        const string text = "# my merge\nmerge_method: linear\nmodels:\n  - model: a\n";
        File.WriteAllText(path, text);
        try
        {
            var r = RecipeParser.ParseFile(path, Diagnostics.Silent());
            Assert.Equal(text, r.Text);
            Assert.Equal(path, r.SourceName);
            Assert.Equal(new SourceLocation(path, 2, 15), r.MethodLocation);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Multi_document_names_must_be_unique_and_only_one_unnamed()
    {
        var dup = Assert.Throws<AlloyException>(() =>
            RecipeParser.ParseDocuments(
                $"name: x\nmerge_method: linear\n{Models}---\nname: x\nmerge_method: linear\n{Models}",
                Cfg,
                Diagnostics.Silent()
            )
        );
        Assert.StartsWith("cfg.yml:6:1: duplicate merge name 'x' (first at line 1)", dup.Message);

        var unnamed = Assert.Throws<AlloyException>(() =>
            RecipeParser.ParseDocuments(
                $"merge_method: linear\n{Models}---\nmerge_method: linear\n{Models}",
                Cfg,
                Diagnostics.Silent()
            )
        );
        Assert.StartsWith("cfg.yml:5:1: more than one document has no 'name' (first at line 1)", unnamed.Message);
    }

    [Fact]
    public void Trailing_empty_document_is_skipped_with_a_warning()
    {
        var diagnostics = Diagnostics.Silent();
        var recipes = RecipeParser.ParseDocuments($"merge_method: linear\n{Models}---\n", Cfg, diagnostics);
        Assert.Single(recipes);
        Assert.StartsWith("cfg.yml:4:1: empty YAML document (ignored)", Assert.Single(diagnostics.Warnings));
    }
}
