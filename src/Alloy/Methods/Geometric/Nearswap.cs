namespace Alloy.Methods.Geometric;

/// <summary>
/// Nearswap: takes the other model's value where it is close to the base's and keeps the base where they differ;
/// elementwise w = clamp(t / max(|base − other|, 1e-6), 0, 1), out = w·other + (1 − w)·base.
/// </summary>
public sealed class Nearswap()
    : MergeMethod(
        new(
            "nearswap",
            "NearSwap",
            "Takes the other model's values where they are close to the base's, and keeps the base where they differ."
        )
        {
            Paper = "https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001",
            BaseModel = BaseModelUse.Required,
            Parameters = [T],
        }
    )
{
    public static readonly NumberParameter T = MethodParameter.Number(
        "t",
        ParameterScope.Global,
        null,
        "Distance scale: values closer than t are swapped in fully, farther ones in proportion t/|difference|.",
        NumberRange.NonNegative
    );

    public override void Validate(MergeInputsInfo inputs) => InputRules.BaseAndOneOther(inputs, Name);

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        var a = inputs[inputs.BaseIndex];
        if (inputs.Count == 1)
        {
            a.CopyTo(output);
            return;
        }
        var b = inputs[InputRules.Other(inputs)];
        double t = inputs[T];
        for (int i = 0; i < output.Length; i++)
        {
            double w = Math.Clamp(t / Math.Max(Math.Abs((double)a[i] - b[i]), 1e-6), 0, 1);
            output[i] = (float)(w * b[i] + (1 - w) * a[i]);
        }
    }
}
