namespace Alloy.Methods.TaskVectors;

/// <summary>Model Breadcrumbs with TIES's sign consensus.</summary>
public sealed class BreadcrumbsTies()
    : TaskVectorMethod(
        new("breadcrumbs_ties", "Model Breadcrumbs with TIES", "Breadcrumbs' outlier band, then TIES's sign election.")
        {
            Paper = "https://arxiv.org/abs/2312.06795",
        },
        new(Sparsifier.MagnitudeOutliers, SignConsensus: true, DefaultNormalize: false, DefaultRescale: false)
    );
