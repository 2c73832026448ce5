using System.Text.RegularExpressions;
using Alloy.Fuzz;
using Alloy.Tests.EndToEnd;
using Xunit.Abstractions;

namespace Alloy.Tests.Fuzz;

/// <summary>
/// Replays the fuzz corpus and every past finding (fuzz/corpus/TARGET/*, fuzz/crashes/TARGET/*) through the same
/// targets afl runs: each input must parse or be refused as bad input, within seconds. Findings not fixed yet are
/// listed in fuzz/crashes/KNOWN-OPEN.md, and only those are skipped.
/// </summary>
public sealed partial class FuzzReplayTests(FuzzTargets targets, ITestOutputHelper output) : IClassFixture<FuzzTargets>
{
    private static readonly string Root = Path.Combine(ExampleTests.RepositoryRoot, "fuzz");

    public static TheoryData<string> Inputs() => new(AllInputs().Where(input => !KnownOpen().ContainsKey(input)));

    [Theory]
    [MemberData(nameof(Inputs))]
    public async Task Input_parses_or_is_refused_as_bad_input(string input)
    {
        string target = input.Split('/')[1];
        var bytes = File.ReadAllBytes(Path.Combine(Root, input));
        var run = Task.Run(() => targets.Run(target, bytes));
        // Generous: a parse takes milliseconds, but CI machines are shared.
        Assert.True(await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(30))) == run, $"{input}: still running");
        if (await run is { } refusal)
            output.WriteLine($"refused: {refusal.Message}");
    }

    [Fact]
    public void Every_target_has_a_corpus_and_every_input_folder_is_a_target()
    {
        foreach (var target in FuzzTargets.Names)
            Assert.NotEmpty(Directory.GetFiles(Path.Combine(Root, "corpus", target)));
        var folders = new[] { "corpus", "crashes" }.SelectMany(f => Directory.GetDirectories(Path.Combine(Root, f)));
        Assert.All(folders, folder => Assert.Contains(Path.GetFileName(folder), FuzzTargets.Names));
    }

    [Fact]
    public void Known_open_findings_are_files_under_crashes()
    {
        foreach (var (input, reason) in KnownOpen())
        {
            Assert.True(File.Exists(Path.Combine(Root, input)), $"KNOWN-OPEN.md lists {input}, which does not exist");
            output.WriteLine($"skipped, known open: {input}: {reason}");
        }
    }

    /// <summary>Every input, as "corpus/TARGET/FILE" or "crashes/TARGET/FILE"; not .gitkeep (afl skips it).</summary>
    private static IEnumerable<string> AllInputs() =>
        new[] { "corpus", "crashes" }
            .SelectMany(folder => Directory.GetDirectories(Path.Combine(Root, folder)))
            .SelectMany(Directory.GetFiles)
            .Where(file => !Path.GetFileName(file).StartsWith('.'))
            .Select(file => Path.GetRelativePath(Root, file).Replace('\\', '/'))
            .Order(StringComparer.Ordinal);

    /// <summary>The lines "- `TARGET/FILE`: reason" of KNOWN-OPEN.md, by "crashes/TARGET/FILE".</summary>
    private static Dictionary<string, string> KnownOpen() =>
        File.ReadLines(Path.Combine(Root, "crashes", "KNOWN-OPEN.md"))
            .Select(line => KnownOpenLine().Match(line))
            .Where(match => match.Success)
            .ToDictionary(match => "crashes/" + match.Groups["file"].Value, match => match.Groups["reason"].Value);

    [GeneratedRegex(@"^- `(?<file>[^`]+)`: (?<reason>.+)$")]
    private static partial Regex KnownOpenLine();
}
