namespace Alloy.Runtime.Training;

/// <summary>Hyper-parameters of <see cref="Trainer"/>. Defaults are common choices for small models.</summary>
public sealed record TrainingOptions
{
    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 100;

    /// <summary>Examples per optimizer step.</summary>
    public int BatchSize { get; init; } = 8;

    /// <summary>
    /// Examples per forward/backward pass (gradient accumulation): a batch runs as ⌈BatchSize / MicroBatchSize⌉ passes
    /// whose gradients add up before the step, with the same result as one pass up to float rounding. Null: the whole
    /// batch.
    /// </summary>
    public int? MicroBatchSize { get; init; }

    /// <summary>Peak learning rate, reached after the warmup.</summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>Where the cosine decay ends at the last step.</summary>
    public double MinLearningRate { get; init; }

    /// <summary>Steps of linear warmup from LearningRate / WarmupSteps to LearningRate.</summary>
    public int WarmupSteps { get; init; }

    /// <summary>
    /// AdamW's decoupled weight decay (θ ← θ − lr·λ·θ), applied to matrices only unless
    /// <see cref="DecayNormsAndBiases"/>.
    /// </summary>
    public double WeightDecay { get; init; } = 0.01;

    /// <summary>Also decay 1-D parameters (norm weights and biases); off by default, as is common practice.</summary>
    public bool DecayNormsAndBiases { get; init; }

    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double Epsilon { get; init; } = 1e-8;

    /// <summary>Gradients are scaled down so their global L2 norm is at most this; null or ≤ 0: no clipping.</summary>
    public double? ClipNorm { get; init; } = 1.0;

    /// <summary>Seed of the data order (a new permutation of the examples every epoch).</summary>
    public ulong Seed { get; init; }

    /// <summary>
    /// Train only the parameters these patterns select (<see cref="ParameterSelection"/>; "router" for a mixture's
    /// routers); the rest stay bit for bit as they were. Null: every parameter.
    /// </summary>
    public IReadOnlyList<string>? Only { get; init; }

    /// <summary>Checks the values; a bad one is an <see cref="AlloyException"/> naming it.</summary>
    public void Validate()
    {
        static void Require(bool ok, string message)
        {
            if (!ok)
                throw new AlloyException(message);
        }
        Require(Steps >= 1, $"steps must be at least 1 (got {Steps})");
        Require(BatchSize >= 1, $"batch size must be at least 1 (got {BatchSize})");
        Require(MicroBatchSize is null or >= 1, $"micro-batch size must be at least 1 (got {MicroBatchSize})");
        Require(
            LearningRate > 0 && double.IsFinite(LearningRate),
            $"learning rate must be positive (got {LearningRate})"
        );
        Require(
            MinLearningRate >= 0 && MinLearningRate <= LearningRate,
            $"minimum learning rate must be between 0 and the learning rate (got {MinLearningRate})"
        );
        Require(WarmupSteps >= 0, $"warmup steps must be 0 or more (got {WarmupSteps})");
        Require(
            WeightDecay >= 0 && double.IsFinite(WeightDecay),
            $"weight decay must be 0 or more (got {WeightDecay})"
        );
        Require(Beta1 is >= 0 and < 1 && Beta2 is >= 0 and < 1, $"Adam betas must be in [0, 1) (got {Beta1}, {Beta2})");
        Require(Epsilon > 0, $"Adam epsilon must be positive (got {Epsilon})");
    }
}
