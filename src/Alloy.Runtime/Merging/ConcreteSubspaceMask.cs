using System.Globalization;
using Alloy.Checkpoints;
using Alloy.Methods.DataAware;
using Alloy.Recipes.Yaml;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Merging;

/// <summary>
/// Learns a <c>concrete_subspace</c> recipe's mask (<see cref="ConcreteMaskLearner"/>) through its merge session, on
/// S = Σ_t λ_t τ_t of the session's task vectors (<see cref="SessionTaskVectors"/>), and writes it as a statistics
/// file (kind <see cref="StatisticsFile.ConcreteMask"/>, a tensor per parameter) into the cache, keyed by the recipe
/// and every model's identity and prompts, so the same recipe reuses it.
/// </summary>
public static class ConcreteSubspaceMask
{
    private const string FormatVersion = "alloy-concrete-mask-1";

    public static string Learn(
        MergeSession session,
        string folder,
        RuntimeOptions? options = null,
        Action<string>? report = null,
        CancellationToken cancellation = default
    )
    {
        var info = session.Plan.FirstMerged;
        var key = new System.Text.StringBuilder(FormatVersion).Append('\n');
        key.Append(RecipeWriter.Write(session.Recipe with { Text = null })).Append('\n');
        key.Append(CultureInfo.InvariantCulture, $"seed={session.Plan.Options.Seed}\n");
        foreach (var model in session.Models.All)
        {
            key.Append(model.Name).Append('\n');
            if (Directory.Exists(model.Location))
                key.Append(StatisticsCache.Identity(model.Location, null));
        }
        for (int i = 0; i < info.Count; i++)
            if (info[AdaMerging.Data, i] is { } data)
                key.Append(StatisticsCache.Identity(null, data));
        string path = Path.Combine(
            Path.GetFullPath(folder),
            $"{StatisticsCache.Hash(key.ToString())}-mask.safetensors"
        );
        if (File.Exists(path))
        {
            report?.Invoke($"using the cached Concrete mask ({path})");
            return path;
        }

        var setup = SessionTaskVectors.Of(session, options, report, cancellation);
        var combined = new ParameterSet(
            setup.Model.Parameters.Select(p =>
            {
                var sum = new float[p.Data.Length];
                for (int t = 0; t < setup.Vectors.Count; t++)
                {
                    float lambda = (float)info[ConcreteSubspace.Lambda, setup.Inputs[t]];
                    var tau = setup.Vectors[t][p.Name].Data;
                    for (int j = 0; j < sum.Length; j++)
                        sum[j] += lambda * tau[j];
                }
                return new Parameter(p.Name, p.Shape, sum);
            })
        );
        var learning = new ConcreteMaskOptions
        {
            Steps = info[ConcreteSubspace.Steps],
            LearningRate = info[ConcreteSubspace.LearningRate],
            Temperature = info[ConcreteSubspace.Temperature],
            BatchSize = info[AdaMerging.BatchSize],
            Seed = session.Plan.Options.Seed,
        };
        var result = ConcreteMaskLearner.Learn(
            setup.Model,
            setup.Base,
            combined,
            setup.Prompts,
            learning,
            SessionTaskVectors.Progress("concrete mask", learning.Steps, report),
            cancellation
        );
        var statistics = new ParameterStatistics(
            StatisticsFile.ConcreteMask,
            learning.Steps,
            [.. setup.Model.Parameters.Select((p, k) => new StatisticTensor(p.Name, p.Shape, result.Mask[k]))]
        );
        statistics.Save(path);
        return path;
    }
}
