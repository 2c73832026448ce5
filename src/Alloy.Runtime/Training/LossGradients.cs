using Alloy.Runtime.Compute;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;

namespace Alloy.Runtime.Training;

/// <summary>
/// A loss of a model's next-token predictions and its gradient with respect to every parameter: the cross-entropy of
/// training examples against their own next tokens, or the entropy of the prediction after each unlabeled prompt
/// (AdaMerging). Only the rows a loss reads get logits (the head, the largest product of a small model, skips the
/// rest), and the forward and backward buffers are kept between calls. One caller at a time.
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
    public (double LossSum, int Targets) Accumulate(IReadOnlyList<TrainingExample> examples, double lossScale) =>
        CrossEntropyOf(examples, lossScale);

    /// <summary>
    /// As <see cref="Accumulate"/>, but each target is drawn from the model's own prediction at its row instead of
    /// read from the example (the labels of the sampled, "true" Fisher): the draw for target row r of this call uses
    /// <c>random.Uniform(firstDraw + r)</c>.
    /// </summary>
    public (double LossSum, int Targets) AccumulateSampled(
        IReadOnlyList<TrainingExample> examples,
        double lossScale,
        Alloy.Tensors.RandomStream random,
        long firstDraw
    )
    {
        var (batch, selection, targets) = Prepare(examples);
        double loss = Run(
            batch,
            selection,
            targets.Length,
            (context, logits, s) =>
            {
                for (int r = 0; r < targets.Length; r++)
                    targets[r] = Sample(logits.Row(r), random.Uniform(firstDraw + r));
                return CrossEntropy.LossAndGradient(context, logits, targets, s);
            },
            lossScale
        );
        return (loss, targets.Length);
    }

    /// <summary>The token whose softmax probability interval holds <paramref name="u"/> ∈ [0, 1).</summary>
    private static int Sample(ReadOnlySpan<float> logits, float u)
    {
        float max = System.Numerics.Tensors.TensorPrimitives.Max(logits);
        double total = 0;
        foreach (float z in logits)
            total += Math.Exp(z - max);
        double target = u * total,
            running = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            running += Math.Exp(logits[i] - max);
            if (running > target)
                return i;
        }
        return logits.Length - 1;
    }

    /// <summary>The sum of the token losses and the number of targets, without gradients.</summary>
    public (double LossSum, int Targets) Loss(IReadOnlyList<TrainingExample> examples) =>
        CrossEntropyOf(examples, null);

    /// <summary>
    /// Runs the prompts as one packed batch and adds ∂(<paramref name="lossScale"/> · Σ H)/∂θ to
    /// <see cref="Gradients"/>, H being the entropy of the next-token distribution after a prompt's last token.
    /// Returns Σ H (natural log).
    /// </summary>
    public double AccumulateEntropy(IReadOnlyList<int[]> prompts, double lossScale) => EntropyOf(prompts, lossScale);

    /// <summary>Σ H over the prompts as <see cref="AccumulateEntropy"/> computes it, without gradients.</summary>
    public double Entropy(IReadOnlyList<int[]> prompts) => EntropyOf(prompts, null);

    private (double LossSum, int Targets) CrossEntropyOf(IReadOnlyList<TrainingExample> examples, double? scale)
    {
        var (batch, selection, targets) = Prepare(examples);
        double loss = Run(
            batch,
            selection,
            targets.Length,
            (context, logits, s) => CrossEntropy.LossAndGradient(context, logits, targets, s),
            scale
        );
        return (loss, targets.Length);
    }

    private double EntropyOf(IReadOnlyList<int[]> prompts, double? scale)
    {
        int empty = prompts.ToList().FindIndex(p => p.Length == 0);
        if (empty >= 0)
            throw new AlloyException($"prompt {empty + 1} of the batch is empty; an entropy needs a token to follow");
        var batch = TokenBatch.FromSequences(prompts.Select(p => (IReadOnlyList<int>)p));
        return Run(batch, LogitSelection.Last, prompts.Count, Training.Entropy.LossAndGradient, scale);
    }

    /// <summary>
    /// A loss of the selected rows' logits that replaces them by the gradient of scale · loss (the scale is 0 when no
    /// gradient is wanted, so the loss code is the same either way).
    /// </summary>
    private delegate double RowLoss(ComputeContext context, Matrix logits, float gradientScale);

    /// <summary>
    /// The forward pass, the loss, and, when <paramref name="gradientScale"/> is given, the backward pass that adds
    /// into <see cref="Gradients"/>: the part every loss shares. With no rows nothing is run.
    /// </summary>
    private double Run(TokenBatch batch, LogitSelection selection, int rows, RowLoss loss, double? gradientScale)
    {
        if (rows == 0)
            return 0;
        var logits = Model.Forward(batch, _forward, selection);
        if (logits.Count != rows)
            throw new InvalidOperationException("the selected rows do not match the loss's rows");
        double value = loss(Model.Compute, _forward.LogitValues, (float)(gradientScale ?? 0));
        if (gradientScale is not null)
            Model.Backward(batch, _forward, _backward, Gradients);
        return value;
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
