using Alloy.Synthetic;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>The bundled examples run as the README says, and the bundled models are what the generator makes.</summary>
public sealed class ExampleTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    public static string RepositoryRoot
    {
        get
        {
            var folder = new DirectoryInfo(AppContext.BaseDirectory);
            while (folder is not null && !File.Exists(Path.Combine(folder.FullName, "Alloy.sln")))
                folder = folder.Parent;
            return folder?.FullName ?? throw new InvalidOperationException("repository root not found");
        }
    }

    public static TheoryData<string> Examples() =>
        [
            .. Directory
                .GetFiles(Path.Combine(RepositoryRoot, "examples"), "*.yml")
                .Select(f => Path.GetFileName(f))
                .Order(),
        ];

    [Theory]
    [MemberData(nameof(Examples))]
    public void Every_example_config_runs_and_writes_a_finite_model(string example)
    {
        AlloyCli.Merge(Path.Combine(RepositoryRoot, "examples", example), _work["out"]);
        var tensors = TestCheckpoints.ReadAll(_work["out"]);
        Assert.NotEmpty(tensors);
        Assert.All(tensors, t =>
            Assert.All(t.Value, v => Assert.True(float.IsFinite(v), $"{t.Key} has a non-finite value"))
        );
        Assert.True(File.Exists(_work["out/config.json"]));
    }

    [Fact]
    public void The_bundled_models_are_what_alloy_synth_generates()
    {
        var result = AlloyCli.Run("synth", _work["models"]);
        Assert.Equal(0, result.ExitCode);
        foreach (var name in new[] { "base", "finetune-1", "finetune-2", "finetune-3" })
            Assert.Equal(
                TestCheckpoints.FolderDigest(Path.Combine(RepositoryRoot, "examples", "models", name)),
                TestCheckpoints.FolderDigest(_work["models/" + name])
            );
    }

    [Fact]
    public void Synth_refuses_bad_sizes_with_one_line()
    {
        var result = AlloyCli.Run("synth", _work["m"], "--hidden", "10", "--heads", "4");
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("multiple of --heads", result.Stderr);
        Assert.False(Directory.Exists(_work["m"]));
    }
}
