using System.Numerics.Tensors;
using Alloy.Checkpoints;
using Alloy.Tensors;

namespace Alloy.Methods.DataAware;

/// <summary>
/// Concrete subspace learning (Tang et al., 2023, arXiv 2312.06173, FusionBench's <c>concrete_subspace</c>): a mask
/// over the task vectors' coordinates, shared by every task, learnt without labels through a Concrete (relaxed
/// Bernoulli) relaxation so that the merged model's next-token predictions on each task's prompts become confident;
/// then task arithmetic (θ0 + Σ_t λ_t m ⊙ τ_t) or AdaMerging inside that subspace. The learning runs in Alloy.Runtime
/// before the merge (<see cref="IMergeLearner.LearnSubspace"/>), which writes the mask beside the model
/// (<see cref="MaskFileName"/>); <c>mask:</c> merges with such a file instead of learning. This class is the merge
/// with a given mask (none: every coordinate, plain task arithmetic) and given λ.
/// </summary>
public sealed class ConcreteSubspace()
    : MergeMethod(
        new(
            "concrete_subspace",
            "Concrete subspace",
            "Task arithmetic or AdaMerging inside a shared mask of the task vectors learnt by entropy minimisation."
        )
        {
            Paper = "https://arxiv.org/abs/2312.06173",
            BaseModel = BaseModelUse.Required,
            EmbeddingShapes = EmbeddingShapeRule.TruncateToBase,
            SkipsMismatchedInputs = true,
            Parameters =
            [
                Lambda,
                AdaMerging.Data,
                Mask,
                Inside,
                Steps,
                LearningRate,
                Temperature,
                AdaMerging.BatchSize,
                AdaMerging.Granularity,
                AdaMergingSteps,
                AdaMergingLearningRate,
                AdaMerging.Lambdas,
            ],
            Statistics = new(StatisticsFile.ConcreteMask, StatisticShape.SameAsTensor, Mask),
        }
    )
{
    /// <summary>The mask's file beside a merged model.</summary>
    public const string MaskFileName = "concrete_mask.safetensors";

    public static readonly NumberParameter Lambda = MethodParameter.Number(
        AdaMerging.Lambda.Name,
        ParameterScope.PerModel,
        0.3,
        "The model's coefficient (FusionBench's scaling_factor 0.3); with inside: adamerging, where learning starts.",
        NumberRange.Fraction
    );

    public static readonly PathParameter Mask = MethodParameter.Path(
        "mask",
        ParameterScope.Global,
        "A concrete_mask.safetensors from an earlier run: merge inside it instead of learning one.",
        required: false
    );

    public static readonly ChoiceParameter Inside = MethodParameter.Choice(
        "inside",
        ParameterScope.Global,
        "task_arithmetic",
        ["task_arithmetic", "adamerging"],
        "What merges inside the subspace: task arithmetic with the models' lambda, or AdaMerging's learnt λ."
    );

    public static readonly IntegerParameter Steps = MethodParameter.Integer(
        "steps",
        ParameterScope.Global,
        2000,
        "Adam steps learning the mask (FusionBench: 2000 with task arithmetic, 1000 with AdaMerging).",
        minimum: 1
    );

    public static readonly NumberParameter LearningRate = MethodParameter.Number(
        "learning_rate",
        ParameterScope.Global,
        1e-3,
        "Adam's learning rate for the mask's logits.",
        NumberRange.Positive
    );

    public static readonly NumberParameter Temperature = MethodParameter.Number(
        "temperature",
        ParameterScope.Global,
        0.5,
        "The Concrete relaxation's temperature.",
        NumberRange.Positive
    );

    public static readonly IntegerParameter AdaMergingSteps = MethodParameter.Integer(
        "adamerging_steps",
        ParameterScope.Global,
        1000,
        "With inside: adamerging, its Adam steps inside the learnt mask.",
        minimum: 1
    );

    public static readonly NumberParameter AdaMergingLearningRate = MethodParameter.Number(
        "adamerging_learning_rate",
        ParameterScope.Global,
        1e-3,
        "With inside: adamerging, its learning rate.",
        NumberRange.Positive
    );

    /// <summary>One task vector at a time.</summary>
    public override int ScratchBuffers(int inputCount) => 1;

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        int[] models = InputRules.FineTunesOrCopyBase(inputs, output);
        if (models.Length == 0)
            return;
        var @base = inputs[inputs.BaseIndex];
        output.Clear();
        // Σ_t λ_t τ_t, then ⊙ m (the mask is the same for every model), then + base.
        var delta = BufferPool<float>.Rent(output.Length);
        try
        {
            var tau = delta.AsSpan(0, output.Length);
            foreach (int m in models)
            {
                TensorPrimitives.Subtract(inputs[m], @base, tau);
                TensorPrimitives.MultiplyAdd(tau, (float)inputs[Lambda, m], output, output);
            }
        }
        finally
        {
            BufferPool<float>.Return(delta);
        }
        if (inputs.HasStatistics)
        {
            var mask = inputs.Statistic(inputs.BaseIndex);
            foreach (float m in mask)
                if (!(m >= 0) || float.IsInfinity(m))
                    throw new AlloyException(
                        $"concrete_subspace: the mask has {m} in tensor '{inputs.TensorName}'; a mask value is a "
                            + "finite non-negative number"
                    );
            TensorPrimitives.Multiply(output, mask, output);
        }
        TensorPrimitives.Add(output, @base, output);
    }
}
