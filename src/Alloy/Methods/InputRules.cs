namespace Alloy.Methods;

/// <summary>
/// Which of a tensor's inputs are the base and the fine-tunes, and checks of how many there are, with one-line errors
/// naming the method, tensor, inputs and rule.
/// </summary>
public static class InputRules
{
    /// <summary>
    /// An error saying the tensor's inputs break <paramref name="rule"/> (a sentence such as "slerp needs …").
    /// </summary>
    public static AlloyException Refuse(MergeInputsInfo inputs, string method, string rule) =>
        new(
            $"{method}: tensor '{inputs.TensorName}' has {inputs.Count} input{(inputs.Count == 1 ? "" : "s")} "
                + $"({string.Join(", ", inputs.ModelNames)}); {rule}"
        );

    /// <summary>
    /// The base and exactly one other model; the base alone also passes (mergekit copies a lone input through, e.g.
    /// a slice whose only source is the base).
    /// </summary>
    public static void BaseAndOneOther(MergeInputsInfo inputs, string method)
    {
        if (inputs.Count == 1 && inputs.BaseIndex == 0)
            return;
        if (inputs.Count != 2 || inputs.BaseIndex < 0)
            throw Refuse(inputs, method, $"{method} needs exactly two models, one of them base_model");
    }

    /// <summary>The index of the input that is not the base, for methods taking the base and one other model.</summary>
    public static int Other(MergeInputsInfo inputs) => inputs.BaseIndex == 0 ? 1 : 0;

    /// <summary>The inputs other than the base, in input order.</summary>
    public static int[] NonBase(MergeInputsInfo inputs) =>
        Enumerable.Range(0, inputs.Count).Where(i => i != inputs.BaseIndex).ToArray();

    /// <summary>
    /// The task vectors' inputs (all but the base); when there are none (a slice whose only source is the base), copies
    /// the base to <paramref name="output"/> and returns an empty array, so the method has nothing left to do.
    /// </summary>
    public static int[] FineTunesOrCopyBase(MergeInputs inputs, Span<float> output)
    {
        int[] models = NonBase(inputs);
        if (models.Length == 0)
            inputs[inputs.BaseIndex].CopyTo(output);
        return models;
    }
}
