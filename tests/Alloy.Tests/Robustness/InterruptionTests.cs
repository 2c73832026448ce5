using Alloy.Cli;
using Alloy.Tests.Support;

namespace Alloy.Tests.Robustness;

/// <summary>
/// What users do to long merges, done to a real alloy process: SIGTERM (timeout, docker stop, systemd), kill -9 at
/// random moments, a disk that fills up, a parent folder that cannot be written. The merge is made slow on purpose by
/// the example plugin's <c>pause</c> method (50 ms per tensor, one thread: about 2 s).
/// </summary>
public sealed class InterruptionTests(ModelFamily models) : IClassFixture<ModelFamily>, IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    private string SlowRecipe() =>
        _work.Write(
            "pause.yml",
            $"""
            merge_method: pause
            models:
              - model: {models.FineTunes[0]}
              - model: {models.FineTunes[1]}
            parameters:
              milliseconds: 50
            dtype: float32
            """
        );

    private string[] Merge(string output) =>
        ["merge", SlowRecipe(), output, "--plugin", ExamplePlugin.Path, "-j", "1", "--quiet"];

    private static IEnumerable<string> Temporaries(string folder) =>
        Directory.Exists(folder) ? Directory.EnumerateFileSystemEntries(folder, "*alloy-tmp*") : [];

    /// <summary>Waits until the merge has started writing (its temporary folder exists).</summary>
    private static void WaitForTemporary(CliProcess alloy, string parent)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!Temporaries(parent).Any(Directory.Exists))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"the merge never started: {alloy.Stderr}");
            Thread.Sleep(20);
        }
    }

    [Fact]
    public void Sigterm_cancels_a_merge_like_ctrl_c_and_leaves_nothing_behind()
    {
        // The output's parent folders do not exist yet: the merge creates them, and must remove them again.
        string created = _work["created"],
            parent = Path.Combine(created, "deeper");
        using var alloy = CliProcess.Start(Merge(Path.Combine(parent, "out")));
        WaitForTemporary(alloy, parent);
        alloy.Signal(15); // SIGTERM
        Assert.Equal(ExitCodes.Terminated, alloy.WaitForExit());
        Assert.Equal("terminated (SIGTERM); nothing was written to the output folder\n", alloy.Stderr);
        Assert.False(Directory.Exists(created), "the parent folders the merge created are still there");
    }

    [Fact]
    public void A_merge_killed_at_any_moment_leaves_no_output_or_the_whole_one_and_the_next_run_cleans_up()
    {
        // Every run writes parent/out (replacing a finished one), so the model card's title is the same everywhere.
        var reference = _work["reference/out"];
        Assert.Equal(0, AlloyCli.Run(Merge(reference)).ExitCode);
        var expected = Files(reference);
        string parent = _work["outputs"],
            output = Path.Combine(parent, "out");
        var random = new Random(12);
        int interrupted = 0;
        for (int run = 0; run < 4; run++)
        {
            using var alloy = CliProcess.Start([.. Merge(output), "--overwrite"]);
            // The first run is killed mid-merge for certain, so there is something to clean up; the others at random.
            if (run == 0)
                WaitForTemporary(alloy, parent);
            else
                Thread.Sleep(random.Next(300, 2800));
            alloy.Kill();
            if (alloy.WaitForExit() != 0)
                interrupted++;
            // A finished output (this run's, or a previous one's it was replacing) or none at all.
            if (Directory.Exists(output))
                Assert.Equal(expected, Files(output));
        }
        Assert.True(interrupted > 0, "no kill landed before the merge finished; the test shows nothing");
        Assert.NotEmpty(Temporaries(parent));

        // The next merge into the same parent removes what the killed ones left, and says so.
        var next = AlloyCli.Run([.. Merge(output), "--overwrite"]);
        Assert.Equal(0, next.ExitCode);
        Assert.Contains("left by an earlier run that was killed", next.Stderr);
        Assert.Empty(Temporaries(parent));
        Assert.Equal(expected, Files(output));
    }

    [Fact]
    public void A_temporary_that_a_live_merge_holds_is_left_alone()
    {
        string parent = _work["shared"];
        using var alloy = CliProcess.Start(Merge(Path.Combine(parent, "slow")));
        WaitForTemporary(alloy, parent);
        var theirs = Temporaries(parent).ToList();
        var quick = _work.Write(
            "quick.yml",
            $"merge_method: linear\nmodels:\n  - model: {models.FineTunes[0]}\n    parameters: {{weight: 1}}\n"
        );
        var result = AlloyCli.Run("merge", quick, Path.Combine(parent, "quick"), "--quiet");
        Assert.Equal(0, result.ExitCode);
        Assert.DoesNotContain("removed", result.Stderr);
        Assert.All(theirs, t => Assert.True(Path.Exists(t), $"{t} of the running merge was removed"));
        Assert.Equal(0, alloy.WaitForExit());
        Assert.Empty(Temporaries(parent));
    }

    /// <summary>
    /// Runs alloy in a mount namespace of its own where <paramref name="folder"/> is a fresh tmpfs mounted with
    /// <paramref name="options"/>; prints what the tmpfs holds afterwards on the last line of stdout. Needs root, or
    /// user namespaces (unshare --map-root-user).
    /// </summary>
    private static CliProcess InTmpfs(string folder, string options, string[] args)
    {
        Directory.CreateDirectory(folder);
        string script =
            "mount -t tmpfs -o \"$1\" tmpfs \"$2\" || exit 99; shift 2; \"$@\"; status=$?; "
            + "echo \"left: $(ls -A \"$0\" | tr '\\n' ' ')\"; exit $status";
        string[] unshare = Environment.UserName == "root" ? ["unshare", "--mount"] : ["unshare", "-rm"];
        var alloy = CliProcess.Start(args, [.. unshare, "sh", "-c", script, folder, options, folder]);
        return alloy;
    }

    [Fact]
    public void A_full_disk_fails_in_one_line_and_leaves_nothing()
    {
        string disk = _work["small-disk"];
        // 16 KiB: less than the merged model (about 70 KiB of float32) needs.
        using var alloy = InTmpfs(disk, "size=16k", Merge(Path.Combine(disk, "nested", "out")));
        int status = alloy.WaitForExit();
        Assert.NotEqual(99, status); // the tmpfs was mounted
        Assert.Equal(ExitCodes.InputError, status);
        var error = Assert.Single(alloy.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: ", error);
        Assert.Matches("(?i)disk was full|no space left on device", error);
        Assert.EndsWith("left: \n", alloy.Stdout);
    }

    [Fact]
    public void A_read_only_parent_fails_in_one_line()
    {
        string disk = _work["read-only"];
        using var alloy = InTmpfs(disk, "ro,size=64k", Merge(Path.Combine(disk, "out")));
        int status = alloy.WaitForExit();
        Assert.NotEqual(99, status);
        Assert.Equal(ExitCodes.InputError, status);
        var error = Assert.Single(alloy.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: ", error);
        Assert.Contains("Read-only file system", error);
    }

    /// <summary>Every file of a folder, by relative path, with its bytes.</summary>
    private static SortedDictionary<string, string> Files(string folder) =>
        new(
            Directory
                .EnumerateFiles(folder, "*", SearchOption.AllDirectories)
                .ToDictionary(
                    f => Path.GetRelativePath(folder, f),
                    f => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f)))
                ),
            StringComparer.Ordinal
        );
}
