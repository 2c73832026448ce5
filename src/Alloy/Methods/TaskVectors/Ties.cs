namespace Alloy.Methods.TaskVectors;

/// <summary>
/// TIES-Merging (Yadav et al., NeurIPS 2023): trim each task vector to its largest magnitudes, elect a sign per entry,
/// merge the agreeing entries.
/// </summary>
public sealed class Ties()
    : TaskVectorMethod(
        new(
            "ties",
            "TIES",
            "Trims each task vector to its largest magnitudes, elects a sign per entry, merges the agreeing entries."
        )
        {
            Paper = "https://arxiv.org/abs/2306.01708",
        },
        new(Sparsifier.Magnitude, SignConsensus: true, DefaultNormalize: true, DefaultRescale: false)
    );
