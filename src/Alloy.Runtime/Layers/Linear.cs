using Alloy.Runtime.Compute;
using Alloy.Runtime.Models;

namespace Alloy.Runtime.Layers;

/// <summary>A linear layer y = x·Wᵀ + b with Hugging Face's [out, in] weight and an optional bias.</summary>
public sealed class Linear
{
    public Linear(Parameter weight, Parameter? bias)
    {
        if (weight.Shape.Length != 2) throw new ArgumentException($"'{weight.Name}' is not a matrix");
        if (bias is not null && (bias.Shape.Length != 1 || bias.Rows != weight.Rows))
            throw new ArgumentException($"'{bias.Name}' does not match '{weight.Name}'");
        Weight = weight;
        Bias = bias;
    }

    public Parameter Weight { get; }

    public Parameter? Bias { get; }

    public int InFeatures => Weight.Columns;

    public int OutFeatures => Weight.Rows;

    /// <summary>output = input·Wᵀ + b; with <paramref name="accumulate"/>, output += input·Wᵀ + b (a residual add for free).</summary>
    public void Forward(ComputeContext context, Matrix input, Matrix output, bool accumulate = false)
    {
        if (accumulate && output.Rows != input.Rows)
            throw new ArgumentException($"{Weight.Name}: accumulating {input.Rows} rows into {output.Rows}");
        output.Resize(input.Rows);
        MatMul.Linear(context, input.Data, input.Rows, Weight.Data, InFeatures, OutFeatures, Bias?.Data, output.Data, accumulate);
    }
}
