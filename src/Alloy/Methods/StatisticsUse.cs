namespace Alloy.Methods;

/// <summary>How a method's statistic tensors relate to the tensors they describe.</summary>
public enum StatisticShape
{
    /// <summary>One value per parameter entry (a diagonal Fisher): read chunk by chunk beside the tensor.</summary>
    SameAsTensor,

    /// <summary>
    /// A [in, in] Gram matrix for a linear layer's [out, in] weight, read whole; tensors without one (norms, biases,
    /// embeddings) have none in any model.
    /// </summary>
    InputGram,
}

/// <summary>
/// The statistics a data-aware method reads beside each input model's tensors (Fisher merging's diagonal Fisher,
/// RegMean's Gram matrices, a Concrete subspace's shared mask): of which kind
/// (<see cref="Checkpoints.StatisticsFile"/>), and where they come from — a file named by the
/// <paramref name="File"/> parameter (per model, or one shared by all when global), or computed by Alloy.Runtime (and
/// cached) from the per-model <see cref="Data"/> over the first <see cref="Samples"/> examples. The planner finds each
/// input's statistic, the executor reads it with the input (<see cref="MergeInputs.Statistic"/>), and the method never
/// opens a file.
/// </summary>
public sealed record StatisticsUse(string Kind, StatisticShape Shape, PathParameter File)
{
    /// <summary>
    /// The per-model data the statistics are computed from when no file is named; null when they are never computed
    /// from data here, and a tensor without a file then has no statistics (a mask not yet learnt).
    /// </summary>
    public PathParameter? Data { get; init; }

    /// <summary>With <see cref="Data"/>: how many of its examples to use.</summary>
    public IntegerParameter? Samples { get; init; }

    /// <summary>For a Fisher: which estimate is computed from data ("sampled" or "empirical").</summary>
    public ChoiceParameter? Estimate { get; init; }
}

/// <summary>What to compute: statistics of <see cref="Kind"/> for one model over one data set.</summary>
/// <param name="ModelLocation">The model's folder.</param>
/// <param name="ModelName">The model as the recipe names it, for messages.</param>
/// <param name="Samples">How many of the data's examples to use (the first ones).</param>
/// <param name="Estimate">For a Fisher, "sampled" or "empirical"; else null.</param>
public sealed record StatisticsRequest(
    string Kind,
    string ModelLocation,
    string ModelName,
    string DataPath,
    int Samples,
    string? Estimate
);

/// <summary>
/// Computes statistics files from data (Alloy.Runtime runs the model); given to a merge through
/// <see cref="MergeOptions.Statistics"/>. Without one, a recipe's <c>data:</c> is refused.
/// </summary>
public interface IStatisticsProvider
{
    /// <summary>
    /// The path of a statistics file answering <paramref name="request"/>: computed now, or found where an earlier
    /// merge left it.
    /// </summary>
    string Provide(StatisticsRequest request, CancellationToken cancellation = default);
}

/// <summary>What a method may know of an input model's whole statistics file, besides the tensor it reads.</summary>
public interface IStatisticSummary
{
    /// <summary>The examples (Fisher) or tokens (Gram matrices) they were gathered over.</summary>
    long Count { get; }

    /// <summary>The L2 norm of all the file's tensors together (read once, on first use).</summary>
    double Norm { get; }
}
