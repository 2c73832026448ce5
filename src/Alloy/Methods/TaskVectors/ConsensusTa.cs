namespace Alloy.Methods.TaskVectors;

/// <summary>
/// Consensus merging (Wang et al., ICML 2024) over task arithmetic: keep the entries of the combined task vector that
/// at least k tasks' TALL masks select.
/// </summary>
public sealed class ConsensusTa()
    : TaskVectorMethod(
        new(
            "consensus_ta",
            "Consensus Task Arithmetic",
            "Task arithmetic keeping the entries that at least k tasks' TALL masks select."
        )
        {
            Paper = "https://arxiv.org/abs/2405.07813",
        },
        new(null, SignConsensus: false, DefaultNormalize: false, DefaultRescale: false, TallConsensus: true)
    );
