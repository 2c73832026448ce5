using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;

namespace Alloy.Runtime.Training;

/// <summary>
/// Next-token cross-entropy of a model on training examples and its gradient with respect to every parameter. Only
/// the rows that predict a target get logits (the head, the largest product of a small model, skips the rest), and
/// the forward and backward buffers are kept between calls. One caller at a time.
/// </summary>
public sealed class LossGradients
{
    private readonly ForwardState _forward;
    private readonly BackwardState _backward;

    public LossGradients(LlamaModel model)
    {
        Model = model;
        _forward = model.CreateState(keepActivations: true);
        _backward = model.CreateBackwardState();
        Gradients = new GradientSet(model.Parameters);
    }

    public LlamaModel Model { get; }

    /// <summary>The accumulated gradients (cleared by the caller between optimizer steps).</summary>
    public GradientSet Gradients { get; }

    /// <summary>
    /// The forward state of the last call: every block's activations for the examples (RegMean reads them).
    /// </summary>
    public ForwardState State => _forward;

    /// <summary>
    /// Runs the examples as one packed batch and adds ∂(<paramref name="lossScale"/> · Σ token losses)/∂θ to
    /// <see cref="Gradients"/>. Returns the sum of the token losses (natural log) and the number of targets; with no
    /// targets nothing is run.
    /// </summary>
    public (double LossSum, int Targets) Accumulate(IReadOnlyList<TrainingExample> examples, double lossScale)
    {
        var (batch, selection, targets) = Prepare(examples);
        if (targets.Length == 0)
            return (0, 0);
        var logits = Model.Forward(batch, _forward, selection);
        if (logits.Count != targets.Length)
            throw new InvalidOperationException("the selected rows do not match the targets");
        double loss = CrossEntropy.LossAndGradient(Model.Compute, _forward.LogitValues, targets, (float)lossScale);
        Model.Backward(batch, _forward, _backward, Gradients);
        return (loss, targets.Length);
    }

    /// <summary>The sum of the token losses and the number of targets, without gradients.</summary>
    public (double LossSum, int Targets) Loss(IReadOnlyList<TrainingExample> examples)
    {
        var (batch, selection, targets) = Prepare(examples);
        if (targets.Length == 0)
            return (0, 0);
        Model.Forward(batch, _forward, selection);
        return (CrossEntropy.LossAndGradient(Model.Compute, _forward.LogitValues, targets, 0f), targets.Length);
    }

    /// <summary>The packed batch, the rows that predict a target (ascending) and their targets in that order.</summary>
    private static (TokenBatch Batch, LogitSelection Selection, int[] Targets) Prepare(
        IReadOnlyList<TrainingExample> examples
    )
    {
        var batch = TokenBatch.FromSequences(examples.Select(e => (IReadOnlyList<int>)e.Tokens));
        var indices = new IReadOnlyList<int>[examples.Count];
        var targets = new int[examples.Sum(e => e.TargetCount)];
        int next = 0;
        for (int s = 0; s < examples.Count; s++)
        {
            var e = examples[s];
            indices[s] = Enumerable.Range(e.FirstTarget - 1, e.TargetCount).ToArray();
            for (int i = e.FirstTarget; i < e.Tokens.Length; i++)
                targets[next++] = e.Tokens[i];
        }
        return (batch, LogitSelection.At(indices), targets);
    }
}
