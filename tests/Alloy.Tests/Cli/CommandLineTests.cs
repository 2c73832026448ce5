using Alloy.Cli;
using Alloy.Tests.Support;

namespace Alloy.Tests.Cli;

/// <summary>The command line as a person mistypes it: help for bare `alloy`, the closest command or option for a typo.</summary>
public sealed class CommandLineTests
{
    [Fact]
    public void Bare_alloy_prints_help()
    {
        var result = AlloyCli.Run();
        Assert.Equal(ExitCodes.Success, result.ExitCode);
        Assert.Contains("Usage:", result.Stdout);
        foreach (var command in new[] { "merge", "multi", "merge-raw", "synth", "train", "fisher", "regmean", "eval", "methods" })
            Assert.Contains(command, result.Stdout);
    }

    [Theory]
    [InlineData(new[] { "mrege", "a.yml", "out" }, "error: unknown command 'mrege'; did you mean 'merge'? (see 'alloy --help')")]
    [InlineData(new[] { "evl", "model" }, "error: unknown command 'evl'; did you mean 'eval'? (see 'alloy --help')")]
    [InlineData(new[] { "moe", "config.yml" }, "error: unknown command 'moe' (see 'alloy --help')")]
    [InlineData(new[] { "merge", "--thraeds", "2", "a.yml", "out" }, "error: unknown option '--thraeds'; did you mean '--threads'? (see 'alloy merge --help')")]
    [InlineData(new[] { "merge", "a.yml", "out", "--quite" }, "error: unknown option '--quite'; did you mean '--quiet'? (see 'alloy merge --help')")]
    [InlineData(new[] { "eval", "model", "--taks", "t.jsonl" }, "error: unknown option '--taks'; did you mean '--tasks'? (see 'alloy eval --help')")]
    [InlineData(new[] { "merge", "a.yml", "out", "extra" }, "error: unexpected argument 'extra' (see 'alloy merge --help')")]
    public void A_mistyped_command_line_names_the_word_and_the_closest_known_one(string[] args, string expected)
    {
        var result = AlloyCli.Run(args);
        Assert.Equal(ExitCodes.UsageError, result.ExitCode);
        Assert.Equal(expected, result.Stderr.Split('\n')[0].TrimEnd());
        Assert.DoesNotContain("   at ", result.Stderr);
    }

    [Fact]
    public void An_unknown_command_lists_the_commands()
    {
        var result = AlloyCli.Run("mrege");
        Assert.Equal("commands: merge, multi, merge-raw, synth, train, fisher, regmean, eval, methods", result.Stderr.Split('\n')[1].TrimEnd());
    }
}
