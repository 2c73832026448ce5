using Alloy.Runtime.Compute;
using Alloy.Runtime.Models;

namespace Alloy.Runtime.Layers;

/// <summary>
/// The activations of one decoder block, rows × columns each, in buffers reused from step to step. A forward pass
/// that keeps activations (for backward) gives every block its own set; an inference pass shares one set among all
/// blocks. What each field is, in the order the block computes it:
/// </summary>
public sealed class BlockActivations
{
    internal BlockActivations(ModelConfig config)
    {
        int hidden = config.HiddenSize;
        Input = new Matrix(hidden);
        AttentionInverseRms = new Matrix(1);
        AttentionNormed = new Matrix(hidden);
        Query = new Matrix(config.QueryDim);
        Key = new Matrix(config.KeyValueDim);
        Value = new Matrix(config.KeyValueDim);
        AttentionLogSumExp = new Matrix(config.Heads);
        Context = new Matrix(config.QueryDim);
        AfterAttention = new Matrix(hidden);
        MlpInverseRms = new Matrix(1);
        MlpNormed = new Matrix(hidden);
        Mlp = new SwiGluActivations(config.IntermediateSize);
        Moe = config.Moe is null ? null : new MoeActivations(config);
    }

    /// <summary>
    /// The block's input x (the residual stream). In an inference pass, the residual stream itself, updated in place.
    /// </summary>
    public Matrix Input { get; }

    /// <summary>1/rms of each row of <see cref="Input"/> (kept passes only).</summary>
    public Matrix AttentionInverseRms { get; }

    /// <summary>input_layernorm(x): the input of q_proj, k_proj and v_proj.</summary>
    public Matrix AttentionNormed { get; }

    /// <summary>Queries after RoPE, rows × heads·head_dim.</summary>
    public Matrix Query { get; }

    /// <summary>
    /// Keys of this pass's tokens after RoPE, rows × kv_heads·head_dim (with a KV cache, also copied into it).
    /// </summary>
    public Matrix Key { get; }

    /// <summary>Values of this pass's tokens.</summary>
    public Matrix Value { get; }

    /// <summary>
    /// log Σ exp(score) of each query row and head (kept passes only): with it, backward recomputes the softmax
    /// probabilities from Query and Key instead of storing rows × heads × keys of them.
    /// </summary>
    public Matrix AttentionLogSumExp { get; }

    /// <summary>Attention's output per head, before o_proj: the input of o_proj.</summary>
    public Matrix Context { get; }

    /// <summary>x + o_proj(context) (kept passes only; an inference pass adds into <see cref="Input"/>).</summary>
    public Matrix AfterAttention { get; }

    /// <summary>1/rms of each row of <see cref="AfterAttention"/> (kept passes only).</summary>
    public Matrix MlpInverseRms { get; }

    /// <summary>post_attention_layernorm(x): the input of gate_proj and up_proj.</summary>
    public Matrix MlpNormed { get; }

    /// <summary>The dense MLP's gate, up and hidden matrices (unused in a mixture of experts).</summary>
    public SwiGluActivations Mlp { get; }

    /// <summary>gate_proj output, before the activation.</summary>
    public Matrix Gate => Mlp.Gate;

    /// <summary>up_proj output.</summary>
    public Matrix Up => Mlp.Up;

    /// <summary>silu(gate) · up: the input of down_proj.</summary>
    public Matrix Hidden => Mlp.Hidden;

    /// <summary>A mixture of experts' routing and per-expert activations (MoE models only).</summary>
    public MoeActivations? Moe { get; }
}
