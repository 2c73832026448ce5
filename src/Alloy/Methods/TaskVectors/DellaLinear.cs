namespace Alloy.Methods.TaskVectors;

/// <summary>DELLA's MagPrune followed by a weighted sum of the task vectors.</summary>
public sealed class DellaLinear()
    : TaskVectorMethod(
        new("della_linear", "Linear DELLA", "DELLA's ranked drop, then the weighted sum.")
        {
            Paper = "https://arxiv.org/abs/2406.11617",
        },
        new(Sparsifier.Della, SignConsensus: false, DefaultNormalize: false, DefaultRescale: true)
    );
