using System.Numerics.Tensors;
using Alloy.Runtime.Compute;

namespace Alloy.Runtime.Training;

/// <summary>Token-level cross-entropy of logits against target ids, and its gradient.</summary>
public static class CrossEntropy
{
    /// <summary>
    /// Replaces each row of <paramref name="logits"/> by <paramref name="gradientScale"/> · ∂(−log
    /// softmax(row)[target])/∂row = scale · (softmax(row) − onehot(target)) and returns Σ −log softmax(row)[target]
    /// over the rows. Sums over the vocabulary and over rows are in double; rows run in parallel and are added in
    /// order.
    /// </summary>
    public static double LossAndGradient(
        ComputeContext context,
        Matrix logits,
        ReadOnlySpan<int> targets,
        float gradientScale
    )
    {
        if (targets.Length != logits.Rows)
            throw new ArgumentException($"{targets.Length} targets for {logits.Rows} rows of logits");
        var targetArray = targets.ToArray();
        return context.Sum(logits.Rows, r =>
        {
            var row = logits.Row(r);
            int target = targetArray[r];
            if ((uint)target >= (uint)row.Length)
                throw new ArgumentOutOfRangeException(nameof(targets), $"target {target} is outside the vocabulary");
            float logit = row[target];
            double sum = VectorMath.ShiftedExp(row, row, out float max); // the row now holds exp(z − max)
            float scale = (float)(gradientScale / sum);
            TensorPrimitives.Multiply(row, scale, row);
            row[target] -= gradientScale;
            return Math.Log(sum) - (logit - max); // −log p(target) = log Σ exp(z − max) − (z_target − max)
        });
    }
}
