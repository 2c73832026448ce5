namespace Alloy.Methods.TaskVectors;

/// <summary>
/// Model Breadcrumbs (Davari and Belilovsky, ECCV 2024): drop each task vector's largest and smallest magnitudes, add
/// the weighted sum.
/// </summary>
public sealed class Breadcrumbs()
    : TaskVectorMethod(
        new(
            "breadcrumbs",
            "Model Breadcrumbs",
            "Drops each task vector's outliers and smallest entries, adds the weighted sum."
        )
        {
            Paper = "https://arxiv.org/abs/2312.06795",
        },
        new(Sparsifier.MagnitudeOutliers, SignConsensus: false, DefaultNormalize: false, DefaultRescale: false)
    );
