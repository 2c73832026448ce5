namespace Alloy.LinearAlgebra;

/// <summary>
/// Linear algebra in C# alone, used when libopenblas.so.0 is absent: a blocked, vectorized GEMM and a one-sided
/// Jacobi SVD. Slower than OpenBLAS for large matrices (figures in docs/design.md) but equally accurate.
/// </summary>
internal sealed class ManagedBackend : DenseBackend
{
    private readonly bool _parallel;

    public static ManagedBackend Instance { get; } = new(parallel: true);

    private static readonly ManagedBackend s_sequential = new(parallel: false);

    private ManagedBackend(bool parallel) => _parallel = parallel;

    public override string Name => "managed";

    public override DenseBackend SingleThreaded => s_sequential;

    public override void Gemm(
        bool transA,
        bool transB,
        int m,
        int n,
        int k,
        float alpha,
        ReadOnlySpan<float> a,
        int lda,
        ReadOnlySpan<float> b,
        int ldb,
        float beta,
        Span<float> c,
        int ldc
    )
    {
        CheckGemm(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc);
        ManagedGemm.Run(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, _parallel);
    }

    public override void Svd(ReadOnlySpan<float> a, int m, int n, Span<float> u, Span<float> s, Span<float> vt)
    {
        CheckSvd(a, m, n, u.Length, s.Length, vt.Length);
        JacobiSvd.Run(a, m, n, u, s, vt);
    }
}
