namespace Alloy.Methods.DataAware;

/// <summary>
/// Fisher-weighted averaging (Matena &amp; Raffel, 2022), per entry: θ = Σ_t c_t F̃_t θ_t / Σ_t c_t F̃_t, with each
/// model's diagonal Fisher floored, F̃_t = max(F_t, floor), as the reference code does. With normalisation (the
/// reference's default) c_t is the model's weight divided by the L2 norm of its whole Fisher, so a model whose Fisher
/// is larger overall (more data, sharper loss) does not outweigh the others by that alone.
/// </summary>
public static class FisherAverage
{
    /// <summary>Model t's coefficient: its weight, over its whole Fisher's L2 norm when normalising.</summary>
    public static double Coefficient(double weight, double fisherNorm, bool normalize) =>
        normalize ? weight / fisherNorm : weight;

    /// <summary>Merges entries: parameters[t] and fishers[t] are model t's values for the same entries.</summary>
    public static void Merge(
        IReadOnlyList<float[]> parameters,
        IReadOnlyList<float[]> fishers,
        IReadOnlyList<double> coefficients,
        double floor,
        Span<float> merged
    )
    {
        for (int j = 0; j < merged.Length; j++)
        {
            double numerator = 0,
                denominator = 0;
            for (int t = 0; t < parameters.Count; t++)
            {
                double weight = coefficients[t] * Math.Max(fishers[t][j], floor);
                numerator += weight * parameters[t][j];
                denominator += weight;
            }
            merged[j] = (float)(numerator / denominator);
        }
    }
}
