using Alloy.Runtime.Compute;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Layers;

/// <summary>The Llama MLP: down_proj(silu(gate_proj(x)) · up_proj(x)).</summary>
public sealed class SwiGluMlp(Linear gate, Linear up, Linear down)
{
    public Linear Gate { get; } = gate;
    public Linear Up { get; } = up;
    public Linear Down { get; } = down;

    /// <summary>residual += MLP(normed); gate, up and their product stay in <paramref name="a"/>.</summary>
    public void Forward(ComputeContext context, Matrix normed, BlockActivations a, Matrix residual)
    {
        Gate.Forward(context, normed, a.Gate);
        Up.Forward(context, normed, a.Up);
        a.Hidden.Resize(normed.Rows);
        context.ForBlocks(normed.Rows, 16, (start, end) =>
        {
            for (int r = start; r < end; r++)
                VectorMath.SwiGlu(a.Gate.Row(r), a.Up.Row(r), a.Hidden.Row(r));
        });
        Down.Forward(context, a.Hidden, residual, accumulate: true);
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>: from ∂loss/∂residual (<paramref name="outputGradient"/>) to ∂loss/∂normed
    /// (<see cref="BackwardState.Normed"/>), adding the three layers' weight gradients.
    /// </summary>
    public void Backward(
        ComputeContext context,
        Matrix normed,
        BlockActivations a,
        Matrix outputGradient,
        BackwardState b,
        GradientSet gradients
    )
    {
        Down.Backward(context, a.Hidden, outputGradient, b.Hidden, false, gradients);
        b.Gate.Resize(normed.Rows);
        b.Up.Resize(normed.Rows);
        context.ForBlocks(normed.Rows, 16, (start, end) =>
        {
            for (int r = start; r < end; r++)
                VectorMath.SwiGluBackward(a.Gate.Row(r), a.Up.Row(r), b.Hidden.Row(r), b.Gate.Row(r), b.Up.Row(r));
        });
        Gate.Backward(context, normed, b.Gate, b.Normed, false, gradients);
        Up.Backward(context, normed, b.Up, b.Normed, true, gradients);
    }
}
