using Alloy.Runtime.Models;
using Alloy.Tensors;

namespace Alloy.Runtime.Training;

/// <summary>What one optimizer step did.</summary>
/// <param name="Step">1-based.</param>
/// <param name="Loss">Mean token cross-entropy (natural log) of the step's batch, before the update.</param>
/// <param name="Targets">Predicted tokens in the batch.</param>
/// <param name="GradientNorm">Global L2 norm of the gradient before clipping.</param>
/// <param name="LearningRate">The learning rate the step used.</param>
/// <summary>
/// One optimizer step: mean token loss over <see cref="Targets"/> predicted tokens of <see cref="Tokens"/> run.
/// </summary>
public sealed record TrainingStepResult(
    int Step,
    int Epoch,
    double Loss,
    int Targets,
    double GradientNorm,
    double LearningRate,
    int Tokens
);

/// <summary>
/// Trains a model in place (all of it, or the parameters <see cref="TrainingOptions.Only"/> selects), or a LoRA adapter
/// on it (the model frozen): seeded batches of examples, mean token cross-entropy, global-norm clipping, AdamW with
/// linear warmup and cosine decay. Every result is the same at any thread count (see <see cref="LossGradients"/>).
/// </summary>
public sealed class Trainer
{
    private readonly LossGradients _loss;
    private readonly AdamW _optimizer;

    // What the optimizer updates, and its gradients: the model's own, or the adapter's factors.
    private readonly GradientSet _gradients;

    public Trainer(LlamaModel model, TrainingOptions options, TrainableLora? adapter = null)
    {
        options.Validate();
        if (adapter is not null && adapter.Model != model)
            throw new ArgumentException("the adapter belongs to another model", nameof(adapter));
        if (adapter is not null && options.Only is not null)
            throw new AlloyException("--only selects parameters of the model; a LoRA adapter trains its own factors");
        Model = model;
        Options = options;
        Adapter = adapter;
        _loss = new LossGradients(model);
        Trained = adapter?.Parameters
            ?? (options.Only is null ? model.Parameters : ParameterSelection.Select(model.Parameters, options.Only));
        _gradients = adapter is not null ? new GradientSet(adapter.Parameters) : _loss.Gradients.Subset(Trained);
        _optimizer = new AdamW(Trained, options);
    }

    /// <summary>What the optimizer updates: the model's parameters (or those selected), or the adapter's factors.
    /// </summary>
    public ParameterSet Trained { get; }

    public LlamaModel Model { get; }

    /// <summary>The adapter being trained, if the model is frozen.</summary>
    public TrainableLora? Adapter { get; }

    public TrainingOptions Options { get; }

    /// <summary>Steps taken so far.</summary>
    public int StepCount => _optimizer.StepCount;

    /// <summary>One optimizer step on <paramref name="batch"/> (in micro-batches when the options say so).</summary>
    public TrainingStepResult Step(IReadOnlyList<TrainingExample> batch, int epoch = 0)
    {
        var context = Model.Compute;
        int targets = batch.Sum(e => e.TargetCount);
        if (targets == 0)
            throw new AlloyException(
                "a training batch has no tokens to predict (every example is a prompt only, or one token long)"
            );
        _loss.Gradients.Clear(context);
        int micro = Options.MicroBatchSize ?? batch.Count;
        double lossSum = 0;
        for (int start = 0; start < batch.Count; start += micro)
            lossSum += _loss.Accumulate(batch.Skip(start).Take(micro).ToList(), 1.0 / targets).LossSum;
        Adapter?.Backward(_loss.Gradients, _gradients);
        var gradients = _gradients;

        double norm = gradients.GlobalNorm(context);
        if (!double.IsFinite(norm))
            throw new AlloyException(
                $"step {StepCount + 1}: the gradient is not finite (norm {norm}); lower the learning rate or enable "
                    + $"clipping"
            );
        float scale = Options.ClipNorm is double clip && clip > 0 && norm > clip ? (float)(clip / (norm + 1e-6)) : 1f;
        double learningRate = LearningRateSchedule.At(
            StepCount,
            Options.Steps,
            Options.LearningRate,
            Options.MinLearningRate,
            Options.WarmupSteps
        );
        _optimizer.Step(context, gradients, learningRate, scale);
        Adapter?.Apply();
        return new TrainingStepResult(
            StepCount,
            epoch,
            lossSum / targets,
            targets,
            norm,
            learningRate,
            batch.Sum(e => e.Tokens.Length)
        );
    }

    /// <summary>
    /// The mean token loss of <paramref name="examples"/> with the current weights (nothing is trained), run in
    /// micro-batches as training runs them.
    /// </summary>
    public double Loss(IReadOnlyList<TrainingExample> examples, CancellationToken cancellation = default)
    {
        int micro = Options.MicroBatchSize ?? Options.BatchSize;
        double sum = 0;
        long targets = 0;
        for (int start = 0; start < examples.Count; start += micro)
        {
            cancellation.ThrowIfCancellationRequested();
            var (lossSum, count) = _loss.Loss(examples.Skip(start).Take(micro).ToList());
            sum += lossSum;
            targets += count;
        }
        if (targets == 0)
            throw new AlloyException("the validation examples have no tokens to predict");
        return sum / targets;
    }

    /// <summary>
    /// <see cref="TrainingOptions.Steps"/> steps over <paramref name="examples"/> in the order of
    /// <see cref="Batches"/>, reporting each step to <paramref name="progress"/>.
    /// </summary>
    public IReadOnlyList<TrainingStepResult> Run(
        IReadOnlyList<TrainingExample> examples,
        Action<TrainingStepResult>? progress = null,
        CancellationToken cancellation = default
    )
    {
        if (examples.Count == 0)
            throw new AlloyException("there are no training examples");
        var results = new List<TrainingStepResult>(Options.Steps);
        foreach (
            var (epoch, indices) in Batches(examples.Count, Options.BatchSize, Options.Seed)
                .Take(Options.Steps - StepCount)
        )
        {
            cancellation.ThrowIfCancellationRequested();
            var result = Step([.. indices.Select(i => examples[i])], epoch);
            results.Add(result);
            progress?.Invoke(result);
        }
        return results;
    }

    /// <summary>
    /// Steps per pass over <paramref name="examples"/> examples: the last batch of an epoch may be smaller.
    /// </summary>
    public static int StepsPerEpoch(int examples, int batchSize) => (examples + batchSize - 1) / batchSize;

    /// <summary>
    /// The data order, endless: each epoch a seeded permutation of the example indices (Fisher–Yates driven by
    /// <see cref="RandomStream"/> keyed by the seed and the epoch), cut into batches of <paramref name="batchSize"/>.
    /// </summary>
    public static IEnumerable<(int Epoch, int[] Indices)> Batches(int examples, int batchSize, ulong seed)
    {
        for (int epoch = 0; ; epoch++)
        {
            var order = RandomStream.For(seed, "data-order", epoch).Permutation(examples);
            for (int start = 0; start < examples; start += batchSize)
                yield return (epoch, order[start..Math.Min(examples, start + batchSize)]);
        }
    }
}
