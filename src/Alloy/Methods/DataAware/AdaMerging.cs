using System.Numerics.Tensors;
using Alloy.Methods.TaskVectors;

namespace Alloy.Methods.DataAware;

/// <summary>
/// AdaMerging (Yang et al., ICLR 2024): θ = θ0 + Σ_t λ_t τ_t with coefficients λ ∈ [0, 1] learnt without labels, by
/// minimising the entropy of the merged model's next-token predictions after each task's prompts (<c>data:</c>), per
/// task or per task and tensor (<c>granularity</c>). With <c>sparsify: ties</c> (AdaMerging++) each τ_t is first
/// trimmed to its largest <c>density</c> magnitudes and kept only where it agrees with the sign of the trimmed task
/// vectors' sum (unweighted, so the learnt λ do not move the election). The learning runs in Alloy.Runtime before the
/// merge (<see cref="IMergeLearner"/>), which writes the λ it found to <c>adamerging.json</c> beside the model;
/// <c>lambdas:</c> merges with such a file instead of learning. This class is the merge with given λ: the learnt
/// values reach it as each model's <c>lambda</c>, per tensor.
/// </summary>
public sealed class AdaMerging()
    : MergeMethod(
        new("adamerging", "AdaMerging", "Task arithmetic with coefficients learnt by entropy minimisation on prompts.")
        {
            Paper = "https://arxiv.org/abs/2310.02575",
            BaseModel = BaseModelUse.Required,
            EmbeddingShapes = EmbeddingShapeRule.TruncateToBase,
            SkipsMismatchedInputs = true,
            Parameters = [Lambda, Data, Lambdas, Granularity, Sparsify, Density, Steps, LearningRate, BatchSize],
        }
    )
{
    public static readonly NumberParameter Lambda = MethodParameter.Number(
        "lambda",
        ParameterScope.PerModel,
        0.3,
        "The model's coefficient: where learning starts (the reference's 0.3), replaced by the learnt value.",
        NumberRange.Fraction
    );

    public static readonly PathParameter Data = MethodParameter.Path(
        "data",
        ParameterScope.PerModel,
        "Unlabeled prompts of the model's task (.txt lines, or .jsonl \"prompt\" or \"text\"), for learning.",
        required: false
    );

    public static readonly PathParameter Lambdas = MethodParameter.Path(
        "lambdas",
        ParameterScope.Global,
        "An adamerging.json from an earlier run: merge with its coefficients instead of learning.",
        required: false
    );

    public static readonly ChoiceParameter Granularity = MethodParameter.Choice(
        "granularity",
        ParameterScope.Global,
        "layer",
        ["task", "layer"],
        "One coefficient per model (task), or per model and tensor (layer, the reference's layer-wise AdaMerging)."
    );

    public static readonly ChoiceParameter Sparsify = MethodParameter.Choice(
        "sparsify",
        ParameterScope.Global,
        "none",
        ["none", "ties"],
        "ties: trim and sign-elect the task vectors first (AdaMerging++)."
    );

    public static readonly NumberParameter Density = MethodParameter.Number(
        "density",
        ParameterScope.Global,
        0.2,
        "With sparsify: ties, the fraction of each task vector's entries kept (by magnitude, per tensor).",
        new NumberRange(0, 1, MinimumOpen: true)
    );

    public static readonly IntegerParameter Steps = MethodParameter.Integer(
        "steps",
        ParameterScope.Global,
        500,
        "Adam steps of learning.",
        minimum: 1
    );

    public static readonly NumberParameter LearningRate = MethodParameter.Number(
        "learning_rate",
        ParameterScope.Global,
        1e-3,
        "Adam's learning rate for the coefficients.",
        NumberRange.Positive
    );

    public static readonly IntegerParameter BatchSize = MethodParameter.Integer(
        "batch_size",
        ParameterScope.Global,
        16,
        "Prompts of each task per step.",
        minimum: 1
    );

    public override ChunkPlan? Chunking(MergeInputsInfo inputs, long[] shape) =>
        inputs[Sparsify] == "none" ? ChunkPlan.Elementwise : null;

    /// <summary>With ties: every task vector at once, and the elected signs.</summary>
    public override int ScratchBuffers(int inputCount) => inputCount + 1;

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        int[] models = InputRules.FineTunesOrCopyBase(inputs, output);
        if (models.Length == 0)
            return;
        var @base = inputs[inputs.BaseIndex];
        var deltas = TaskVectorsOf(inputs, models, output.Length);
        output.Clear();
        for (int m = 0; m < models.Length; m++)
            TensorPrimitives.MultiplyAdd(
                deltas[m].AsSpan(0, output.Length),
                (float)inputs[Lambda, models[m]],
                output,
                output
            );
        TensorPrimitives.Add(output, @base, output);
    }

    /// <summary>Each fine-tune's task vector, trimmed and sign-elected with ties (AdaMerging++).</summary>
    private static float[][] TaskVectorsOf(MergeInputs inputs, int[] models, int n)
    {
        var deltas = new float[models.Length][];
        for (int m = 0; m < models.Length; m++)
        {
            deltas[m] = new float[n];
            TensorPrimitives.Subtract(inputs[models[m]], inputs[inputs.BaseIndex], deltas[m]);
        }
        if (inputs[Sparsify] == "none")
            return deltas;
        foreach (var delta in deltas)
            TaskVectors.Sparsify.Magnitude(delta, inputs[Density]);
        var signs = new float[n];
        SignConsensus.Elect(deltas, [.. models.Select(_ => 1.0)], byCount: false, signs);
        foreach (var delta in deltas)
            for (int j = 0; j < n; j++)
                if (delta[j] * signs[j] <= 0)
                    delta[j] = 0;
        return deltas;
    }
}
