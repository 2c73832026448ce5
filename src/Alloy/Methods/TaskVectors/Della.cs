namespace Alloy.Methods.TaskVectors;

/// <summary>
/// DELLA-Merging (Deep et al., 2024): drop entries with probabilities that fall with magnitude rank (MagPrune),
/// rescale, elect signs, merge.
/// </summary>
public sealed class Della()
    : TaskVectorMethod(
        new(
            "della",
            "DELLA",
            "Drops entries with probabilities that fall with magnitude rank, rescales, elects signs, merges."
        )
        {
            Paper = "https://arxiv.org/abs/2406.11617",
        },
        new(Sparsifier.Della, SignConsensus: true, DefaultNormalize: true, DefaultRescale: true)
    );
