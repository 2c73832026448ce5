using Alloy.Cli;
using Alloy.Tests.Support;

namespace Alloy.Tests.Cli;

/// <summary>
/// The command line as a person mistypes it: help for bare `alloy`, the closest command or option for a typo.
/// </summary>
public sealed class CommandLineTests
{
    [Fact]
    public void Bare_alloy_prints_help()
    {
        var result = AlloyCli.Run();
        Assert.Equal(ExitCodes.Success, result.ExitCode);
        Assert.Contains("Usage:", result.Stdout);
        foreach (
            var command in new[]
            {
                "merge",
                "plan",
                "multi",
                "merge-raw",
                "synth",
                "train",
                "fisher",
                "regmean",
                "eval",
                "methods",
            }
        )
            Assert.Contains(command, result.Stdout);
    }

    [Theory]
    [InlineData(
        new[] { "mrege", "a.yml", "out" },
        "error: unknown command 'mrege'; did you mean 'merge'? (see 'alloy --help')"
    )]
    [InlineData(new[] { "evl", "model" }, "error: unknown command 'evl'; did you mean 'eval'? (see 'alloy --help')")]
    [InlineData(new[] { "tokensurgeon", "config.yml" }, "error: unknown command 'tokensurgeon' (see 'alloy --help')")]
    [InlineData(
        new[] { "merge", "--thraeds", "2", "a.yml", "out" },
        "error: unknown option '--thraeds'; did you mean '--threads'? (see 'alloy merge --help')"
    )]
    [InlineData(
        new[] { "merge", "a.yml", "out", "--quite" },
        "error: unknown option '--quite'; did you mean '--quiet'? (see 'alloy merge --help')"
    )]
    [InlineData(
        new[] { "eval", "model", "--taks", "t.jsonl" },
        "error: unknown option '--taks'; did you mean '--tasks'? (see 'alloy eval --help')"
    )]
    [InlineData(
        new[] { "merge", "a.yml", "out", "extra" },
        "error: unexpected argument 'extra' (see 'alloy merge --help')"
    )]
    public void A_mistyped_command_line_names_the_word_and_the_closest_known_one(string[] args, string expected)
    {
        var result = AlloyCli.Run(args);
        Assert.Equal(ExitCodes.UsageError, result.ExitCode);
        Assert.Equal(expected, result.Stderr.Split('\n')[0].TrimEnd());
        Assert.DoesNotContain("   at ", result.Stderr);
    }

    [Theory]
    [InlineData("plan", "--overwrite")]
    [InlineData("plan", "--quiet")]
    [InlineData("plan", "--no-model-card")]
    [InlineData("plan", "--threads")]
    [InlineData("merge-raw", "--allow-crimes")]
    public void Options_that_do_not_act_on_a_command_are_neither_listed_nor_accepted(string command, string option)
    {
        Assert.DoesNotContain(option, AlloyCli.Run(command, "--help").Stdout);
        Assert.Equal(ExitCodes.UsageError, AlloyCli.Run(command, "x.yml", option).ExitCode);
        Assert.Contains(option, AlloyCli.Run("merge", "--help").Stdout);
    }

    [Fact]
    public void An_unknown_command_lists_the_commands()
    {
        var result = AlloyCli.Run("mrege");
        Assert.Equal(
            "commands: merge, plan, multi, merge-raw, synth, train, fisher, regmean, extract-lora, moe, moe-compress, "
                + "align, merge-adapters, eval, methods",
            result.Stderr.Split('\n')[1].TrimEnd()
        );
    }
}

/// <summary>mergekit's --transformers-cache: model ids are found in that Hugging Face cache folder.</summary>
public sealed class TransformersCacheTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public TransformersCacheTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    [Fact]
    public void Model_ids_are_found_in_the_cache_folder_given()
    {
        // A hub cache laid out as huggingface_hub writes it: models--org--name/{refs/main, snapshots/COMMIT/…}.
        const string commit = "0123456789abcdef0123456789abcdef01234567";
        string cache = _work["hub"];
        foreach (var (id, folder) in new[] { ("org--base", _models.Base), ("org--tuned", _models.FineTunes[0]) })
        {
            string snapshot = Path.Combine(cache, $"models--{id}", "snapshots", commit);
            Directory.CreateDirectory(snapshot);
            foreach (var file in Directory.GetFiles(folder))
                File.Copy(file, Path.Combine(snapshot, Path.GetFileName(file)));
            _work.Write($"hub/models--{id}/refs/main", commit);
        }
        var config = _work.Write(
            "ta.yml",
            "merge_method: task_arithmetic\nbase_model: org/base\nmodels:\n  - model: org/tuned\n    parameters: "
                + "{weight: 1}\n"
        );
        var missing = AlloyCli.Run("merge", config, _work["without"], "--quiet");
        Assert.Equal(ExitCodes.InputError, missing.ExitCode);
        Assert.Contains("model 'org/base' not found", missing.Stderr);
        var found = AlloyCli.Merge(config, _work["with"], "--transformers-cache", cache);
        Assert.DoesNotContain("has no effect", found.Stderr);
        Assert.Equal(
            TestCheckpoints.ReadAll(_models.FineTunes[0]).Keys.Order(),
            TestCheckpoints.ReadAll(_work["with"]).Keys.Order()
        );
    }
}
