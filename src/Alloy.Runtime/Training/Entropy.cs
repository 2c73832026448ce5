using System.Buffers;
using System.Numerics.Tensors;
using Alloy.Runtime.Compute;
using Alloy.Tensors;

namespace Alloy.Runtime.Training;

/// <summary>
/// The Shannon entropy of the softmax of logits, and its gradient: a loss that needs no labels, which AdaMerging
/// minimises on unlabeled prompts (a confident merged model is, empirically, an accurate one).
/// </summary>
public static class Entropy
{
    /// <summary>
    /// Replaces each row z of <paramref name="logits"/> by <paramref name="gradientScale"/> · ∂H/∂z, with
    /// ∂H/∂z_j = −p_j (log p_j + H), and returns Σ H over the rows, H = −Σ_c p_c log p_c (natural log), p = softmax(z).
    /// Sums over the vocabulary and over rows are in double; rows run in parallel and are added in order.
    /// </summary>
    public static double LossAndGradient(ComputeContext context, Matrix logits, float gradientScale) =>
        context.Sum(logits.Rows, r =>
        {
            var row = logits.Row(r);
            var rented = ArrayPool<float>.Shared.Rent(row.Length);
            var exps = rented.AsSpan(0, row.Length);
            double sum = VectorMath.ShiftedExp(row, exps, out float max);
            TensorPrimitives.Subtract(row, max, row); // s = z − max, so log p = s − log Σ exp(s)
            double logSum = Math.Log(sum);
            double entropy = logSum - SpanMath.Dot(exps, row) / sum; // H = log S − Σ p·s
            // −p_j (log p_j + H) = −(exp(s_j) / S) · (s_j − log S + H)
            TensorPrimitives.Add(row, (float)(entropy - logSum), row);
            TensorPrimitives.Multiply(row, exps, row);
            TensorPrimitives.Multiply(row, (float)(-gradientScale / sum), row);
            ArrayPool<float>.Shared.Return(rented);
            return entropy;
        });
}
