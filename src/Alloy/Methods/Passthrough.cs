using System.Numerics.Tensors;

namespace Alloy.Methods;

/// <summary>
/// Copies its single input, optionally multiplied by <c>scale</c>: the building block of frankenmerges.
/// </summary>
public sealed class Passthrough()
    : MergeMethod(
        new(
            "passthrough",
            "Passthrough",
            "Copies one model's tensors (frankenmerges: layers stacked from several models)."
        )
        {
            Parameters = [Scale],
        }
    )
{
    public static readonly NumberParameter Scale = MethodParameter.Number(
        "scale",
        ParameterScope.PerModel,
        1,
        "Multiply the tensor by this factor."
    );

    public override void Validate(MergeInputsInfo inputs)
    {
        if (inputs.Count != 1)
            throw new AlloyException(
                $"passthrough: tensor '{inputs.TensorName}' has {inputs.Count} inputs "
                    + $"({string.Join(", ", inputs.ModelNames)}); passthrough takes exactly one model per slice"
            );
    }

    public override bool CopiesInput(MergeInputsInfo inputs) => inputs[Scale, 0] == 1;

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        double scale = inputs[Scale, 0];
        if (scale != 1)
            TensorPrimitives.Multiply(inputs[0], (float)scale, output);
        else
            inputs[0].CopyTo(output);
    }
}
