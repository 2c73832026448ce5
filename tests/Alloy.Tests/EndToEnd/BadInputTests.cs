using System.Text.Json.Nodes;
using Alloy.Synthetic;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// Every kind of bad input gets one line naming the problem, exit code 1, no stack trace and no output.
/// </summary>
public sealed class BadInputTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public BadInputTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    private string Out => _work["out"];

    /// <summary>A copy of fine-tune 1 that a test may damage.</summary>
    private string CopyOfModel(string name)
    {
        var target = _work[name];
        Directory.CreateDirectory(target);
        foreach (var file in Directory.GetFiles(_models.FineTunes[0]))
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        return target;
    }

    private string Linear(string a, string b) =>
        _work.Write(
            "config.yml",
            $$"""
            merge_method: linear
            models:
              - model: {{a}}
                parameters: {weight: 1}
              - model: {{b}}
                parameters: {weight: 1}
            """
        );

    [Fact]
    public void Unknown_method_names_the_method_and_its_line()
    {
        var config = _work.Write("config.yml", $"merge_method: tiess\nmodels:\n  - model: {_models.Base}\n");
        AlloyCli.Fails(config, Out, "config.yml:1:");
        AlloyCli.Fails(config, Out, "unknown merge method 'tiess'");
    }

    [Fact]
    public void Task_arithmetic_without_a_base_model_is_refused()
    {
        var config = _work.Write(
            "config.yml",
            $"merge_method: task_arithmetic\nmodels:\n  - model: {_models.FineTunes[0]}\n    parameters: {{weight: "
                + $"1}}\n"
        );
        AlloyCli.Fails(config, Out, "needs a base_model");
    }

    [Fact]
    public void Bad_yaml_points_to_the_file()
    {
        var config = _work.Write("config.yml", "merge_method: linear\nmodels: [\n  - model: x\n");
        AlloyCli.Fails(config, Out, "config.yml:");
    }

    [Fact]
    public void A_tab_in_the_indentation_is_pointed_at()
    {
        var config = _work.Write(
            "tabs.yml",
            "merge_method: linear\nmodels:\n  - model: x\n    parameters:\n  \tweight: 1\n"
        );
        AlloyCli.Fails(
            config,
            Out,
            "tabs.yml:5:3: YAML syntax error: a tab in the indentation (YAML indents with spaces only)"
        );
    }

    [Fact]
    public void A_missing_config_file_is_an_error()
    {
        AlloyCli.Fails(_work["nope.yml"], Out, "nope.yml");
    }

    [Fact]
    public void A_missing_model_is_named()
    {
        AlloyCli.Fails(Linear(_models.FineTunes[0], _work["no-such-model"]), Out, "no-such-model");
    }

    [Fact]
    public void A_gguf_model_is_named_as_unsupported()
    {
        var file = _work.Write("model.gguf", "GGUF");
        AlloyCli.Fails(
            Linear(_models.FineTunes[0], file),
            Out,
            "model.gguf: GGUF files (llama.cpp's format) are not supported"
        );
        _work.Write("gguf-folder/model-Q4_K_M.gguf", "GGUF");
        AlloyCli.Fails(
            Linear(_models.FineTunes[0], _work["gguf-folder"]),
            Out,
            "found GGUF files, llama.cpp's format, which Alloy does not read"
        );
    }

    [Fact]
    public void A_missing_required_parameter_names_the_parameter_and_model()
    {
        var config = _work.Write(
            "config.yml",
            $"merge_method: linear\nmodels:\n  - model: {_models.FineTunes[0]}\n    parameters: {{weight: 1}}\n  - "
                + $"model: {_models.FineTunes[1]}\n"
        );
        AlloyCli.Fails(config, Out, "missing required parameter 'weight'");
    }

    [Fact]
    public void A_listed_base_model_needs_its_weight_where_the_method_does_not_use_a_base()
    {
        var config = _work.Write(
            "config.yml",
            $"merge_method: linear\nbase_model: {_models.Base}\nmodels:\n  - model: {_models.Base}\n  - model: "
                + $"{_models.FineTunes[0]}\n    parameters: {{weight: 1}}\n"
        );
        AlloyCli.Fails(config, Out, "missing required parameter 'weight' for model");
    }

    [Fact]
    public void Unknown_keys_and_parameters_warn_with_their_line_and_the_merge_still_runs()
    {
        var config = _work.Write(
            "config.yml",
            $"""
            merge_method: linear
            models:
              - model: {_models.FineTunes[0]}
                parameters:
                  weight: 1
                  desnity: 0.5
            normalise: true
            """
        );
        var result = AlloyCli.Merge(config, Out);
        Assert.Contains("config.yml:6:", result.Stderr);
        Assert.Contains("desnity", result.Stderr);
        Assert.Contains("config.yml:7:", result.Stderr);
        Assert.Contains("normalise", result.Stderr);
    }

    [Fact]
    public void Models_with_different_shapes_are_refused_with_both_shapes()
    {
        var other = _work["wide"];
        TinyLlama.Write(other, _models.Spec with { IntermediateSize = _models.Spec.IntermediateSize * 2 }, 1);
        AlloyCli.Fails(Linear(_models.FineTunes[0], other), Out, "shapes differ");
    }

    [Fact]
    public void Different_architectures_need_allow_crimes()
    {
        var mistral = CopyOfModel("mistral");
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(mistral, "config.json")))!;
        config["architectures"] = new JsonArray("MistralForCausalLM");
        File.WriteAllText(Path.Combine(mistral, "config.json"), config.ToJsonString());
        var recipe = Linear(_models.FineTunes[0], mistral);
        AlloyCli.Fails(recipe, Out, "--allow-crimes");

        var result = AlloyCli.Merge(recipe, Out, "--allow-crimes");
        Assert.Contains("MistralForCausalLM", result.Stderr);
    }

    [Fact]
    public void A_truncated_checkpoint_is_named_and_nothing_is_written()
    {
        var broken = CopyOfModel("broken");
        var file = Path.Combine(broken, "model.safetensors");
        var bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, bytes[..(bytes.Length / 2)]);
        AlloyCli.Fails(Linear(_models.FineTunes[0], broken), Out, "model.safetensors");
    }

    [Fact]
    public void An_index_naming_a_missing_shard_is_refused()
    {
        var sharded = _work["sharded"];
        TinyLlama.Write(sharded, _models.Spec with { ShardBytes = 20_000 }, 1);
        var second = Directory.GetFiles(sharded, "model-*.safetensors").Order(StringComparer.Ordinal).ElementAt(1);
        File.Delete(second);
        AlloyCli.Fails(Linear(_models.FineTunes[0], sharded), Out, "model-00002-of-");
    }

    [Fact]
    public void A_layer_range_past_the_end_is_refused()
    {
        var config = _work.Write(
            "config.yml",
            $"""
            merge_method: passthrough
            slices:
              - sources:
                  - model: {_models.FineTunes[0]}
                    layer_range: [0, 9]
            """
        );
        AlloyCli.Fails(config, Out, "past the end");
    }

    [Fact]
    public void The_output_may_not_be_inside_an_input_model()
    {
        var model = CopyOfModel("model");
        var before = TestCheckpoints.FolderDigest(model);
        AlloyCli.Fails(
            Linear(model, _models.FineTunes[1]),
            Path.Combine(model, "merged"),
            "never writes into an input model"
        );
        Assert.Equal(before, TestCheckpoints.FolderDigest(model));
    }

    [Fact]
    public void Bad_command_lines_exit_2_with_one_line()
    {
        var result = AlloyCli.Run("merge", "--no-such-flag");
        Assert.Equal(2, result.ExitCode);
        Assert.Single(result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));

        var shard = AlloyCli.Run(
            "merge",
            Linear(_models.FineTunes[0], _models.FineTunes[1]),
            Out,
            "--out-shard-size",
            "1.5B"
        );
        Assert.Equal(1, shard.ExitCode);
        Assert.Contains("--out-shard-size", shard.Stderr);
    }

    [Fact]
    public void Help_describes_every_merge_option()
    {
        var result = AlloyCli.Run("merge", "--help");
        Assert.Equal(0, result.ExitCode);
        foreach (
            var option in new[]
            {
                "--out-shard-size",
                "--random-seed",
                "--allow-crimes",
                "--no-copy-tokenizer",
                "--no-model-card",
                "--threads",
                "--overwrite",
                "--verbose",
                "--quiet",
            }
        )
            Assert.Contains(option, result.Stdout);
    }
}
