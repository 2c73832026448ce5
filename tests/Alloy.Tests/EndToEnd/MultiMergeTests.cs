using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// alloy multi (mergekit-multi): stages by name, dependency order, skipping finished stages, cycles refused.
/// </summary>
public sealed class MultiMergeTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public MultiMergeTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    /// <summary>The final merge is listed first, so dependency order must differ from document order.</summary>
    private string ThreeStages(double editWeight = 0.5) =>
        _work.Write(
            "multi.yml",
            $$"""
            merge_method: linear
            models:
              - model: edited
                parameters: {weight: 1}
              - model: {{_models.FineTunes[2]}}
                parameters: {weight: 1}
            ---
            name: edited
            merge_method: task_arithmetic
            base_model: {{_models.Base}}
            models:
              - model: soup
                parameters: {weight: {{editWeight}}}
            ---
            name: soup
            merge_method: linear
            models:
              - model: {{_models.FineTunes[0]}}
                parameters: {weight: 1}
              - model: {{_models.FineTunes[1]}}
                parameters: {weight: 1}
            """
        );

    private CliResult Multi(string config, params string[] extra) =>
        AlloyCli.Run(["multi", config, "--intermediate-dir", _work["stages"], "--out-path", _work["final"], .. extra]);

    [Fact]
    public void Three_stages_run_in_dependency_order_and_compose()
    {
        var result = Multi(ThreeStages());
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.True(
            result.Stdout.IndexOf("merging soup", StringComparison.Ordinal)
                < result.Stdout.IndexOf("merging edited", StringComparison.Ordinal)
        );
        Assert.True(Directory.Exists(_work["stages/soup"]) && Directory.Exists(_work["stages/edited"]));

        var b = TestCheckpoints.ReadAll(_models.Base);
        var x = _models.FineTunes.Select(TestCheckpoints.ReadAll).ToList();
        foreach (var (name, actual) in TestCheckpoints.ReadAll(_work["final"]))
        {
            var expected = Enumerable
                .Range(0, actual.Length)
                .Select(j =>
                {
                    double soup = (x[0][name][j] + (double)x[1][name][j]) / 2;
                    double edited = b[name][j] + 0.5 * (soup - b[name][j]);
                    return (edited + x[2][name][j]) / 2;
                })
                .ToArray();
            Expect.Close(name, expected, actual, DType.F32, 1);
        }
    }

    [Fact]
    public void A_second_run_skips_finished_stages_and_an_edited_stage_runs_again()
    {
        var config = ThreeStages();
        Assert.Equal(0, Multi(config).ExitCode);
        var soupWritten = File.GetLastWriteTimeUtc(_work["stages/soup/model.safetensors"]);

        var again = Multi(config, "--overwrite");
        Assert.Equal(0, again.ExitCode);
        Assert.Contains("soup: up to date, skipped", again.Stdout);
        Assert.Contains("edited: up to date, skipped", again.Stdout);
        Assert.Equal(soupWritten, File.GetLastWriteTimeUtc(_work["stages/soup/model.safetensors"]));

        var edited = Multi(ThreeStages(editWeight: 0.25), "--overwrite");
        Assert.Equal(0, edited.ExitCode);
        Assert.Contains("soup: up to date, skipped", edited.Stdout);
        Assert.Contains("merging edited", edited.Stdout);
        Assert.Contains("merging (final merge)", edited.Stdout);

        var forced = Multi(config, "--overwrite", "--no-lazy");
        Assert.Contains("merging soup", forced.Stdout);
    }

    [Fact]
    public void Cycles_are_refused()
    {
        var config = _work.Write(
            "cycle.yml",
            $$"""
            name: a
            merge_method: linear
            models:
              - model: b
                parameters: {weight: 1}
            ---
            name: b
            merge_method: linear
            models:
              - model: a
                parameters: {weight: 1}
            """
        );
        var result = AlloyCli.Run("multi", config, "--intermediate-dir", _work["stages"]);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("cycle", result.Stderr);
        Assert.False(Directory.Exists(_work["stages"]));
    }

    [Fact]
    public void An_unnamed_final_merge_needs_out_path()
    {
        var result = AlloyCli.Run("multi", ThreeStages(), "--intermediate-dir", _work["stages"]);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("--out-path", result.Stderr);
        Assert.Single(result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }
}
