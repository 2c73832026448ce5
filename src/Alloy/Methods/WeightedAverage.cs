using System.Numerics.Tensors;

namespace Alloy.Methods;

/// <summary>Weighted average of the inputs (model soups): Σ wᵢ·xᵢ, divided by Σ wᵢ when normalize is on.</summary>
public sealed class WeightedAverage()
    : MergeMethod(
        new("linear", "Linear", "Weighted average of the models (model soups).")
        {
            Paper = "https://arxiv.org/abs/2203.05482",
            EmbeddingShapes = EmbeddingShapeRule.CommonSubmatrix,
            Parameters = [Weight, Normalize],
        }
    )
{
    public static readonly NumberParameter Weight = MethodParameter.Number(
        "weight",
        ParameterScope.PerModel,
        null,
        "Weight of each model."
    );

    public static readonly BooleanParameter Normalize = MethodParameter.Boolean(
        "normalize",
        ParameterScope.Global,
        true,
        "Divide by the sum of the weights."
    );

    public override void Validate(MergeInputsInfo inputs)
    {
        if (inputs[Normalize] && Math.Abs(WeightSum(inputs)) < 1e-12)
            throw new AlloyException(
                $"linear: the weights of tensor '{inputs.TensorName}' sum to zero, so they cannot be normalized; "
                    + $"change the weights or set normalize: false"
            );
    }

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        double divisor = inputs[Normalize] ? WeightSum(inputs) : 1;
        output.Clear();
        for (int i = 0; i < inputs.Count; i++)
            TensorPrimitives.MultiplyAdd(inputs[i], (float)(inputs[Weight, i] / divisor), output, output);
    }

    private static double WeightSum(MergeInputsInfo inputs)
    {
        double sum = 0;
        for (int i = 0; i < inputs.Count; i++)
            sum += inputs[Weight, i];
        return sum;
    }
}
