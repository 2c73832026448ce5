using Alloy.Runtime.Compute;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Layers;

/// <summary>RMSNorm: y = x / √(mean(x²) + ε) · weight, row by row.</summary>
public sealed class RmsNorm(Parameter weight, double epsilon)
{
    /// <summary>Rows per parallel block (row work is tiny; blocks keep scheduling cheap).</summary>
    private const int RowsPerBlock = 64;

    public Parameter Weight { get; } = weight;

    public double Epsilon { get; } = epsilon;

    /// <summary>
    /// Normalises the <paramref name="rows"/> of <paramref name="input"/> (all rows when null) into consecutive rows of
    /// <paramref name="output"/>; <paramref name="inverseRms"/>, when given, receives each row's 1/rms for backward.
    /// </summary>
    public void Forward(
        ComputeContext context,
        Matrix input,
        Matrix output,
        Matrix? inverseRms = null,
        int[]? rows = null
    )
    {
        int count = rows?.Length ?? input.Rows;
        output.Resize(count);
        inverseRms?.Resize(count);
        context.ForBlocks(count, RowsPerBlock, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                float inverse = VectorMath.RmsNorm(input.Row(rows?[i] ?? i), Weight.Data, Epsilon, output.Row(i));
                if (inverseRms is not null)
                    inverseRms.Data[i] = inverse;
            }
        });
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>: row i of <paramref name="outputGradient"/> is dy of input row rows[i] (row i
    /// when <paramref name="rows"/> is null), whose dx is added to that row of <paramref name="inputGradient"/> (or
    /// written, without <paramref name="accumulate"/>). The weight's gradient += Σ dy∘(x/rms), through
    /// <paramref name="scratch"/>.
    /// </summary>
    public void Backward(
        ComputeContext context,
        Matrix input,
        Matrix inverseRms,
        Matrix outputGradient,
        Matrix inputGradient,
        bool accumulate,
        Matrix scratch,
        GradientSet gradients,
        int[]? rows = null
    )
    {
        int count = outputGradient.Rows;
        if (!accumulate)
            inputGradient.Resize(input.Rows);
        scratch.Resize(count);
        context.ForBlocks(count, RowsPerBlock, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                int row = rows?[i] ?? i;
                VectorMath.RmsNormBackward(
                    input.Row(row),
                    inverseRms.Data[i],
                    Weight.Data,
                    outputGradient.Row(i),
                    inputGradient.Row(row),
                    accumulate,
                    scratch.Row(i)
                );
            }
        });
        VectorMath.AddColumnSums(context, scratch, gradients[Weight]);
    }
}
