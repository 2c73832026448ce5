using System.Diagnostics;
using System.Reflection;
using Alloy.Execution;
using Alloy.Planning;
using Alloy.Recipes;

namespace Alloy;

public sealed record MergeOptions
{
    /// <summary>Bytes per output shard (mergekit's --out-shard-size, default 5B); ≤ 0 writes one file.</summary>
    public long OutShardSize { get; init; } = 5_000_000_000;
    public ulong Seed { get; init; } = PlanOptions.DefaultSeed;
    public bool AllowCrimes { get; init; }
    public bool CopyTokenizer { get; init; } = true;
    public bool WriteModelCard { get; init; } = true;
    public bool Overwrite { get; init; }
    public ExecutionOptions Execution { get; init; } = new();

    /// <summary>
    /// Model references resolved by name before any path lookup (alloy multi: a stage's name → its output folder).
    /// </summary>
    public IReadOnlyDictionary<string, string> NamedModels { get; init; } = new Dictionary<string, string>();

    /// <summary>
    /// The Hugging Face hub cache folder model ids are looked up in (mergekit's <c>--transformers-cache</c>); null: the
    /// standard one (<see cref="Checkpoints.ModelLocator.HuggingFaceCacheDirectory"/>).
    /// </summary>
    public string? HubCache { get; init; }

    /// <summary>
    /// Set for a raw state-dict merge (mergekit-pytorch): tensors by name, no architecture, no config.json.
    /// </summary>
    public RawTensorPolicy? RawTensors { get; init; }

    /// <summary>
    /// Computes the statistics data-aware methods read (Fisher, Gram matrices) from a recipe's <c>data:</c>;
    /// Alloy.Runtime's cache. Null refuses <c>data:</c> (statistics files still work).
    /// </summary>
    public Methods.IStatisticsProvider? Statistics { get; init; }

    /// <summary>
    /// Learns what data-aware methods need before they merge (AdaMerging's coefficients, RegMean++'s Gram matrices);
    /// Alloy.Runtime's. Null refuses such a recipe unless it names what was learnt (<c>lambdas:</c>, <c>gram:</c>).
    /// </summary>
    public Methods.DataAware.IMergeLearner? Learner { get; init; }
}

public sealed record MergeResult(
    string OutputPath,
    int Tensors,
    int Shards,
    long InputBytes,
    long OutputBytes,
    TimeSpan Elapsed
);

/// <summary>The library's front door: recipe in, finished Hugging Face model folder out.</summary>
public static class Merger
{
    public static string Version { get; } =
        typeof(Merger)
            .Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()
            ?.InformationalVersion.Split('+')[0]
        ?? "0.0.0";

    /// <summary>
    /// Merges <paramref name="recipe"/> into a new Hugging Face model folder at <paramref name="outputPath"/>.
    /// </summary>
    public static MergeResult Run(
        MergeRecipe recipe,
        string outputPath,
        MergeOptions options,
        Diagnostics diagnostics,
        Action<MergeProgress>? progress = null,
        CancellationToken cancellation = default
    )
    {
        var clock = Stopwatch.StartNew();
        using var session = MergeSession.Open(recipe, options, diagnostics, cancellation);
        return session.WriteFolder(outputPath, progress, cancellation) with { Elapsed = clock.Elapsed };
    }
}
