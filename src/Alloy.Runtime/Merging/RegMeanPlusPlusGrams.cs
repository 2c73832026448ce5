using System.Globalization;
using System.Text.RegularExpressions;
using Alloy.Checkpoints;
using Alloy.Methods.DataAware;
using Alloy.Planning;
using Alloy.Recipes;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Merging;

/// <summary>
/// RegMean++'s Gram matrices (FusionBench's <c>regmean_plusplus</c>): block by block, each model's data runs through
/// the blocks already merged (and the merged embedding) and then the model's own block ℓ, whose linear layers' input
/// Grams are gathered; block ℓ is then merged by RegMean's solve (<see cref="RegMeanSolve"/>), with the other tensors
/// averaged, before block ℓ + 1 is gathered. An untied head is last, after every merged block and the merged final
/// norm. The Grams are written per model as statistics files (raw sums and token counts, as <c>alloy regmean</c>
/// writes them) into the cache, keyed by every model's identity and data and the settings, and the merge reads them
/// as RegMean does, so its blocks are the ones gathered here up to the output dtype's rounding.
/// </summary>
public static partial class RegMeanPlusPlusGrams
{
    private const string FormatVersion = "alloy-regmean++-1";

    /// <summary>The statistics files of <paramref name="recipe"/>'s models, in its order, computed or cached.</summary>
    public static IReadOnlyList<string> Gather(
        MergeRecipe recipe,
        ModelSet models,
        string folder,
        RuntimeOptions? options = null,
        Action<string>? report = null,
        CancellationToken cancellation = default
    )
    {
        options ??= RuntimeOptions.Default;
        var entries = recipe.Models
            ?? throw new AlloyException($"{recipe.MethodLocation}: regmean_plusplus needs models:, not slices:");
        double alpha = Scalar(recipe.Parameters, RegMean.Alpha.Name) ?? RegMean.Alpha.Default!.Value;
        int samples = (int)(Scalar(recipe.Parameters, RegMean.Samples.Name) ?? RegMean.Samples.Default!.Value);
        var inputs = entries
            .Select(entry =>
            {
                var model = models[entry.Model];
                string data = Text(entry.Parameters, RegMean.Data.Name)
                    ?? Text(recipe.Parameters, RegMean.Data.Name)
                    ?? throw new AlloyException(
                        $"{entry.Location}: regmean_plusplus needs data: for every model (model '{entry.Model}' has "
                            + "none)"
                    );
                data = recipe.Locate(data);
                if (!File.Exists(data))
                    throw new AlloyException($"model '{entry.Model}': data file '{data}' does not exist");
                if (model.Adapter is not null || !Directory.Exists(model.Location))
                    throw new AlloyException(
                        $"model '{entry.Model}': regmean_plusplus runs the model, so it must be a model folder"
                    );
                double weight = Scalar(entry.Parameters, RegMean.Weight.Name)
                    ?? Scalar(recipe.Parameters, RegMean.Weight.Name)
                    ?? RegMean.Weight.Default!.Value;
                return (Entry: entry, model.Location, Data: data, Weight: weight);
            })
            .ToList();

        var key = new System.Text.StringBuilder(FormatVersion);
        key.Append(CultureInfo.InvariantCulture, $"\nalpha={alpha} samples={samples} ");
        key.Append(
            CultureInfo.InvariantCulture,
            $"seq={StatisticsCache.SequenceLength} batch={StatisticsCache.GramBatchSize}\n"
        );
        foreach (var input in inputs)
            key.Append(CultureInfo.InvariantCulture, $"weight={input.Weight}\n")
                .Append(StatisticsCache.Identity(input.Location, input.Data));
        string stem = StatisticsCache.Hash(key.ToString());
        var paths = inputs.Select((_, t) => Path.Combine(Path.GetFullPath(folder), $"{stem}-{t}.safetensors")).ToList();
        if (paths.All(File.Exists))
            report?.Invoke($"using the cached RegMean++ Gram matrices ({Path.GetDirectoryName(paths[0])}/{stem}-*)");
        else
        {
            report?.Invoke($"computing RegMean++ Gram matrices of {inputs.Count} models, block by block");
            var loaded = inputs.Select(i => StatisticsCache.Load(i.Location, i.Data, samples, options)).ToList();
            var statistics = Compute(
                [.. loaded.Select(l => l.Model)],
                [.. loaded.Select(l => l.Examples)],
                [.. inputs.Select(i => i.Weight)],
                alpha,
                options,
                cancellation
            );
            for (int t = 0; t < inputs.Count; t++)
                statistics[t].Save(paths[t]);
        }
        return paths;
    }

