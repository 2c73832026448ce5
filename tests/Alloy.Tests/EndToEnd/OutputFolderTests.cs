using System.Text.Json.Nodes;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>What a merged folder contains: shards, index, config, donor files, model card, the recipe text.</summary>
public sealed class OutputFolderTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public OutputFolderTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    private string LinearConfig() =>
        _work.Write(
            "linear.yml",
            $$"""
            # a comment that must survive in mergekit_config.yml
            models:
              - model: {{_models.FineTunes[0]}}
                parameters: {weight: 1}
              - model: {{_models.FineTunes[1]}}
                parameters: {weight: 1}
            merge_method: linear
            dtype: bfloat16
            """
        );

    /// <summary>A whole-tensor method's recipe (Karcher means iterate over whole tensors).</summary>
    private string WholeTensorConfig() =>
        _work.Write(
            "karcher.yml",
            $$"""
            merge_method: karcher
            models:
              - model: {{_models.FineTunes[0]}}
              - model: {{_models.FineTunes[1]}}
            """
        );

    /// <summary>A streamed method's recipe: statistics first (norms and a dot), then chunks.</summary>
    private string SlerpConfig() =>
        _work.Write(
            "slerp.yml",
            $$"""
            merge_method: slerp
            base_model: {{_models.Base}}
            models:
              - model: {{_models.FineTunes[0]}}
            parameters:
              t: 0.5
            """
        );

    [Fact]
    public void A_merge_writes_config_tokenizer_card_and_the_original_recipe()
    {
        var config = LinearConfig();
        var result = AlloyCli.Run("merge", config, _work["out"]);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("merged", result.Stdout);
        Assert.Equal("", result.Stderr);

        string[] expected =
        [
            "model.safetensors",
            "config.json",
            "generation_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "README.md",
            "mergekit_config.yml",
        ];
        Assert.Equal(expected.Order(), Directory.GetFiles(_work["out"]).Select(Path.GetFileName).Order());
        Assert.Equal(File.ReadAllText(config), File.ReadAllText(_work["out/mergekit_config.yml"]));
        Assert.Equal(
            File.ReadAllText(Path.Combine(_models.FineTunes[0], "tokenizer.json")),
            File.ReadAllText(_work["out/tokenizer.json"])
        );

        var outConfig = JsonNode.Parse(File.ReadAllText(_work["out/config.json"]))!.AsObject();
        var donorConfig = JsonNode
            .Parse(File.ReadAllText(Path.Combine(_models.FineTunes[0], "config.json")))!
            .AsObject();
        Assert.Equal("bfloat16", (string)outConfig["torch_dtype"]!);
        Assert.Equal((int)donorConfig["num_hidden_layers"]!, (int)outConfig["num_hidden_layers"]!);

        var card = File.ReadAllText(_work["out/README.md"]);
        Assert.StartsWith("---\n", card);
        Assert.Contains("Linear", card);
        Assert.Contains(_models.FineTunes[1], card);
        Assert.Contains("a comment that must survive", card);

        using var checkpoint = Alloy.Checkpoints.Checkpoint.Open(_work["out"]);
        Assert.All(checkpoint.Tensors, t => Assert.Equal(Alloy.Tensors.DType.BF16, t.Info.DType));
        Assert.Empty(Directory.GetDirectories(_work.Path, ".out.alloy-tmp*"));
    }

    [Fact]
    public void Out_shard_size_splits_the_output_into_indexed_shards()
    {
        AlloyCli.Merge(LinearConfig(), _work["out"], "--out-shard-size", "20K");
        var shards = Directory.GetFiles(_work["out"], "model-*.safetensors").Select(Path.GetFileName).Order().ToList();
        Assert.True(shards.Count > 1);
        Assert.Equal($"model-00001-of-{shards.Count:D5}.safetensors", shards[0]);
        var index = JsonNode.Parse(File.ReadAllText(_work["out/model.safetensors.index.json"]))!;
        long totalSize = (long)index["metadata"]!["total_size"]!;
        long tensorBytes = TestCheckpoints.ReadAll(_work["out"]).Values.Sum(v => (long)v.Length * 2);
        Assert.Equal(tensorBytes, totalSize);
        Assert.All(shards, s => Assert.True(new FileInfo(_work["out/" + s]).Length < 20_000 + 4_096));
    }

    [Fact]
    public void A_memory_limit_smaller_than_any_chunk_still_merges_identically()
    {
        AlloyCli.Merge(LinearConfig(), _work["small"], "--memory-limit", "1K", "--threads", "2");
        AlloyCli.Merge(LinearConfig(), _work["default"]);
        Assert.Equal(
            File.ReadAllBytes(_work["default/model.safetensors"]),
            File.ReadAllBytes(_work["small/model.safetensors"])
        );
        var bad = AlloyCli.Run("merge", LinearConfig(), _work["bad"], "--memory-limit", "lots");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("--memory-limit: 'lots' is not a memory size", bad.Stderr);
    }

    [Fact]
    public void A_whole_tensor_method_that_needs_more_than_the_memory_limit_stops_before_writing()
    {
        var config = WholeTensorConfig();
        var result = AlloyCli.Fails(config, _work["out"], "raise it with --memory-limit", "--memory-limit", "1K");
        Assert.Contains("'karcher', which works on whole tensors", result.Stderr);
    }

    [Fact]
    public void A_streamed_method_merges_within_a_memory_limit_smaller_than_any_chunk()
    {
        AlloyCli.Merge(SlerpConfig(), _work["small"], "--memory-limit", "1K", "--threads", "2");
        AlloyCli.Merge(SlerpConfig(), _work["default"]);
        Assert.Equal(
            File.ReadAllBytes(_work["default/model.safetensors"]),
            File.ReadAllBytes(_work["small/model.safetensors"])
        );
    }

    [Fact]
    public void Without_an_explicit_limit_an_oversized_whole_tensor_runs_alone_after_a_warning()
    {
        var config = WholeTensorConfig();
        var recipe = Alloy.Recipes.RecipeParser.ParseFile(config, new Diagnostics());
        var diagnostics = new Diagnostics();
        var soft = new MergeOptions
        {
            Execution = new() { MemoryLimitBytes = 1024, StrictMemoryLimit = false },
        };
        Alloy.Merger.Run(recipe, _work["soft"], soft, diagnostics);
        Assert.Contains(diagnostics.Warnings, w =>
            w.Contains("runs alone above the default budget", StringComparison.Ordinal)
        );
        Alloy.Merger.Run(recipe, _work["default"], new MergeOptions(), new Diagnostics());
        Assert.Equal(
            File.ReadAllBytes(_work["default/model.safetensors"]),
            File.ReadAllBytes(_work["soft/model.safetensors"])
        );
    }

    [Fact]
    public void The_model_card_names_the_base_only_when_the_method_uses_one()
    {
        var config = _work.Write(
            "karcher.yml",
            $$"""
            merge_method: karcher
            base_model: {{_models.Base}}
            models:
              - model: {{_models.Base}}
              - model: {{_models.FineTunes[0]}}
            """
        );
        AlloyCli.Merge(config, _work["out"]);
        var card = File.ReadAllText(_work["out/README.md"]);
        Assert.DoesNotContain("as the base model", card);
        Assert.Contains($"- `{_models.Base}`", card);
    }

    [Fact]
    public void Flags_turn_off_the_tokenizer_copy_and_the_model_card()
    {
        AlloyCli.Merge(LinearConfig(), _work["out"], "--no-copy-tokenizer", "--no-model-card");
        var files = Directory.GetFiles(_work["out"]).Select(Path.GetFileName).Order().ToList();
        Assert.Equal(["config.json", "generation_config.json", "model.safetensors"], files);
    }

    [Fact]
    public void A_non_empty_output_folder_is_refused_unless_overwrite()
    {
        _work.Write("out/keep.txt", "precious");
        var result = AlloyCli.Run("merge", LinearConfig(), _work["out"], "--quiet");
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("not empty", result.Stderr);
        Assert.True(File.Exists(_work["out/keep.txt"]));

        // --overwrite replaces only a previous model output: a file of the user's is named and kept.
        var refused = AlloyCli.Run("merge", LinearConfig(), _work["out"], "--quiet", "--overwrite");
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains(
            "holds files a merge does not write (keep.txt); --overwrite replaces only a previous model output",
            refused.Stderr
        );
        Assert.Equal("precious", File.ReadAllText(_work["out/keep.txt"]));
    }

    [Fact]
    public void Overwrite_replaces_a_previous_model_output()
    {
        AlloyCli.Merge(LinearConfig(), _work["out"]);
        Directory.CreateDirectory(_work["out/emr"]);
        _work.Write("out/emr/rescalers.json", "{}");
        _work.Write("out/tokenizer.json", "{}");
        var first = File.GetLastWriteTimeUtc(_work["out/model.safetensors"]);
        AlloyCli.Merge(LinearConfig(), _work["out"], "--overwrite");
        Assert.True(File.Exists(_work["out/model.safetensors"]));
        Assert.False(Directory.Exists(_work["out/emr"]), "the old output's files were not replaced");

        _work.Write("out/notes/todo.md", "mine");
        var refused = AlloyCli.Run("merge", LinearConfig(), _work["out"], "--quiet", "--overwrite");
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("holds files a merge does not write (notes, notes/todo.md)", refused.Stderr);
        Assert.True(File.Exists(_work["out/notes/todo.md"]));
        Assert.True(first <= File.GetLastWriteTimeUtc(_work["out/model.safetensors"]));
    }

    [Fact]
    public void Mergekit_flags_that_do_not_apply_are_accepted_with_a_note()
    {
        var result = AlloyCli.Run(
            "merge",
            LinearConfig(),
            _work["out"],
            "--quiet",
            "--cuda",
            "--lazy-unpickle",
            "--low-cpu-memory",
            "--device",
            "cuda:0",
            "-j",
            "2"
        );
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("note: --cuda has no effect", result.Stderr);
        Assert.Contains("note: --device has no effect", result.Stderr);
        Assert.DoesNotContain("--multi-gpu", result.Stderr);
        Assert.True(File.Exists(_work["out/model.safetensors"]));
    }
}
