using System.Buffers;
using System.Numerics.Tensors;
using Alloy.Tensors;

namespace Alloy.Methods.TaskVectors;

/// <summary>
/// PCB-Merging, Parameter Competition Balancing (Du et al., NeurIPS 2024, arXiv:2410.02396), per tensor, as the
/// released <c>pcb-merging.py</c> defines it. Each task vector's magnitudes are clamped to their <c>clamp_ratio</c> and
/// 1 − <c>clamp_ratio</c> order statistics; each entry is scored by intra-balancing exp(n·minmax(|τₜ|)²) times
/// inter-balancing tanh(τₜ·Σₛτₛ); scores below each task's top <c>pcb_ratio</c> are raised to that threshold and
/// min-max normalised to the scale sₜ ∈ [0, 1]; out = b + Σₜ λₜ·sₜ·clamp(τₜ) / max(Σₜ sₜ, 1e-12).
/// </summary>
public sealed class Pcb()
    : MergeMethod(
        new(
            "pcb",
            "PCB-Merging",
            "Scores each task-vector entry by its own size and its agreement with the others, keeps the top, and "
                + "averages by score."
        )
        {
            Paper = "https://arxiv.org/abs/2410.02396",
            BaseModel = BaseModelUse.Required,
            // Order statistics, min-max normalisation and the cross-task sum need the whole tensor.
            Elementwise = false,
            Parameters = [Lambda, PcbRatio, ClampRatio],
        }
    )
{
    public static readonly NumberParameter Lambda = MethodParameter.Number(
        "lambda",
        ParameterScope.PerModel,
        1.2,
        "λₜ: scale of each task's contribution (1.2 in the paper's scripts; its evolutionary search looks in [0.8, "
            + "1.3])."
    );

    public static readonly NumberParameter PcbRatio = MethodParameter.Number(
        "pcb_ratio",
        ParameterScope.Global,
        0.1,
        "Fraction of each task vector's entries kept by balancing score (0.1 in pcb-merging.py, 0.05 in the paper's "
            + "search example).",
        new NumberRange(0, 1, MinimumOpen: true)
    );

    public static readonly NumberParameter ClampRatio = MethodParameter.Number(
        "clamp_ratio",
        ParameterScope.Global,
        0.0001,
        "Fraction of each task vector's smallest and largest magnitudes clamped before scoring (0.0001 in "
            + "pcb-merging.py, 0.01 in its vision script).",
        new NumberRange(0, 0.5, MaximumOpen: true)
    );

    /// <summary>Each task vector and its scores at once, plus one buffer for order statistics.</summary>
    public override int ScratchBuffers(int inputCount) => 2 * Math.Max(1, inputCount - 1) + 1;

    private const double MinimumScaleSum = 1e-12;

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        var @base = inputs[inputs.BaseIndex];
        int n = output.Length;
        if (inputs.Count < 2 || n == 0)
        {
            @base.CopyTo(output);
            return;
        }
        using var tasks = new TaskVectorSet(inputs).Materialise();
        var scores = new float[tasks.Count][];
        float[] scratch = ArrayPool<float>.Shared.Rent(n);
        try
        {
            for (int m = 0; m < tasks.Count; m++)
                scores[m] = ArrayPool<float>.Shared.Rent(n);
            var order = scratch.AsSpan(0, n);

            // Inter-balancing compares each task with the sum of the unclamped task vectors; it lives in the output.
            output.Clear();
            for (int m = 0; m < tasks.Count; m++)
                TensorPrimitives.Add(output, tasks[m], output);

            double clampRatio = inputs[ClampRatio],
                keepRatio = inputs[PcbRatio];
            for (int m = 0; m < tasks.Count; m++)
            {
                var delta = tasks[m];
                var score = scores[m].AsSpan(0, n);
                TensorPrimitives.Abs(delta, order);
                float low = OrderStatistic(order, (int)(n * clampRatio));
                float high = OrderStatistic(order, (int)(n * (1 - clampRatio) - 1));
                for (int j = 0; j < n; j++)
                {
                    // torch's clamp(min, max): the max wins if the two order statistics cross (tiny tensors).
                    float magnitude = Math.Min(Math.Max(Math.Abs(delta[j]), low), high);
                    float clamped = delta[j] == 0 ? 0 : MathF.CopySign(magnitude, delta[j]);
                    // Clamped magnitudes span [low, high]; an all-equal row (0/0, NaN, in the original) scores 0.
                    double intra = high > low ? (magnitude - low) / (double)(high - low) : 0;
                    score[j] = (float)(Math.Exp(tasks.Count * intra * intra) * Math.Tanh((double)delta[j] * output[j]));
                    delta[j] = clamped;
                }
                // Keep the top pcb_ratio: raise the rest to the threshold, then min-max normalise (an all-equal top,
                // 0/0 in the original, scales every entry by 1).
                score.CopyTo(order);
                float threshold = OrderStatistic(order, (int)(n * (1 - keepRatio)));
                float top = TensorPrimitives.Max(score);
                for (int j = 0; j < n; j++)
                    score[j] =
                        top > threshold
                            ? (float)((Math.Max(score[j], threshold) - (double)threshold) / ((double)top - threshold))
                            : 1;
            }

            var lambdas = tasks.Models.Select(i => inputs[Lambda, i]).ToArray();
            for (int j = 0; j < n; j++)
            {
                double sum = 0,
                    scales = 0;
                for (int m = 0; m < tasks.Count; m++)
                {
                    sum += lambdas[m] * scores[m][j] * tasks[m][j];
                    scales += scores[m][j];
                }
                output[j] = (float)(@base[j] + sum / Math.Max(scales, MinimumScaleSum));
            }
        }
        finally
        {
            foreach (var s in scores)
                if (s is not null)
                    ArrayPool<float>.Shared.Return(s);
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    /// <summary>The k-th smallest value (k clamped into range), as the original's ascending sort indexes it.</summary>
    private static float OrderStatistic(Span<float> values, int k) =>
        Selection.Select(values, Math.Clamp(k, 0, values.Length - 1));
}