    /// <summary>
    /// Each model's Gram matrices (raw sums over its examples' tokens), block ℓ's taken behind the blocks merged before
    /// it. <paramref name="models"/>' parameters are not changed.
    /// </summary>
    public static IReadOnlyList<ParameterStatistics> Compute(
        IReadOnlyList<LlamaModel> models,
        IReadOnlyList<IReadOnlyList<TrainingExample>> examples,
        IReadOnlyList<double> weights,
        double alpha,
        RuntimeOptions options,
        CancellationToken cancellation = default
    )
    {
        var config = models[0].Config;
        double total = weights.Sum();
        // The merged model so far: every tensor starts as the weighted average (RegMean's rule for the tensors that
        // are not linear weights); each block's linear weights are replaced by the solve once its Grams are known.
        var merged = new ParameterSet(
            models[0]
                .Parameters.Select(p =>
                {
                    var data = new float[p.Data.Length];
                    for (int t = 0; t < models.Count; t++)
                    {
                        var source = models[t].Parameters[p.Name].Data;
                        float w = (float)(weights[t] / total);
                        for (int j = 0; j < data.Length; j++)
                            data[j] += w * source[j];
                    }
                    return new Parameter(p.Name, p.Shape, data);
                })
        );
        var grams = models.Select(_ => new List<StatisticTensor>()).ToList();
        var counts = new long[models.Count];
        int stages = config.Layers + (config.TieWordEmbeddings ? 0 : 1);
        for (int stage = 0; stage < stages; stage++)
        {
            var block = new List<ParameterStatistics>();
            for (int t = 0; t < models.Count; t++)
            {
                cancellation.ThrowIfCancellationRequested();
                var hybrid = new LlamaModel(
                    config,
                    new ParameterSet(
                        models[t].Parameters.Select(p => Behind(p.Name, stage, config.Layers) ? merged[p.Name] : p)
                    ),
                    options
                );
                var gathered = ParameterStatistics.Grams(
                    hybrid,
                    examples[t],
                    StatisticsCache.GramBatchSize,
                    cancellation: cancellation,
                    layers: new HashSet<int> { stage }
                );
                block.Add(gathered);
                grams[t].AddRange(gathered.Tensors);
                counts[t] = gathered.Count;
            }
            foreach (var tensor in block[0].Tensors)
            {
                var target = merged[tensor.Name];
                using var solve = new RegMeanSolve(target.Rows, target.Columns, alpha);
                for (int t = 0; t < models.Count; t++)
                    solve.Add(
                        models[t].Parameters[tensor.Name].Data,
                        block[t].Tensors.Single(g => g.Name == tensor.Name).Values,
                        weights[t] / counts[t]
                    );
                solve.Solve(target.Data);
            }
        }
        var order = models[0].Parameters.Select((p, i) => (p.Name, i)).ToDictionary(x => x.Name, x => x.i);
        return
        [
            .. grams.Select(
                (g, t) =>
                    new ParameterStatistics(StatisticsFile.RegMeanGram, counts[t], [.. g.OrderBy(x => order[x.Name])])
            ),
        ];
    }

    /// <summary>
    /// True when parameter <paramref name="name"/> comes before stage <paramref name="stage"/> (a block index, or the
    /// head after the last block): the embedding, the blocks before it, and the final norm for the head.
    /// </summary>
    private static bool Behind(string name, int stage, int layers)
    {
        if (name == "model.embed_tokens.weight")
            return true;
        if (name == "model.norm.weight")
            return stage == layers;
        var match = BlockIndex().Match(name);
        return match.Success && int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) < stage;
    }

    [GeneratedRegex(@"^model\.layers\.(\d+)\.")]
    private static partial Regex BlockIndex();

    private static double? Scalar(ParameterSettings settings, string name) =>
        !settings.TryGet(name, out var setting) ? null
        : setting.Value is ParameterValue.Scalar s ? s.Value
        : throw new AlloyException(
            $"{setting.Location}: regmean_plusplus takes one number for '{name}' (no gradient or filter)"
        );

    private static string? Text(ParameterSettings settings, string name) =>
        settings.TryGet(name, out var setting) && setting.Value is ParameterValue.Text t ? t.Value : null;
}
