using Alloy.Runtime.Compute;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Layers;

/// <summary>One pre-norm decoder layer: x + attention(norm(x)), then + FFN(norm(·)) (an MLP or a mixture of experts).
/// </summary>
public sealed class DecoderBlock(
    RmsNorm inputNorm,
    SelfAttention attention,
    RmsNorm postAttentionNorm,
    IFeedForward feedForward
)
{
    public RmsNorm InputNorm { get; } = inputNorm;
    public SelfAttention Attention { get; } = attention;
    public RmsNorm PostAttentionNorm { get; } = postAttentionNorm;
    public IFeedForward FeedForward { get; } = feedForward;

    /// <summary>The dense MLP; null in a mixture of experts (see <see cref="Moe"/>).</summary>
    public SwiGluMlp? Mlp => FeedForward as SwiGluMlp;

    /// <summary>The mixture of experts; null in a dense model.</summary>
    public SparseMoe? Moe => FeedForward as SparseMoe;

    /// <summary>
    /// output = block(input). An inference pass passes the residual stream as both (it is updated in place); a kept
    /// pass gives distinct matrices and keeps x + attention in <see cref="BlockActivations.AfterAttention"/>.
    /// </summary>
    public void Forward(
        ComputeContext context,
        Matrix input,
        Matrix output,
        BlockActivations a,
        BatchLayout layout,
        KvCache? cache,
        bool keep
    )
    {
        InputNorm.Forward(context, input, a.AttentionNormed, keep ? a.AttentionInverseRms : null);
        var afterAttention = keep ? a.AfterAttention : output;
        CopyRows(input, afterAttention);
        Attention.Forward(context, a.AttentionNormed, layout, cache, a, afterAttention, keep);
        PostAttentionNorm.Forward(context, afterAttention, a.MlpNormed, keep ? a.MlpInverseRms : null);
        CopyRows(afterAttention, output);
        FeedForward.Forward(context, a.MlpNormed, a, output);
    }

    /// <summary>
    /// Backward of a kept <see cref="Forward"/>: <see cref="BackwardState.Residual"/> holds ∂loss/∂output on entry and
    /// ∂loss/∂input on return; every parameter's gradient is added to <paramref name="gradients"/>.
    /// </summary>
    public void Backward(
        ComputeContext context,
        BlockActivations a,
        BatchLayout layout,
        BackwardState b,
        GradientSet gradients
    )
    {
        var residual = b.Residual;
        FeedForward.Backward(context, a.MlpNormed, a, residual, b, gradients);
        PostAttentionNorm.Backward(
            context,
            a.AfterAttention,
            a.MlpInverseRms,
            b.Normed,
            residual,
            true,
            b.NormScratch,
            gradients
        );
        Attention.Backward(context, a, layout, residual, b, gradients);
        InputNorm.Backward(context, a.Input, a.AttentionInverseRms, b.Normed, residual, true, b.NormScratch, gradients);
    }

    private static void CopyRows(Matrix from, Matrix to)
    {
        if (ReferenceEquals(from, to))
            return;
        to.Resize(from.Rows);
        from.Span.CopyTo(to.Span);
    }
}
