namespace Alloy.Methods.TaskVectors;

/// <summary>
/// Consensus merging (Wang et al., ICML 2024) over TIES: keep the entries of the TIES task vector that at least k
/// tasks' TALL masks select.
/// </summary>
public sealed class ConsensusTies()
    : TaskVectorMethod(
        new("consensus_ties", "Consensus TIES", "TIES keeping the entries that at least k tasks' TALL masks select.")
        {
            Paper = "https://arxiv.org/abs/2405.07813",
        },
        new(
            Sparsifier.Magnitude,
            SignConsensus: true,
            DefaultNormalize: true,
            DefaultRescale: false,
            TallConsensus: true
        )
    );
