using Alloy.Methods;

namespace Alloy.Plugins.Example;

/// <summary>
/// A merge method from outside Alloy: per entry, the models' values sorted, <c>trim</c> dropped from each end, and the
/// mean (or the median) of the rest, scaled. One class is all a method needs; <c>alloy merge --plugin</c> finds it.
/// </summary>
public sealed class TrimmedMean()
    : MergeMethod(
        new(
            "trimmed_mean",
            "Trimmed Mean",
            "Per entry, the mean (or median) of the models' values without the trim largest and smallest."
        )
        {
            Parameters = [Trim, Center, Scale],
        }
    )
{
    public static readonly IntegerParameter Trim = MethodParameter.Integer(
        "trim",
        ParameterScope.Global,
        0,
        "Values dropped from each end of every entry's sorted values.",
        minimum: 0
    );

    public static readonly ChoiceParameter Center = MethodParameter.Choice(
        "center",
        ParameterScope.Global,
        "mean",
        ["mean", "median"],
        "The mean or the median of the values kept."
    );

    public static readonly NumberParameter Scale = MethodParameter.Number(
        "scale",
        ParameterScope.Global,
        1,
        "A factor on the result.",
        new NumberRange(0, 2)
    );

    public override void Validate(MergeInputsInfo inputs)
    {
        if (2 * inputs[Trim] >= inputs.Count)
            throw new AlloyException(
                $"trimmed_mean: trim {inputs[Trim]} leaves none of the {inputs.Count} models of tensor "
                    + $"'{inputs.TensorName}'"
            );
    }

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        int trim = inputs[Trim];
        bool median = inputs[Center] == "median";
        float scale = (float)inputs[Scale];
        var values = new float[inputs.Count];
        for (int j = 0; j < output.Length; j++)
        {
            for (int i = 0; i < values.Length; i++)
                values[i] = inputs[i][j];
            Array.Sort(values);
            var kept = values.AsSpan(trim, values.Length - 2 * trim);
            double center;
            if (median)
                center =
                    kept.Length % 2 == 1
                        ? kept[kept.Length / 2]
                        : (kept[kept.Length / 2 - 1] + (double)kept[kept.Length / 2]) / 2;
            else
            {
                double sum = 0;
                foreach (var v in kept)
                    sum += v;
                center = sum / kept.Length;
            }
            output[j] = (float)center * scale;
        }
    }
}
