using System.Diagnostics;
using System.Text.Json.Nodes;
using Alloy.Checkpoints;
using Alloy.Recipes;
using Alloy.Runtime.Models;
using Alloy.Tensors;

namespace Alloy.Bench.Quality;

/// <summary>
/// A method's result on some experts: the coefficients chosen on validation, validation and test accuracy per task of
/// the subset (NaN elsewhere), the grid size and the time it took (merges and evaluations).
/// </summary>
/// <remarks><see cref="AtEdge"/>: the chosen point's parameters at the smallest or largest value the grid
/// tries.</remarks>
public sealed record MethodResult(
    string Method,
    string Family,
    string Source,
    string Chosen,
    double[] Validation,
    double[] Test,
    int Points,
    double Seconds,
    IReadOnlyList<string> AtEdge
)
{
    /// <summary>The chosen point, marked when a parameter sits at the grid's edge.</summary>
    public string ChosenShown => AtEdge.Count == 0 ? Chosen : $"{Chosen} (grid edge: {string.Join(", ", AtEdge)})";
}

/// <summary>
/// Runs a method's grid on a subset of the experts: one <see cref="MergeSession"/> (models opened and planned once),
/// each grid point re-merged into the same model in memory and scored on the subset's validation items; the best mean
/// validation accuracy wins (the first on ties), and is scored on the test items. The time includes what a
/// data-aware method computes first (statistics, learnt coefficients), with <paramref name="options"/>' runtime parts.
/// </summary>
public sealed class Search(ExpertSet experts, Scorer scorer, MergeOptions? options = null)
{
    public MethodResult Run(MethodGrid grid, IReadOnlyList<int> subset)
    {
        var clock = Stopwatch.StartNew();
        var models = subset.Select(i => experts.Experts[i]).ToList();
        using var session = MergeSession.Open(grid.Recipe(experts.Base, models, grid.Points[0]), options);
        LlamaModel? model = null;
        var best = (Point: grid.Points[0], Mean: double.NegativeInfinity, Scores: Array.Empty<double>());
        foreach (var point in grid.Points)
        {
            model = Merge(session, model, grid.Recipe(experts.Base, models, point));
            var scores = scorer.Score(model, test: false, subset);
            double mean = subset.Average(t => scores[t]);
            if (mean > best.Mean)
                best = (point, mean, scores);
        }
        model = Merge(session, model, grid.Recipe(experts.Base, models, best.Point));
        var test = scorer.Score(model, test: true, subset);
        return new MethodResult(
            grid.Name,
            grid.Family,
            grid.Source,
            best.Point.Label,
            best.Scores,
            test,
            grid.Points.Count,
            clock.Elapsed.TotalSeconds,
            grid.AtEdge(best.Point)
        );
    }

    /// <summary>Test accuracy at every point of a grid (for sweeps).</summary>
    public IReadOnlyList<(GridPoint Point, double[] Test)> Curve(MethodGrid grid, IReadOnlyList<int> subset)
    {
        var models = subset.Select(i => experts.Experts[i]).ToList();
        using var session = MergeSession.Open(grid.Recipe(experts.Base, models, grid.Points[0]));
        LlamaModel? model = null;
        var curve = new List<(GridPoint, double[])>();
        foreach (var point in grid.Points)
        {
            model = Merge(session, model, grid.Recipe(experts.Base, models, point));
            curve.Add((point, scorer.Score(model, test: true, subset)));
        }
        return curve;
    }

    /// <summary>
    /// The session's merge with <paramref name="recipe"/>'s values, into <paramref name="model"/> (made on the first
    /// call).
    /// </summary>
    private static LlamaModel Merge(MergeSession session, LlamaModel? model, MergeRecipe recipe)
    {
        if (model is null)
        {
            session.Reparameterize(recipe);
            return MergedModel.Create(session);
        }
        session.Reparameterize(recipe);
        MergedModel.Refill(session, model);
        return model;
    }

    /// <summary>
    /// EMR-Merging's task-specific models, the paper's upper line: the unified model with each task's mask and rescaler
    /// (written by <c>emr</c> with <c>write_task_masks</c>), rebuilt per task as W_base + sₜ·Mₜ ⊙ (W_unified − W_base)
    /// and scored on that task's test items.
    /// </summary>
    public double[] EmrTaskModels(IReadOnlyList<int> subset, string scratch)
    {
        var models = subset.Select(i => experts.Experts[i]).ToList();
        var builder = new RecipeBuilder("emr")
            .BaseModel(experts.Base)
            .Parameter("write_task_masks", true)
            .DType(DType.F32);
        foreach (var m in models)
            builder.Model(m);
        string folder = Path.Combine(scratch, "emr-unified");
        if (Directory.Exists(folder))
            Directory.Delete(folder, recursive: true);
        Merger.Run(builder.Build(), folder, new MergeOptions { WriteModelCard = false }, new Diagnostics());
        var unified = LlamaModel.Load(folder);
        var baseModel = LlamaModel.Load(experts.Base);
        var rescalers = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "emr", "rescalers.json")))![
            "tasks"
        ]!.AsArray();
        var scores = new double[experts.Tasks.Count];
        Array.Fill(scores, double.NaN);
        for (int k = 0; k < subset.Count; k++)
        {
            var task = rescalers[k]!;
            double rescaler = (double)task["rescaler"]!;
            using var masks = Checkpoint.Open(Path.Combine(folder, "emr", (string)task["masks"]!));
            var rebuilt = new LlamaModel(
                unified.Config,
                new ParameterSet(
                    unified.Parameters.Select(p =>
                    {
                        var b = baseModel.Parameters[p.Name].Data;
                        var mask = masks.Find(p.Name)!.Bytes(0, (int)masks.Find(p.Name)!.Info.ByteLength);
                        int columns = p.Shape[^1],
                            rowBytes = (columns + 7) / 8;
                        var data = new float[p.Data.Length];
                        for (int j = 0; j < data.Length; j++)
                        {
                            int row = j / columns,
                                column = j % columns;
                            bool kept = (mask[row * rowBytes + column / 8] & (0x80 >> (column % 8))) != 0;
                            data[j] = kept ? (float)(b[j] + rescaler * (p.Data[j] - b[j])) : b[j];
                        }
                        return new Parameter(p.Name, p.Shape, data);
                    })
                )
            );
            scores[subset[k]] = scorer.Score(rebuilt, test: true, [subset[k]])[subset[k]];
        }
        Directory.Delete(folder, recursive: true);
        return scores;
    }
}
