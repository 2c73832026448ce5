using Alloy.Cli;

namespace Alloy.Tests.Support;

public sealed record CliResult(int ExitCode, string Stdout, string Stderr);

/// <summary>Runs the alloy command in-process through the same entry point as the executable.</summary>
public static class AlloyCli
{
    public static CliResult Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Alloy.Cli.Program.Run(args, stdout, stderr);
        return new CliResult(code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>
    /// A fresh untrained float32 base (2 layers, hidden 32) made by <c>alloy synth FOLDER --fine-tunes 0</c>, for
    /// training tests; returns FOLDER/base.
    /// </summary>
    public static string FreshModel(string folder, int seed = 1) =>
        Path.Combine(Synth(folder, fineTunes: 0, seed: seed), "base");

    /// <summary>
    /// Small float32 models made by <c>alloy synth FOLDER</c> (hidden 32, 4 heads over 2 key/value heads): a base
    /// and <paramref name="fineTunes"/> fine-tunes, FOLDER/base and FOLDER/finetune-N; returns FOLDER.
    /// </summary>
    public static string Synth(string folder, int fineTunes, int layers = 2, int intermediate = 64, int seed = 1)
    {
        string Text(int value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var synth = Run(
            "synth",
            folder,
            "--fine-tunes",
            Text(fineTunes),
            "--layers",
            Text(layers),
            "--hidden",
            "32",
            "--intermediate",
            Text(intermediate),
            "--heads",
            "4",
            "--kv-heads",
            "2",
            "--dtype",
            "float32",
            "--seed",
            Text(seed)
        );
        Assert.True(synth.ExitCode == 0, synth.Stderr);
        return folder;
    }

    /// <summary>Runs a merge that must succeed, with a useful failure message otherwise.</summary>
    public static CliResult Merge(string config, string output, params string[] extra)
    {
        var result = Run(["merge", config, output, "--quiet", .. extra]);
        Assert.True(result.ExitCode == 0, $"alloy merge failed ({result.ExitCode}): {result.Stderr}");
        return result;
    }

    /// <summary>
    /// Runs a merge that must fail with exit code 1, a one-line error containing <paramref name="expected"/>, and no
    /// stack trace.
    /// </summary>
    public static CliResult Fails(string config, string output, string expected, params string[] extra)
    {
        var result = Run(["merge", config, output, "--quiet", .. extra]);
        Assert.Equal(ExitCodes.InputError, result.ExitCode);
        var errors = result
            .Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Where(l => l.StartsWith("error:", StringComparison.Ordinal))
            .ToList();
        Assert.Single(errors);
        Assert.Contains(expected, errors[0]);
        Assert.DoesNotContain("   at ", result.Stderr);
        Assert.False(
            Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any(),
            "a failed merge left output behind"
        );
        return result;
    }
}
