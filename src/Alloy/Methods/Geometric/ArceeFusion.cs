using System.Buffers;
using Alloy.Tensors;

namespace Alloy.Methods.Geometric;

/// <summary>
/// Arcee Fusion: keeps the other model's value where its change from the base is important, else the base. Importance
/// is |Δ| times the KL divergence between the row's softmaxes; the threshold is median + 1.5·IQR of all importances.
/// </summary>
public sealed class ArceeFusion()
    : MergeMethod(
        new(
            "arcee_fusion",
            "Arcee Fusion",
            "Keeps the other model's values where their change from the base is important (|Δ| × the rows' KL "
                + "divergence), else the base."
        )
        {
            Paper =
                "https://www.arcee.ai/blog/meet-mergekit-v0-1-arcee-fusion-expanded-model-support-multi-gpu-acceleration",
            BaseModel = BaseModelUse.Required,
            EmbeddingShapes = EmbeddingShapeRule.CommonSubmatrix,
            Elementwise = false,
        }
    )
{
    public override void Validate(MergeInputsInfo inputs) => InputRules.BaseAndOneOther(inputs, Name);

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        var b = inputs[inputs.BaseIndex];
        if (inputs.Count == 1 || output.Length == 0)
        {
            b.CopyTo(output);
            return;
        }
        var x = inputs[InputRules.Other(inputs)];
        // Rows run along the last dimension; a 1-D tensor is one row.
        int length = inputs.Shape.Length > 0 ? (int)inputs.Shape[^1] : output.Length;
        int rows = output.Length / length;
        double[] divergences = ArrayPool<double>.Shared.Rent(rows);
        float[] scores = ArrayPool<float>.Shared.Rent(output.Length);
        try
        {
            for (int r = 0; r < rows; r++)
                divergences[r] = RowDivergence(x.Slice(r * length, length), b.Slice(r * length, length));
            for (int i = 0; i < output.Length; i++)
                scores[i] = Importance(x[i], b[i], divergences[i / length]);
            float threshold = Threshold(scores.AsSpan(0, output.Length));
            // The scores were reordered by selection; recompute each (the same expression gives the same float).
            for (int i = 0; i < output.Length; i++)
                output[i] = Importance(x[i], b[i], divergences[i / length]) >= threshold ? x[i] : b[i];
        }
        finally
        {
            ArrayPool<double>.Shared.Return(divergences);
            ArrayPool<float>.Shared.Return(scores);
        }
    }

    private static float Importance(float x, float b, double divergence) => (float)(Math.Abs(x - b) * divergence);

    /// <summary>
    /// KL(p‖q) with p = softmax(x) + 1e-8 and q = softmax(b) + 1e-8 (mergekit's smoothing), in double with the row
    /// maximum subtracted so large logits cannot overflow.
    /// </summary>
    private static double RowDivergence(ReadOnlySpan<float> x, ReadOnlySpan<float> b)
    {
        double maxX = double.NegativeInfinity,
            maxB = double.NegativeInfinity;
        for (int i = 0; i < x.Length; i++)
        {
            maxX = Math.Max(maxX, x[i]);
            maxB = Math.Max(maxB, b[i]);
        }
        double sumX = 0,
            sumB = 0;
        for (int i = 0; i < x.Length; i++)
        {
            sumX += Math.Exp(x[i] - maxX);
            sumB += Math.Exp(b[i] - maxB);
        }
        double kl = 0;
        for (int i = 0; i < x.Length; i++)
        {
            double p = Math.Exp(x[i] - maxX) / sumX + 1e-8;
            double q = Math.Exp(b[i] - maxB) / sumB + 1e-8;
            kl += p * Math.Log(p / q);
        }
        return kl;
    }

    /// <summary>
    /// Q(0.5) + 1.5·(Q(0.75) − Q(0.25)) with Q(q) = sorted[⌊q·(n−1)⌋], the exact order statistics of every score
    /// (mergekit samples a million at random above that size). Arithmetic in float32, as mergekit's.
    /// </summary>
    private static float Threshold(Span<float> scores)
    {
        long last = scores.Length - 1;
        int k1 = (int)(last / 4),
            k2 = (int)(last / 2),
            k3 = (int)(3 * last / 4);
        float median = Selection.Select(scores, k2);
        // After selecting the median, smaller order statistics lie before it and larger ones after it.
        float q1 = k1 < k2 ? Selection.Select(scores[..k2], k1) : median;
        float q3 = k3 > k2 ? Selection.Select(scores[(k2 + 1)..], k3 - k2 - 1) : median;
        return median + 1.5f * (q3 - q1);
    }
}
