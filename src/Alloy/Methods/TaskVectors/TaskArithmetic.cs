namespace Alloy.Methods.TaskVectors;

/// <summary>
/// Task arithmetic (Ilharco et al., ICLR 2023): base + λ·Σ wᵢ·(xᵢ − base), divided by Σ wᵢ when normalize is on.
/// </summary>
public sealed class TaskArithmetic()
    : TaskVectorMethod(
        new(
            "task_arithmetic",
            "Task Arithmetic",
            "Adds the weighted sum of the task vectors, scaled by λ, to the base."
        )
        {
            Paper = "https://arxiv.org/abs/2212.04089",
        },
        new(null, SignConsensus: false, DefaultNormalize: false, DefaultRescale: false)
    );
