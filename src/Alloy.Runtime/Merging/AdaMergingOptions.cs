namespace Alloy.Runtime.Merging;

/// <summary>How many merging coefficients each task vector gets.</summary>
public enum LambdaGranularity
{
    /// <summary>One λ per task: the whole task vector is scaled as one.</summary>
    Task,

    /// <summary>
    /// One λ per task and parameter tensor (the reference code's layer-wise AdaMerging), so a task can contribute its
    /// attention weights but not its embedding, say.
    /// </summary>
    Layer,
}

/// <summary>
/// Hyper-parameters of <see cref="AdaMergingLearner"/>. The defaults are the paper's (Yang et al., ICLR 2024): Adam at
/// 1e-3 for 500 steps on 16 unlabeled prompts per task, every λ starting at 0.3.
/// </summary>
public sealed record AdaMergingOptions
{
    /// <summary>Adam steps.</summary>
    public int Steps { get; init; } = 500;

    /// <summary>
    /// Adam's learning rate (constant; betas 0.9 and 0.999, ε 1e-8, no weight decay: torch's defaults, as the paper).
    /// </summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>Prompts per task per step (all of a task's prompts when it has fewer).</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>
    /// The starting value of every λ: task arithmetic's usual scale, so learning starts from a good merge.
    /// </summary>
    public double Initial { get; init; } = 0.3;

    public LambdaGranularity Granularity { get; init; } = LambdaGranularity.Layer;

    /// <summary>Seed of each task's prompt order.</summary>
    public ulong Seed { get; init; }

    /// <summary>Checks the values; a bad one is an <see cref="AlloyException"/> naming it.</summary>
    public void Validate()
    {
        static void Require(bool ok, string message)
        {
            if (!ok)
                throw new AlloyException(message);
        }
        Require(Steps >= 1, $"AdaMerging steps must be at least 1 (got {Steps})");
        Require(
            LearningRate > 0 && double.IsFinite(LearningRate),
            $"AdaMerging learning rate must be a positive number (got {LearningRate})"
        );
        Require(BatchSize >= 1, $"AdaMerging batch size must be at least 1 (got {BatchSize})");
        // A λ that starts outside [0, 1] is clamped and gets no gradient, so it could never move.
        Require(Initial is >= 0 and <= 1, $"AdaMerging's initial λ must be between 0 and 1 (got {Initial})");
        Require(
            Enum.IsDefined(Granularity),
            $"AdaMerging granularity must be {string.Join(" or ", Enum.GetNames<LambdaGranularity>())} "
                + $"(got {Granularity})"
        );
    }
}
