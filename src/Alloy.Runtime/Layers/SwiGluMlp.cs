using Alloy.Runtime.Compute;

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
            for (int r = start; r < end; r++) VectorMath.SwiGlu(a.Gate.Row(r), a.Up.Row(r), a.Hidden.Row(r));
        });
        Down.Forward(context, a.Hidden, residual, accumulate: true);
    }
}
