namespace Alloy.Methods.TaskVectors;

/// <summary>
/// LiNeS (Wang et al., <i>LiNeS: Post-training Layer Scaling Prevents Forgetting and Enhances Model Merging</i>,
/// ICLR 2025, arXiv:2410.17146): the task vector of layer ℓ of L is scaled by α + β·ℓ/(L − 1), so shallow layers,
/// which hold general features, stay close to the base while deep layers take the task.
/// </summary>
public static class LayerScaling
{
    /// <summary>
    /// The factor for a tensor: α + β·ℓ/(L − 1) inside the layers (a one-layer model counts as its last layer, as
    /// gradients do), α for every tensor before or after them (embeddings, final norm, head), as the reference code
    /// scales everything outside its residual blocks.
    /// </summary>
    public static double Factor(TensorPosition position, double alpha, double beta)
    {
        if (position.Layer is not { } layer || position.LayerCount <= 0)
            return alpha;
        double depth = position.LayerCount > 1 ? layer / (double)(position.LayerCount - 1) : 1;
        return alpha + beta * depth;
    }
}
