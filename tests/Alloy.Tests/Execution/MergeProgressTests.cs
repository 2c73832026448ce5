using Alloy.Execution;
using Alloy.Recipes;
using Alloy.Tests.Support;

namespace Alloy.Tests.Execution;

/// <summary>What a merge reports as it goes: its phases in order, and counts that rise to their totals.</summary>
public sealed class MergeProgressTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public MergeProgressTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    private List<MergeProgress> Merge(string parameters)
    {
        var recipe = RecipeParser.Parse(
            $"""
            merge_method: ties
            base_model: {_models.Base}
            models:
              - model: {_models.FineTunes[0]}
                parameters: {"{"}weight: 1, density: 0.3{"}"}
              - model: {_models.FineTunes[1]}
                parameters: {"{"}weight: 1, density: 0.5{"}"}
            parameters: {parameters}
            """,
            "ties.yml",
            new Diagnostics()
        );
        var reports = new List<MergeProgress>();
        using var session = MergeSession.Open(recipe);
        session.WriteFolder(_work["out"], reports.Add);
        return reports;
    }

    [Fact]
    public void A_model_wide_trim_reports_its_statistics_passes_before_merging()
    {
        var reports = Merge("{model_wide_trim: true}");
        var phases = reports.Select(r => r.Phase).Distinct().ToList();
        Assert.Equal("statistics pass 1/3 (coarse)", phases[0]);
        Assert.Equal("statistics pass 2/3 (fine)", phases[1]);
        Assert.Equal("merging", phases[^1]);
        Assert.True(phases.Count is 3 or 4, string.Join(", ", phases));
        foreach (var phase in reports.GroupBy(r => r.Phase))
        {
            var done = phase.Select(r => r.BytesDone).ToList();
            Assert.Equal(0, done[0]);
            Assert.Equal(done.Order(), done);
            Assert.Equal(phase.First().BytesTotal, done[^1]);
        }
        var last = reports[^1];
        Assert.Equal(last.TensorsTotal, last.TensorsDone);
    }

    [Fact]
    public void A_merge_without_a_pre_pass_reports_merging_from_zero()
    {
        var reports = Merge("{}");
        Assert.All(reports, r => Assert.Equal("merging", r.Phase));
        Assert.Equal((0, 0L), (reports[0].TensorsDone, reports[0].BytesDone));
        Assert.Equal(reports[^1].BytesTotal, reports[^1].BytesDone);
    }
}
