using System.Diagnostics;
using Alloy.Adapters;
using Alloy.Recipes;
using Alloy.Runtime.Models;
using Alloy.Tensors;

namespace Alloy.Bench.Quality;

/// <summary>One setting of an adapter merge: every adapter's weight, and the combination's options.</summary>
public sealed record AdapterPoint(string Label, double Weight, AdapterMergeOptions Options);

/// <summary>An <c>alloy merge-adapters</c> combination type and the settings tried on the validation split.</summary>
public sealed record AdapterGrid(string Name, IReadOnlyList<AdapterPoint> Points, string Source);

/// <summary>
/// Merges of the LoRA experts in the adapters' own space (<c>alloy merge-adapters</c>): each grid point's merged
/// adapter is written to a scratch folder, applied to the base in memory and scored as <see cref="Search"/> scores a
/// merge; the best mean validation accuracy wins and is scored on the test items.
/// </summary>
public sealed class AdapterSearch(ExpertSet experts, Scorer scorer, string scratch)
{
    /// <summary>The base with <paramref name="adapter"/> applied, in float32 (a passthrough merge in memory).</summary>
    public static LlamaModel Applied(string baseModel, string adapter)
    {
        var recipe = new RecipeBuilder("passthrough").Model($"{baseModel}+{adapter}").DType(DType.F32).Build();
        using var session = MergeSession.Open(recipe);
        return MergedModel.Create(session);
    }

    public MethodResult Run(AdapterGrid grid, IReadOnlyList<string> adapters, IReadOnlyList<int> subset)
    {
        var clock = Stopwatch.StartNew();
        string folder = Path.Combine(scratch, "merged-adapter");
        LlamaModel Merge(AdapterPoint point)
        {
            AdapterMerger.Merge([.. adapters.Select(a => (a, point.Weight))], folder, point.Options, overwrite: true);
            return Applied(experts.Base, folder);
        }
        var best = (Point: grid.Points[0], Mean: double.NegativeInfinity, Scores: Array.Empty<double>());
        foreach (var point in grid.Points)
        {
            var scores = scorer.Score(Merge(point), test: false, subset);
            double mean = subset.Average(t => scores[t]);
            if (mean > best.Mean)
                best = (point, mean, scores);
        }
        var test = scorer.Score(Merge(best.Point), test: true, subset);
        int rank = AdapterRank(folder);
        Directory.Delete(folder, recursive: true);
        return new MethodResult(
            grid.Name,
            "adapter",
            grid.Source,
            $"{best.Point.Label} (rank {rank})",
            best.Scores,
            test,
            grid.Points.Count,
            clock.Elapsed.TotalSeconds,
            []
        );
    }

    /// <summary>The merged adapter's r (its largest module rank).</summary>
    private static int AdapterRank(string folder) =>
        System
            .Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "adapter_config.json")))
            .RootElement.GetProperty("r")
            .GetInt32();
}
