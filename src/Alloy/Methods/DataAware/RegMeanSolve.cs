using Alloy.LinearAlgebra;

namespace Alloy.Methods.DataAware;

/// <summary>
/// RegMean's closed form for one linear layer (Jin et al., 2023): the weight that best reproduces every model's
/// outputs on its own inputs, W* = (Σ_t G̃_t)⁻¹ Σ_t G̃_t W_tᵀ, transposed back to PyTorch's [out, in] layout. G_t is
/// model t's Gram matrix of the layer's inputs, XᵀX over its rows divided by the row count (the mean, as every
/// reference implementation computes it); G̃_t keeps its diagonal and scales the rest by <c>alpha</c> (1: exact
/// RegMean; 0: a per-input-feature variance-weighted average). Sums and the solve run in double.
/// </summary>
public static class RegMeanSolve
{
    /// <summary>
    /// The merged [rows, cols] weight from each model's weight ([rows, cols], row-major) and Gram ([cols, cols]).
    /// A sum of Grams that is not positive definite (an input feature no model ever saw) gets a ridge of 1e-8 times its
    /// mean diagonal, doubled until it is; the ridge used is returned.
    /// </summary>
    public static double Merge(
        IReadOnlyList<float[]> weights,
        IReadOnlyList<double[]> grams,
        int rows,
        int cols,
        double alpha,
        Span<float> merged
    )
    {
        if (weights.Count != grams.Count || weights.Count == 0)
            throw new ArgumentException("one Gram matrix per weight, and at least one of each");
        var sum = new double[cols * cols]; // Σ G̃_t
        var right = new double[cols * rows]; // Σ G̃_t W_tᵀ, [cols, rows]
        var shrunk = new double[cols * cols];
        for (int t = 0; t < weights.Count; t++)
        {
            var (g, w) = (grams[t], weights[t]);
            for (int i = 0; i < cols; i++)
            for (int j = 0; j < cols; j++)
                shrunk[i * cols + j] = i == j ? g[i * cols + j] : alpha * g[i * cols + j];
            for (int k = 0; k < sum.Length; k++)
                sum[k] += shrunk[k];
            for (int i = 0; i < cols; i++)
            for (int j = 0; j < cols; j++)
            {
                double gij = shrunk[i * cols + j];
                if (gij == 0)
                    continue;
                for (int r = 0; r < rows; r++)
                    right[i * rows + r] += gij * w[r * cols + j];
            }
        }
        double ridge = Cholesky.FactorWithRidge(sum, cols);
        Cholesky.Solve(sum, cols, right, rows);
        for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            merged[r * cols + c] = (float)right[c * rows + r];
        return ridge;
    }
}
