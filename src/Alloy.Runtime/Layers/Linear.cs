using Alloy.Runtime.Compute;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Layers;

/// <summary>A linear layer y = x·Wᵀ + b with Hugging Face's [out, in] weight and an optional bias.</summary>
public sealed class Linear
{
    public Linear(Parameter weight, Parameter? bias)
    {
        if (weight.Shape.Length != 2)
            throw new ArgumentException($"'{weight.Name}' is not a matrix");
        if (bias is not null && (bias.Shape.Length != 1 || bias.Rows != weight.Rows))
            throw new ArgumentException($"'{bias.Name}' does not match '{weight.Name}'");
        Weight = weight;
        Bias = bias;
    }

    public Parameter Weight { get; }

    public Parameter? Bias { get; }

    public int InFeatures => Weight.Columns;

    public int OutFeatures => Weight.Rows;

    /// <summary>
    /// output = input·Wᵀ + b; with <paramref name="accumulate"/>, output += input·Wᵀ + b (a residual add for free).
    /// </summary>
    public void Forward(ComputeContext context, Matrix input, Matrix output, bool accumulate = false)
    {
        if (accumulate && output.Rows != input.Rows)
            throw new ArgumentException($"{Weight.Name}: accumulating {input.Rows} rows into {output.Rows}");
        output.Resize(input.Rows);
        MatMul.Linear(
            context,
            input.Data,
            input.Rows,
            Weight.Data,
            InFeatures,
            OutFeatures,
            Bias?.Data,
            output.Data,
            accumulate
        );
    }

    /// <summary>
    /// Backward of <see cref="Forward"/> for the rows of <paramref name="input"/>: the weight's gradient += dYᵀ·X, the
    /// bias's += the column sums of dY, and (unless <paramref name="inputGradient"/> is null) dX = dY·W, added to
    /// <paramref name="inputGradient"/> with <paramref name="accumulate"/> (a layer input shared by several layers).
    /// </summary>
    public void Backward(
        ComputeContext context,
        Matrix input,
        Matrix outputGradient,
        Matrix? inputGradient,
        bool accumulate,
        GradientSet gradients
    )
    {
        int rows = input.Rows;
        if (outputGradient.Rows != rows)
            throw new ArgumentException($"{Weight.Name}: {outputGradient.Rows} gradient rows for {rows} input rows");
        if (inputGradient is not null)
        {
            if (accumulate && inputGradient.Rows != rows)
                throw new ArgumentException($"{Weight.Name}: accumulating {rows} rows into {inputGradient.Rows}");
            inputGradient.Resize(rows);
            MatMul.Multiply(
                context,
                false,
                false,
                rows,
                InFeatures,
                OutFeatures,
                outputGradient.Data,
                OutFeatures,
                Weight.Data,
                InFeatures,
                inputGradient.Data,
                InFeatures,
                accumulate ? 1f : 0f
            );
        }
        if (rows == 0)
            return;
        MatMul.Multiply(
            context,
            true,
            false,
            OutFeatures,
            InFeatures,
            rows,
            outputGradient.Data,
            OutFeatures,
            input.Data,
            InFeatures,
            gradients[Weight],
            InFeatures,
            1f
        );
        if (Bias is not null)
            VectorMath.AddColumnSums(context, outputGradient, gradients[Bias]);
    }
}
