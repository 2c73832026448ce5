using Alloy.Runtime.Compute;
using Alloy.Runtime.Layers;
using Alloy.Runtime.Models;

namespace Alloy.Runtime.Training;

/// <summary>
/// The gradient buffers of a backward pass, with respect to activations (rows × columns each). One set serves every
/// block in turn, since backward finishes a block before it starts the one below; storage only grows, so a training
/// loop stops allocating after its first step.
/// </summary>
public sealed class BackwardState
{
    internal BackwardState(ModelConfig config)
    {
        int hidden = config.HiddenSize;
        Residual = new Matrix(hidden);
        FinalNormed = new Matrix(hidden);
        Normed = new Matrix(hidden);
        NormScratch = new Matrix(hidden);
        Query = new Matrix(config.QueryDim);
        Key = new Matrix(config.KeyValueDim);
        Value = new Matrix(config.KeyValueDim);
        KeyPerHead = new Matrix(config.QueryDim);
        ValuePerHead = new Matrix(config.QueryDim);
        Context = new Matrix(config.QueryDim);
        Mlp = new SwiGluActivations(config.IntermediateSize);
        Moe = config.Moe is null ? null : new MoeGradients(config);
    }

    /// <summary>∂loss/∂(residual stream) at the current block boundary, updated in place block by block.</summary>
    public Matrix Residual { get; }

    /// <summary>∂loss/∂(the final norm's output), selected rows only.</summary>
    public Matrix FinalNormed { get; }

    /// <summary>∂loss/∂(a norm's output): the input of q/k/v or of gate/up.</summary>
    public Matrix Normed { get; }

    /// <summary>dy∘(x/rms) of a norm's rows, whose column sums are its weight's gradient.</summary>
    public Matrix NormScratch { get; }

    public Matrix Query { get; }
    public Matrix Key { get; }
    public Matrix Value { get; }

    /// <summary>
    /// Each query head's share of ∂loss/∂keys (summed over a group of heads into <see cref="Key"/> in head order).
    /// </summary>
    public Matrix KeyPerHead { get; }

    /// <summary>Each query head's share of ∂loss/∂values.</summary>
    public Matrix ValuePerHead { get; }

    public Matrix Context { get; }

    /// <summary>∂loss/∂ the dense MLP's gate, up and hidden matrices.</summary>
    public SwiGluActivations Mlp { get; }

    public Matrix Gate => Mlp.Gate;
    public Matrix Up => Mlp.Up;
    public Matrix Hidden => Mlp.Hidden;

    /// <summary>A mixture of experts' gradient buffers (MoE models only).</summary>
    public MoeGradients? Moe { get; }
}
