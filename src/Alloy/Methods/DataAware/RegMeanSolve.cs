using Alloy.LinearAlgebra;
using Alloy.Tensors;

namespace Alloy.Methods.DataAware;

/// <summary>
/// RegMean's closed form for one linear layer (Jin et al., 2023): the weight that best reproduces every model's
/// outputs on its own inputs, W* = (Σ_t G̃_t)⁻¹ Σ_t G̃_t W_tᵀ, transposed back to PyTorch's [out, in] layout. G_t is
/// model t's Gram matrix of the layer's inputs, mean-normalised (XᵀX over its rows divided by the row count, as every
/// reference implementation computes it); G̃_t keeps its diagonal and scales the rest by <c>alpha</c> (1: exact
/// RegMean; 0: a per-input-feature variance-weighted average). Models are added one at a time, so only one model's
/// Gram is needed at once; G̃_t W_tᵀ is one float32 GEMM, the sums and the solve run in double.
/// </summary>
public sealed class RegMeanSolve : IDisposable
{
    private readonly int _rows,
        _cols;
    private readonly double _alpha;

    // Pooled: a large model's solves would otherwise leave hundreds of MB of garbage per tensor for the GC.
    private readonly double[] _sum; // Σ G̃_t, [cols, cols]
    private readonly double[] _right; // Σ G̃_t W_tᵀ, [cols, rows]
    private readonly float[] _product; // G_t W_tᵀ, [cols, rows]

    public RegMeanSolve(int rows, int cols, double alpha)
    {
        (_rows, _cols, _alpha) = (rows, cols, alpha);
        _sum = BufferPool<double>.Rent(checked(cols * cols));
        _right = BufferPool<double>.Rent(checked(cols * rows));
        _product = BufferPool<float>.Rent(checked(cols * rows));
        Array.Clear(_sum, 0, cols * cols);
        Array.Clear(_right, 0, cols * rows);
    }

    /// <summary>
    /// Bytes a solve of a [rows, cols] weight holds: its sums and one GEMM product.
    /// </summary>
    public static long WorkingBytes(long rows, long cols) => 8 * cols * cols + 12 * cols * rows;

    /// <summary>
    /// Adds a model: its weight ([rows, cols], row-major) and <paramref name="scale"/> times its Gram matrix ([cols,
    /// cols]); the scale turns a stored sum into the mean and applies the model's weight.
    /// </summary>
    public void Add(ReadOnlySpan<float> weight, ReadOnlySpan<float> gram, double scale)
    {
        var (rows, cols, alpha) = (_rows, _cols, _alpha);
        if (weight.Length != rows * cols || gram.Length != cols * cols)
            throw new ArgumentException($"a [{rows}, {cols}] weight needs a [{cols}, {cols}] Gram matrix");
        for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++)
            _sum[i * cols + j] += scale * (i == j ? gram[i * cols + j] : alpha * gram[i * cols + j]);
        DenseBackend.Current.Gemm(false, true, cols, rows, cols, 1, gram, cols, weight, cols, 0, _product, rows);
        // G̃ Wᵀ = alpha·G Wᵀ + (1 − alpha)·diag(G) Wᵀ.
        for (int i = 0; i < cols; i++)
        {
            double diagonal = (1 - alpha) * gram[i * cols + i];
            for (int r = 0; r < rows; r++)
                _right[i * rows + r] += scale * (alpha * _product[i * rows + r] + diagonal * weight[r * cols + i]);
        }
    }

    /// <summary>
    /// Writes the merged [rows, cols] weight. A sum of Grams that is not positive definite (an input feature no model
    /// ever saw) gets a ridge of 1e-8 times its mean diagonal, doubled until it is; the ridge used is returned.
    /// </summary>
    public double Solve(Span<float> merged)
    {
        var (rows, cols) = (_rows, _cols);
        double ridge = Cholesky.FactorWithRidge(_sum, cols);
        Cholesky.Solve(_sum, cols, _right, rows);
        for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            merged[r * cols + c] = (float)_right[c * rows + r];
        return ridge;
    }

    public void Dispose()
    {
        BufferPool<double>.Return(_sum);
        BufferPool<double>.Return(_right);
        BufferPool<float>.Return(_product);
    }
}
