using Alloy.Tensors;

namespace Alloy.LinearAlgebra;

/// <summary>
/// The randomized truncated SVD of Halko, Martinsson and Tropp ("Finding structure with randomness", SIAM Review 2011,
/// algorithms 4.4 and 5.1): a Gaussian sketch Y = A·Ω of l = rank + oversampling columns, q power iterations
/// (Y = (A·Aᵀ)^q·A·Ω, orthonormalised after every product so float32 keeps the small directions), Q an orthonormal
/// basis of Y, and the exact SVD of the small l×n matrix B = Qᵀ·A, so A ≈ (Q·U_B)·S·Vᵀ.
/// </summary>
/// <remarks>
/// Every product and SVD runs on <see cref="DenseBackend.Current"/>; the sketch's draws come from a
/// <see cref="RandomStream"/>, so the result is a pure function of A and the stream. The returned values S are the
/// singular values of Qᵀ·A: each is at most the matching singular value of A, and A's residual after the rank-r
/// truncation is exactly √(‖A‖²_F − Σ_{i≤r} S_i²), because that truncation is A projected on r columns of Q·U_B.
/// </remarks>
public static class RandomizedSvd
{
    /// <summary>Columns of the sketch beyond the rank asked for (Halko et al. recommend 5–10).</summary>
    public const int DefaultOversampling = 10;

    /// <summary>Power iterations: each multiplies the decay of the spectrum the sketch sees by itself twice.</summary>
    public const int DefaultPowerIterations = 2;

    /// <summary>The columns of the sketch for <paramref name="rank"/> on an m×n matrix.</summary>
    public static int SketchSize(int rank, int m, int n, int oversampling = DefaultOversampling) =>
        Math.Min(rank + oversampling, Math.Min(m, n));

    /// <summary>
    /// The leading l = <see cref="SketchSize"/> singular triplets of the row-major m×n matrix A: U m×l and Vᵀ l×n
    /// (orthonormal columns / rows, row-major), S descending. The first <paramref name="rank"/> are the
    /// approximation; the extra ones are less accurate but still exact for Qᵀ·A.
    /// </summary>
    public static (float[] U, float[] S, float[] Vt) Compute(
        ReadOnlySpan<float> a,
        int m,
        int n,
        int rank,
        RandomStream stream,
        int oversampling = DefaultOversampling,
        int powerIterations = DefaultPowerIterations
    )
    {
        if (m < 1 || n < 1)
            throw new ArgumentOutOfRangeException(nameof(m), $"randomized SVD of an empty {m}×{n} matrix");
        if (rank < 1 || oversampling < 0 || powerIterations < 0)
            throw new ArgumentOutOfRangeException(nameof(rank), "rank ≥ 1, oversampling ≥ 0, power iterations ≥ 0");
        if (a.Length < (long)m * n)
            throw new ArgumentException($"A has {a.Length} elements; {(long)m * n} needed", nameof(a));
        var backend = DenseBackend.Current;
        int l = SketchSize(rank, m, n, oversampling);

        using var omega = PooledArray.Rent((long)n * l);
        var draws = omega.Span;
        for (int i = 0; i < draws.Length; i++)
            draws[i] = (float)stream.Normal(i);
        var q = new float[(long)m * l];
        backend.Gemm(false, false, m, l, n, 1, a, n, draws, l, 0, q, l); // Y = A·Ω
        Orthonormalize(backend, q, m, l);
        using var z = PooledArray.Rent((long)n * l);
        for (int iteration = 0; iteration < powerIterations; iteration++)
        {
            backend.Gemm(true, false, n, l, m, 1, a, n, q, l, 0, z.Span, l); // Z = Aᵀ·Q
            Orthonormalize(backend, z.Span, n, l);
            backend.Gemm(false, false, m, l, n, 1, a, n, z.Span, l, 0, q, l); // Y = A·Z
            Orthonormalize(backend, q, m, l);
        }

        using var b = PooledArray.Rent((long)l * n);
        backend.Gemm(true, false, l, n, m, 1, q, l, a, n, 0, b.Span, n); // B = Qᵀ·A
        using var ub = PooledArray.Rent((long)l * l);
        var (s, vt) = (new float[l], new float[(long)l * n]);
        backend.Svd(b.Span, l, n, ub.Span, s, vt);
        var u = new float[(long)m * l];
        backend.Multiply(m, l, l, q, ub.Span, u);
        return (u, s, vt);
    }

    /// <summary>
    /// Replaces the rows×cols matrix Y (rows ≥ cols) by an orthonormal basis of its columns: the U of its thin SVD,
    /// which stays orthonormal (completed) when Y is rank deficient, as it is when A's rank is below the sketch's.
    /// </summary>
    private static void Orthonormalize(DenseBackend backend, Span<float> y, int rows, int cols)
    {
        using var u = PooledArray.Rent((long)rows * cols);
        using var s = PooledArray.Rent(cols);
        using var vt = PooledArray.Rent((long)cols * cols);
        backend.Svd(y, rows, cols, u.Span, s.Span, vt.Span);
        u.Span.CopyTo(y);
    }
}
