namespace Alloy.Methods.TaskVectors;

/// <summary>
/// DARE (Yu et al., ICML 2024) with TIES's sign consensus: drop task-vector entries at random, rescale, elect signs,
/// merge.
/// </summary>
public sealed class DareTies()
    : TaskVectorMethod(
        new("dare_ties", "DARE TIES", "Drops task-vector entries at random, rescales, elects signs, merges.")
        {
            Paper = "https://arxiv.org/abs/2311.03099",
        },
        new(Sparsifier.Random, SignConsensus: true, DefaultNormalize: false, DefaultRescale: true)
    );
