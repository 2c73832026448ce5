namespace Alloy.Methods.TaskVectors;

/// <summary>
/// DARE (Yu et al., ICML 2024): drop task-vector entries at random, rescale, add the weighted sum to the base.
/// </summary>
public sealed class DareLinear()
    : TaskVectorMethod(
        new("dare_linear", "Linear DARE", "Drops task-vector entries at random, rescales, adds the weighted sum.")
        {
            Paper = "https://arxiv.org/abs/2311.03099",
        },
        new(Sparsifier.Random, SignConsensus: false, DefaultNormalize: false, DefaultRescale: true)
    );
