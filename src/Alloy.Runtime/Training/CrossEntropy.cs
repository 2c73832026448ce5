using Alloy.Runtime.Compute;

namespace Alloy.Runtime.Training;

/// <summary>Token-level cross-entropy of logits against target ids, and its gradient.</summary>
public static class CrossEntropy
{
    /// <summary>
    /// Replaces each row of <paramref name="logits"/> by <paramref name="gradientScale"/> · ∂(−log softmax(row)[target])/∂row
    /// = scale · (softmax(row) − onehot(target)) and returns Σ −log softmax(row)[target] over the rows. Sums over the
    /// vocabulary and over rows are in double; rows run in parallel and are added in order.
    /// </summary>
    public static double LossAndGradient(ComputeContext context, Matrix logits, ReadOnlySpan<int> targets, float gradientScale)
    {
        if (targets.Length != logits.Rows) throw new ArgumentException($"{targets.Length} targets for {logits.Rows} rows of logits");
        var targetArray = targets.ToArray();
        var losses = new double[logits.Rows];
        context.ForBlocks(logits.Rows, 8, (start, end) =>
        {
            for (int r = start; r < end; r++)
            {
                var row = logits.Row(r);
                int target = targetArray[r];
                if ((uint)target >= (uint)row.Length) throw new ArgumentOutOfRangeException(nameof(targets), $"target {target} is outside the vocabulary");
                float max = System.Numerics.Tensors.TensorPrimitives.Max(row);
                float shifted = row[target] - max;
                double sum = 0;
                for (int j = 0; j < row.Length; j++)
                {
                    float e = MathF.Exp(row[j] - max);
                    row[j] = e;
                    sum += e;
                }
                losses[r] = Math.Log(sum) - shifted;   // −log p(target) = log Σ exp(z − max) − (z_target − max)
                float scale = (float)(gradientScale / sum);
                System.Numerics.Tensors.TensorPrimitives.Multiply(row, scale, row);
                row[target] -= gradientScale;
            }
        });
        double total = 0;
        foreach (double loss in losses) total += loss;
        return total;
    }
}
