using Alloy.Runtime.Compute;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Layers;

/// <summary>
/// A linear layer y = x·Wᵀ + b with Hugging Face's [out, in] weight and an optional bias. W may be a block of rows of
/// a larger parameter (one expert's gate or up rows in a fused [experts, 2·I, H] stack), so fused and per-expert
/// checkpoints run through the same layer.
/// </summary>
public sealed class Linear
{
    private readonly int _offset;

    public Linear(Parameter weight, Parameter? bias, int firstRow = 0, int? rows = null)
    {
        if (weight.Shape.Length < 2)
            throw new ArgumentException($"'{weight.Name}' is not a matrix");
        int count = rows ?? weight.Rows - firstRow;
        if (firstRow < 0 || count < 1 || firstRow + count > weight.Rows)
            throw new ArgumentException($"'{weight.Name}' has no rows [{firstRow}, {firstRow + count})");
        if (bias is not null && (bias.Shape.Length != 1 || bias.Rows != count))
            throw new ArgumentException($"'{bias.Name}' does not match '{weight.Name}'");
        Weight = weight;
        Bias = bias;
        OutFeatures = count;
        _offset = firstRow * weight.Columns;
    }

    /// <summary>The parameter the weight is (or is a block of rows of).</summary>
    public Parameter Weight { get; }

    public Parameter? Bias { get; }

    public int InFeatures => Weight.Columns;

    public int OutFeatures { get; }

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
            accumulate,
            _offset
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
                accumulate ? 1f : 0f,
                bOffset: _offset
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
            1f,
            cOffset: _offset
        );
        if (Bias is not null)
            VectorMath.AddColumnSums(context, outputGradient, gradients[Bias]);
    }
}
