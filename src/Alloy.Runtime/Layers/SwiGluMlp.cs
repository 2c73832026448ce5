using Alloy.Runtime.Compute;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Layers;

/// <summary>
/// A decoder block's feed-forward part: the dense SwiGLU MLP or a sparse mixture of experts. It reads the
/// post-attention norm's output and adds its result to the residual stream.
/// </summary>
public interface IFeedForward
{
    /// <summary>residual += FFN(normed), keeping what backward needs in <paramref name="a"/>.</summary>
    void Forward(ComputeContext context, Matrix normed, BlockActivations a, Matrix residual);

    /// <summary>
    /// Backward of <see cref="Forward"/>: from ∂loss/∂residual (<paramref name="outputGradient"/>) to ∂loss/∂normed
    /// (<see cref="BackwardState.Normed"/>, written), adding the weights' gradients.
    /// </summary>
    void Backward(
        ComputeContext context,
        Matrix normed,
        BlockActivations a,
        Matrix outputGradient,
        BackwardState b,
        GradientSet gradients
    );
}

/// <summary>The intermediate matrices of a SwiGLU MLP (or their gradients), rows × intermediate size each.</summary>
public sealed class SwiGluActivations(int intermediateSize)
{
    /// <summary>gate_proj output, before the activation.</summary>
    public Matrix Gate { get; } = new(intermediateSize);

    /// <summary>up_proj output.</summary>
    public Matrix Up { get; } = new(intermediateSize);

    /// <summary>silu(gate) · up: the input of down_proj.</summary>
    public Matrix Hidden { get; } = new(intermediateSize);
}

/// <summary>
/// The Llama MLP: down_proj(silu(gate_proj(x)) · up_proj(x)); also each expert of a mixture and Qwen2-MoE's shared
/// expert.
/// </summary>
public sealed class SwiGluMlp(Linear gate, Linear up, Linear down) : IFeedForward
{
    public Linear Gate { get; } = gate;
    public Linear Up { get; } = up;
    public Linear Down { get; } = down;

    public void Forward(ComputeContext context, Matrix normed, BlockActivations a, Matrix residual) =>
        Forward(context, normed, a.Mlp, residual, accumulate: true);

    /// <summary>
    /// output = MLP(input), or output += MLP(input) with <paramref name="accumulate"/>; gate, up and their product stay
    /// in <paramref name="a"/>.
    /// </summary>
    public void Forward(ComputeContext context, Matrix input, SwiGluActivations a, Matrix output, bool accumulate)
    {
        Gate.Forward(context, input, a.Gate);
        Up.Forward(context, input, a.Up);
        a.Hidden.Resize(input.Rows);
        context.ForBlocks(input.Rows, 16, (start, end) =>
        {
            for (int r = start; r < end; r++)
                VectorMath.SwiGlu(a.Gate.Row(r), a.Up.Row(r), a.Hidden.Row(r));
        });
        Down.Forward(context, a.Hidden, output, accumulate);
    }

    public void Backward(
        ComputeContext context,
        Matrix normed,
        BlockActivations a,
        Matrix outputGradient,
        BackwardState b,
        GradientSet gradients
    ) => Backward(context, normed, a.Mlp, outputGradient, b.Mlp, b.Normed, false, gradients);

    /// <summary>
    /// Backward of <see cref="Forward(ComputeContext, Matrix, SwiGluActivations, Matrix, bool)"/>: ∂loss/∂input is
    /// written to (or, with <paramref name="accumulate"/>, added to) <paramref name="inputGradient"/>, through the
    /// buffers of <paramref name="scratch"/>; the three layers' weight gradients are added.
    /// </summary>
    public void Backward(
        ComputeContext context,
        Matrix input,
        SwiGluActivations a,
        Matrix outputGradient,
        SwiGluActivations scratch,
        Matrix inputGradient,
        bool accumulate,
        GradientSet gradients
    )
    {
        Down.Backward(context, a.Hidden, outputGradient, scratch.Hidden, false, gradients);
        scratch.Gate.Resize(input.Rows);
        scratch.Up.Resize(input.Rows);
        context.ForBlocks(input.Rows, 16, (start, end) =>
        {
            for (int r = start; r < end; r++)
                VectorMath.SwiGluBackward(
                    a.Gate.Row(r),
                    a.Up.Row(r),
                    scratch.Hidden.Row(r),
                    scratch.Gate.Row(r),
                    scratch.Up.Row(r)
                );
        });
        Gate.Backward(context, input, scratch.Gate, inputGradient, accumulate, gradients);
        Up.Backward(context, input, scratch.Up, inputGradient, true, gradients);
    }
}
