using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Support;

namespace Alloy.Runtime.Tests.Inference;

/// <summary>
/// A pass that keeps activations (what backward, Fisher and RegMean read) computes the same logits as an inference
/// pass, and each kept buffer holds what its documentation says: checked here against values recomputed in double
/// from the neighbouring buffers.
/// </summary>
public sealed class KeptActivationsTests
{
    [Fact]
    public void Kept_activations_are_the_blocks_inputs_and_intermediates()
    {
        // sliding window and GQA: the hardest attention
        var model = LlamaModel.Load(Reference.Folder("mistral-window"));
        var config = model.Config;
        var sequences = Reference.Load("mistral-window").Sequences;
        var batch = TokenBatch.FromSequences(sequences);
        var state = model.CreateState(keepActivations: true);
        var kept = model.Forward(batch, state).Copy();
        var plain = model.Forward(batch);
        for (int i = 0; i < plain.Count; i++)
            BatchingAndCacheTests.AssertIdentical(plain.Row(i), kept.Row(i), $"row {i}");

        Assert.Equal(config.Layers, state.Blocks.Count);
        var layout = state.Layout!;
        for (int layer = 0; layer < config.Layers; layer++)
        {
            var a = state.Blocks[layer];
            var block = model.Blocks[layer];
            var next = layer + 1 < config.Layers ? state.Blocks[layer + 1].Input : state.FinalHidden;
            for (int r = 0; r < layout.Rows; r++)
            {
                CheckNorm(
                    a.Input.Row(r),
                    block.InputNorm.Weight.Data,
                    config.RmsNormEpsilon,
                    a.AttentionNormed.Row(r),
                    a.AttentionInverseRms.Data[r]
                );
                CheckNorm(
                    a.AfterAttention.Row(r),
                    block.PostAttentionNorm.Weight.Data,
                    config.RmsNormEpsilon,
                    a.MlpNormed.Row(r),
                    a.MlpInverseRms.Data[r]
                );
                for (int j = 0; j < config.IntermediateSize; j++)
                {
                    double g = a.Gate.Row(r)[j];
                    Close(g / (1 + Math.Exp(-g)) * a.Up.Row(r)[j], a.Hidden.Row(r)[j], "silu(gate)·up");
                }
                // The residual stream: next input = after-attention + down_proj(hidden).
                var down = block.Mlp!.Down.Weight;
                for (int c = 0; c < config.HiddenSize; c++)
                {
                    double sum = a.AfterAttention.Row(r)[c];
                    for (int j = 0; j < config.IntermediateSize; j++)
                        sum += (double)down.Data[c * config.IntermediateSize + j] * a.Hidden.Row(r)[j];
                    Close(sum, next.Row(r)[c], "residual");
                }
            }
            CheckAttention(model, layout, a, layer);
        }
    }

    /// <summary>The log-sum-exp and context of every query, from the kept queries, keys and values.</summary>
    private static void CheckAttention(
        LlamaModel model,
        BatchLayout layout,
        Alloy.Runtime.Layers.BlockActivations a,
        int layer
    )
    {
        var config = model.Config;
        int hd = config.HeadDim,
            window = config.SlidingWindow ?? int.MaxValue;
        for (int s = 0; s < layout.Sequences; s++)
        {
            for (int i = 0; i < layout.Length(s); i++)
            {
                int row = layout.Offset(s) + i;
                for (int h = 0; h < config.Heads; h++)
                {
                    int g = h / config.GroupSize;
                    var keys = Enumerable.Range(0, i + 1).Where(j => i - j < window).ToList();
                    var scores = keys.Select(j =>
                        {
                            double dot = 0;
                            for (int d = 0; d < hd; d++)
                                dot +=
                                    (double)a.Query.Row(row)[h * hd + d] * a.Key.Row(layout.Offset(s) + j)[g * hd + d];
                            return dot / Math.Sqrt(hd);
                        })
                        .ToList();
                    double max = scores.Max(),
                        sum = scores.Sum(x => Math.Exp(x - max));
                    Close(max + Math.Log(sum), a.AttentionLogSumExp.Row(row)[h], $"layer {layer} log-sum-exp");
                    for (int d = 0; d < hd; d++)
                    {
                        double context = 0;
                        for (int k = 0; k < keys.Count; k++)
                            context +=
                                Math.Exp(scores[k] - max) / sum * a.Value.Row(layout.Offset(s) + keys[k])[g * hd + d];
                        Close(context, a.Context.Row(row)[h * hd + d], $"layer {layer} context");
                    }
                }
            }
        }
    }

    private static void CheckNorm(
        ReadOnlySpan<float> x,
        float[] weight,
        double epsilon,
        ReadOnlySpan<float> normed,
        float inverseRms
    )
    {
        double squares = 0;
        foreach (float v in x)
            squares += (double)v * v;
        double inverse = 1 / Math.Sqrt(squares / x.Length + epsilon);
        Close(inverse, inverseRms, "1/rms");
        for (int c = 0; c < x.Length; c++)
            Close(x[c] * inverse * weight[c], normed[c], "normed");
    }

    private static void Close(double expected, float actual, string what) =>
        Assert.True(
            Math.Abs(expected - actual) <= 1e-5 * Math.Max(1, Math.Abs(expected)),
            $"{what}: {actual} vs {expected}"
        );
}
