using System.Diagnostics;
using System.Text.RegularExpressions;
using Alloy.Cli;
using Alloy.Tests.Support;

namespace Alloy.Tests.Cli;

/// <summary>
/// Progress lines: never wider than the terminal, the phase first, the useful parts kept longest; and as a terminal
/// shows them, drawn in a pseudo-terminal of 80 columns by <c>script</c>.
/// </summary>
public sealed class ProgressTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    private static readonly ProgressUpdate Training = new(
        "training",
        120,
        500,
        "steps",
        "loss 2.3456  val 2.5012  lr 0.000287"
    );

    [Theory]
    [InlineData(20)]
    [InlineData(40)]
    [InlineData(60)]
    [InlineData(79)]
    [InlineData(120)]
    [InlineData(200)]
    public void A_line_is_never_wider_than_the_terminal(int width)
    {
        var updates = new[]
        {
            Training,
            new ProgressUpdate("statistics pass 2/3 (fine)", 3L << 30, 7L << 30, ProgressUpdate.Bytes, "0/291 tensors"),
            new ProgressUpdate("merged-stage-with-a-very-long-name: planning"),
            new ProgressUpdate("generation: capitals", 3, 1000, "items", new string('x', 300)),
        };
        foreach (var update in updates)
        {
            var line = Progress.Line(update, 1234.5, TimeSpan.FromSeconds(75), TimeSpan.FromSeconds(20), width);
            Assert.True(line.Length <= width, $"{line.Length} > {width}: {line}");
            Assert.StartsWith(update.Phase[..Math.Min(update.Phase.Length, width - 1)], line);
        }
    }

    [Fact]
    public void At_80_columns_a_training_line_keeps_the_loss_and_drops_the_rate()
    {
        var line = Progress.Line(Training, 9.5, TimeSpan.FromSeconds(42), TimeSpan.FromSeconds(13), 79);
        Assert.Matches(
            @"^training  ━+─+   24%  120/500 steps  loss 2\.3456  val 2\.5012( +lr 0\.000287)?  0:42 left$",
            line
        );
        Assert.DoesNotContain("steps/s", line);
        var wide = Progress.Line(Training, 9.5, TimeSpan.FromSeconds(42), TimeSpan.FromSeconds(13), 160);
        Assert.Contains("9.5 steps/s", wide);
        Assert.Contains("lr 0.000287", wide);
    }

    [Fact]
    public void Bytes_are_counted_as_bytes_and_a_phase_of_unknown_length_shows_its_elapsed_time()
    {
        var merging = Progress.Line(
            new ProgressUpdate("merging", 1.5 * (1 << 30), 3L << 30, ProgressUpdate.Bytes, "12/39 tensors"),
            300.0 * (1 << 20),
            TimeSpan.FromSeconds(5),
            TimeSpan.FromSeconds(5),
            120
        );
        Assert.Contains(" 50%  1.5 GiB/3.0 GiB  12/39 tensors  300.0 MiB/s  0:05 left", merging);
        var planning = Progress.Line(new ProgressUpdate("planning"), null, null, TimeSpan.FromSeconds(65), 80);
        Assert.Matches(@"^planning  \S +  1:05$", planning);
        // A rate from the first moments of a phase is not shown.
        Assert.DoesNotContain(
            "/s",
            Progress.Line(Training, 5000, TimeSpan.FromSeconds(1), TimeSpan.FromMilliseconds(200), 160)
        );
    }

    /// <summary>
    /// Runs <c>alloy train</c> in a pseudo-terminal of 80 columns (stdout to a file, stderr on the terminal) and
    /// returns every piece of text the terminal was given between line breaks and carriage returns, escape sequences
    /// removed.
    /// </summary>
    private List<string> DrawnInTerminal(params string[] args)
    {
        var (dotnet, cli) = (CliProcess.Command[0], CliProcess.Command[1]);
        string command =
            $"stty cols 80 rows 24; exec {Quote(dotnet)} {Quote(cli)} {string.Join(' ', args.Select(Quote))} > "
            + $"{Quote(_work["stdout.txt"])}";
        var start = new ProcessStartInfo("script", ["-qec", command, "/dev/null"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["TERM"] = "xterm-256color";
        using var script = Process.Start(start)!;
        string drawn = script.StandardOutput.ReadToEnd();
        script.WaitForExit();
        Assert.True(
            script.ExitCode == 0,
            $"script exited {script.ExitCode}: {drawn}{script.StandardError.ReadToEnd()}"
        );
        return Regex
            .Split(drawn, "[\r\n]")
            .Select(s => Regex.Replace(s, @"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]", "").TrimEnd())
            .Where(s => s.Length > 0)
            .ToList();
    }

    private static string Quote(string s) => "'" + s.Replace("'", "'\\''") + "'";

    [Fact]
    public void A_training_bar_in_an_80_column_terminal_fits_and_names_its_phases()
    {
        string model = AlloyCli.FreshModel(_work["synth"]);
        var lines = Enumerable
            .Range(0, 300)
            .Select(i => $"the quick brown fox {i} jumps over the lazy dog {i * 7}")
            .ToList();
        string data = _work.Write("data.txt", string.Join("\n", lines)),
            validation = _work.Write("validation.txt", string.Join("\n", lines.Take(20)));

        var drawn = DrawnInTerminal(
            "train",
            model,
            "--data",
            data,
            "--validation",
            validation,
            "--out",
            _work["trained"],
            "--steps",
            "150",
            "--batch-size",
            "16",
            "-j",
            "1"
        );

        Assert.All(drawn, line => Assert.True(line.Length <= 80, $"{line.Length} columns: {line}"));
        Assert.Contains(drawn, line => line.StartsWith("training on 300 examples", StringComparison.Ordinal));
        var bars = drawn.Where(line => line.StartsWith("training  ", StringComparison.Ordinal)).ToList();
        Assert.True(bars.Count >= 3, string.Join("\n", drawn));
        Assert.All(bars, bar => Assert.Matches(@"^training  [━─]+ +\d+%  \d+/150 steps  loss \d\.\d{4}", bar));
        Assert.Contains("trained 150 steps", File.ReadAllText(_work["stdout.txt"]));
    }
}
