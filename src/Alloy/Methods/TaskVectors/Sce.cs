using System.Numerics.Tensors;
using Alloy.Tensors;

namespace Alloy.Methods.TaskVectors;

/// <summary>
/// SCE (Wan et al., <i>FuseChat</i>, arXiv:2408.07990), as mergekit defines it: <b>select</b> the entries where the
/// task vectors vary most across models (top <c>select_topk</c> of the population variance), <b>calculate</b> each
/// model's weight from its task vector's mean square, <b>erase</b> the entries whose sign disagrees with the sign of
/// the unweighted sum, and add the weighted mean of what remains to the base.
/// </summary>
public sealed class Sce()
    : MergeMethod(
        new(
            "sce",
            "SCE",
            "Select the entries where the task vectors vary most, weigh each model by its mean square, erase sign "
                + "disagreements."
        )
        {
            Paper = "https://arxiv.org/abs/2408.07990",
            BaseModel = BaseModelUse.Required,
            // The variance ranking and the weights (mean squares) need the whole tensor.
            Elementwise = false,
            Parameters = [SelectTopK, Int8Mask],
        }
    )
{
    public static readonly NumberParameter SelectTopK = MethodParameter.Number(
        "select_topk",
        ParameterScope.Global,
        1,
        "Fraction of the entries with nonzero variance across the task vectors that are kept (the largest "
            + "variances); 1 keeps all.",
        NumberRange.Fraction
    );

    public static readonly BooleanParameter Int8Mask = MethodParameter.Boolean(
        "int8_mask",
        ParameterScope.Global,
        false,
        "Accepted for compatibility; a memory option in mergekit with no numeric effect."
    );

    /// <summary>Every task vector is held at once; the variance and the signs live in the output.</summary>
    public override int ScratchBuffers(int inputCount) => Math.Max(1, inputCount - 1);

    /// <summary>mergekit's floor on the sum of the agreeing models' weights.</summary>
    private const double MinimumWeightSum = 1e-6;

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        var @base = inputs[inputs.BaseIndex];
        double topK = inputs[SelectTopK];
        // No task vectors, or a selection that erases everything: the base.
        if (inputs.Count < 2 || topK <= 0)
        {
            @base.CopyTo(output);
            return;
        }

        using var tasks = new TaskVectorSet(inputs).Materialise();
        if (topK < 1 && !Select(tasks.Buffers, tasks.Length, topK, output))
        {
            @base.CopyTo(output);
            return;
        }
        var weights = MeanSquareWeights(tasks.Buffers, tasks.Length);
        var votes = Enumerable.Repeat(1.0, tasks.Count).ToArray();
        SignConsensus.Elect(tasks.Buffers, votes, byCount: false, output);
        SignConsensus.DisjointMerge(
            tasks.Buffers,
            weights,
            votes,
            output,
            output,
            DisjointDivisor.AgreeingWeights,
            MinimumWeightSum
        );
        TensorPrimitives.Add(output, @base, output);
    }

    /// <summary>
    /// Zeroes, in every task vector, the entries outside the ⌊nonzero·fraction⌋ largest population variances across
    /// models (ties by position, <see cref="MagnitudeCut"/>). <paramref name="variance"/> is scratch. False when no
    /// entry is kept.
    /// </summary>
    public static bool Select(IReadOnlyList<float[]> deltas, int length, double fraction, Span<float> variance)
    {
        long nonzero = 0;
        for (int j = 0; j < length; j++)
        {
            double mean = 0;
            foreach (var d in deltas)
                mean += d[j];
            mean /= deltas.Count;
            double squares = 0;
            foreach (var d in deltas)
                squares += (d[j] - mean) * (d[j] - mean);
            variance[j] = (float)(squares / deltas.Count);
            if (variance[j] != 0)
                nonzero++;
        }
        long k = (long)(nonzero * fraction);
        if (k == 0)
            return false;
        // Variances are ≥ 0, and k ≤ the nonzero count, so after the cut an entry is selected exactly when it is
        // nonzero.
        MagnitudeCut.Apply(variance[..length], MagnitudeCut.TopK(variance[..length], k));
        foreach (var d in deltas)
            for (int j = 0; j < length; j++)
                if (variance[j] == 0)
                    d[j] = 0;
        return true;
    }

    /// <summary>wᵢ = mean(τᵢ²) / Σₖ mean(τₖ²), or 1/N when that sum is below 1e-6 (mergekit's rule).</summary>
    public static double[] MeanSquareWeights(IReadOnlyList<float[]> deltas, int length)
    {
        var weights = new double[deltas.Count];
        for (int m = 0; m < deltas.Count; m++)
        {
            weights[m] = length == 0 ? 0 : SpanMath.SumOfSquares(deltas[m].AsSpan(0, length)) / length;
        }
        double sum = weights.Sum();
        for (int m = 0; m < weights.Length; m++)
            weights[m] = Math.Abs(sum) < 1e-6 ? 1.0 / weights.Length : weights[m] / sum;
        return weights;
    }
}
