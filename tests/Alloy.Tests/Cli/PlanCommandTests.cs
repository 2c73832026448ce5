using System.Text.Json.Nodes;
using Alloy.Cli;
using Alloy.Tests.EndToEnd;
using Alloy.Tests.Support;

namespace Alloy.Tests.Cli;

/// <summary>
/// <c>alloy plan</c> and <c>alloy merge --dry-run</c>: what a merge would do, read from headers alone, with each
/// parameter's value per layer as the merge itself uses it, and nothing written.
/// </summary>
public sealed class PlanCommandTests : IClassFixture<TokenizerFamily>, IDisposable
{
    private readonly TokenizerFamily _tokenizers;
    private readonly TempFolder _work = new();

    public PlanCommandTests(TokenizerFamily tokenizers) => _tokenizers = tokenizers;

    public void Dispose() => _work.Dispose();

    private static string Example(string name) => Path.Combine(ExampleTests.RepositoryRoot, "examples", name);

    /// <summary>The table rows under "t varies:", by where they apply.</summary>
    private static Dictionary<string, string> Varying(string text, string parameter)
    {
        var lines = text.Split('\n');
        int start = Array.FindIndex(lines, l => l.Trim() == $"{parameter} varies:");
        Assert.True(start >= 0, $"no table for {parameter} in:\n{text}");
        return lines
            .Skip(start + 1)
            .TakeWhile(l => l.StartsWith("    ", StringComparison.Ordinal))
            .Select(l => l.Trim().Split("  ", 2, StringSplitOptions.TrimEntries))
            .ToDictionary(p => p[0], p => p[1]);
    }

    [Fact]
    public void A_gradient_is_shown_layer_by_layer_with_the_values_it_interpolates_to()
    {
        var result = AlloyCli.Run("plan", Example("gradient-slerp.yml"));
        Assert.Equal(ExitCodes.Success, result.ExitCode);
        // self_attn: [0, 0.5, 0.3, 0.7, 1] and mlp: [1, 0.5, 0.7, 0.3, 0] over 4 layers, read at 0, 4/3, 8/3, 4.
        var t = Varying(result.Stdout, "t");
        Assert.Equal("0.5", t["before the layers"]);
        Assert.Equal("0.5 (norms), 0 (attention), 1 (mlp)", t["layer 0"]);
        Assert.Equal("0.5 (norms), 0.433333 (attention), 0.566667 (mlp)", t["layer 1"]);
        Assert.Equal("0.5 (norms), 0.566667 (attention), 0.433333 (mlp)", t["layer 2"]);
        Assert.Equal("0.5 (norms), 1 (attention), 0 (mlp)", t["layer 3"]);
        Assert.Equal("0.5", t["after the layers"]);
        Assert.Contains("config.json from: models/finetune-1", result.Stdout);
        Assert.Contains("output: 39 tensors (39 merged, 0 copied), 4 layers, float16", result.Stdout);
        Assert.Contains("expected time:", result.Stdout);
    }

    [Fact]
    public void Per_model_values_are_shown_for_each_model()
    {
        var result = AlloyCli.Run("plan", Example("ties.yml"));
        Assert.Equal(ExitCodes.Success, result.ExitCode);
        Assert.Contains("  density [models/finetune-2] = 0.5\n", result.Stdout);
        var weight = Varying(result.Stdout, "weight [models/finetune-2]");
        Assert.Equal(
            new[] { "0", "0", "0.3", "0.7", "1", "0" },
            new[] { "before the layers", "layer 0", "layer 1", "layer 2", "layer 3", "after the layers" }.Select(w =>
                weight[w]
            )
        );
    }

    [Fact]
    public void A_merged_vocabulary_says_where_the_rows_come_from()
    {
        var config = _work.Write(
            "union.yml",
            TokenizerFamily.LinearRecipe(
                _tokenizers.Base,
                "tokenizer_source: union",
                (_tokenizers.Base, 1),
                (_tokenizers.ChatMl, 1)
            )
        );
        var result = AlloyCli.Run("plan", config);
        Assert.Equal(ExitCodes.Success, result.ExitCode);
        int union = TokenizerFamily
            .Vocabulary(_tokenizers.Base)
            .Keys.Union(TokenizerFamily.Vocabulary(_tokenizers.ChatMl).Keys)
            .Count();
        int chatml = TokenizerFamily.Vocabulary(_tokenizers.ChatMl).Count;
        Assert.Contains($"vocabulary: union of every model's: {union} tokens", result.Stdout);
        Assert.Contains($"{_tokenizers.ChatMl}: {chatml} of {union}", result.Stdout);
        Assert.Contains("tokenizer from: written new for the merged vocabulary", result.Stdout);
    }

    [Fact]
    public void Json_output_carries_the_same_plan()
    {
        var result = AlloyCli.Run("plan", Example("gradient-slerp.yml"), "--json");
        Assert.Equal(ExitCodes.Success, result.ExitCode);
        var plan = JsonNode.Parse(result.Stdout)!;
        Assert.Equal("slerp", (string)plan["method"]!);
        Assert.Equal(39, (int)plan["output"]!["tensors"]!);
        var t = plan["varying_parameters"]!.AsArray().Single(p => (string)p!["name"]! == "t")!;
        Assert.Equal(
            "0.5 (norms), 0.433333 (attention), 0.566667 (mlp)",
            (string)t["values"]!.AsArray().Single(r => (string)r!["where"]! == "layer 1")!["values"]!
        );
        Assert.True((long)plan["memory"]!["largest_item_bytes"]! > 0);
    }

    [Fact]
    public void A_dry_run_writes_nothing_and_checks_the_output_folder()
    {
        var output = _work["out"];
        var result = AlloyCli.Run("merge", Example("ties.yml"), output, "--dry-run");
        Assert.Equal(ExitCodes.Success, result.ExitCode);
        Assert.Contains("merge method: ties", result.Stdout);
        Assert.Contains($"dry run: nothing written; the merge would write {output}", result.Stdout);
        Assert.False(Directory.Exists(output));
        Assert.Empty(Directory.GetFileSystemEntries(_work.Path, ".*"));

        _work.Write("out/notes.txt", "mine");
        var refused = AlloyCli.Run("merge", Example("ties.yml"), output, "--dry-run");
        Assert.Equal(ExitCodes.InputError, refused.ExitCode);
        Assert.Equal(
            $"error: output folder '{output}' is not empty; pass --overwrite to replace it",
            refused.Stderr.Trim()
        );
    }

    [Fact]
    public void A_recipe_that_would_fail_fails_the_plan_with_a_one_line_error()
    {
        var config = _work.Write(
            "bad.yml",
            "merge_method: ties\nmodels:\n  - model: "
                + Example("models/finetune-1")
                + "\n    parameters: {weight: 1, densty: 0.5}\nbase_model: "
                + Example("models/base")
                + "\n"
        );
        var result = AlloyCli.Run("plan", config);
        Assert.Equal(ExitCodes.InputError, result.ExitCode);
        Assert.Single(result.Stderr.Trim().Split('\n'));
        Assert.Contains("did you mean 'density'", result.Stderr);
        Assert.Equal("", result.Stdout);
    }
}
