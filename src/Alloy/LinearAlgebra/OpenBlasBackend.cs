using System.Runtime.InteropServices;

namespace Alloy.LinearAlgebra;

/// <summary>
/// OpenBLAS/LAPACK through Debian's libopenblas.so.0 (package libopenblas0-pthread). That build has no LAPACKE, so the
/// Fortran symbols are called directly: column-major, arguments by reference, 32-bit integers, and a hidden string
/// length after the last argument. A row-major matrix is the column-major transpose, which the calls below exploit
/// instead of copying.
/// </summary>
internal sealed unsafe class OpenBlasBackend : DenseBackend
{
    public const string LibraryName = "libopenblas.so.0";

    private readonly delegate* unmanaged<
        byte*,
        byte*,
        int*,
        int*,
        int*,
        float*,
        float*,
        int*,
        float*,
        int*,
        float*,
        float*,
        int*,
        nint,
        nint,
        void> _sgemm;
    private readonly delegate* unmanaged<
        byte*,
        int*,
        int*,
        float*,
        int*,
        float*,
        float*,
        int*,
        float*,
        int*,
        float*,
        int*,
        int*,
        int*,
        nint,
        void> _sgesdd;

    private OpenBlasBackend(nint library, string config)
    {
        _sgemm = (delegate* unmanaged<
            byte*,
            byte*,
            int*,
            int*,
            int*,
            float*,
            float*,
            int*,
            float*,
            int*,
            float*,
            float*,
            int*,
            nint,
            nint,
            void>)
            NativeLibrary.GetExport(library, "sgemm_");
        _sgesdd = (delegate* unmanaged<
            byte*,
            int*,
            int*,
            float*,
            int*,
            float*,
            float*,
            int*,
            float*,
            int*,
            float*,
            int*,
            int*,
            int*,
            nint,
            void>)
            NativeLibrary.GetExport(library, "sgesdd_");
        Configuration = config;
    }

    public override string Name => "openblas";

    /// <summary>OpenBLAS's build description (version, kernel, threading).</summary>
    public string Configuration { get; }

    public override string Description => $"openblas: {Configuration}";

    /// <summary>The backend, or null when the library or one of its symbols is missing.</summary>
    public static OpenBlasBackend? TryLoad()
    {
        if (!NativeLibrary.TryLoad(LibraryName, out var library))
            return null;
        if (
            !NativeLibrary.TryGetExport(library, "sgemm_", out _)
            || !NativeLibrary.TryGetExport(library, "sgesdd_", out _)
        )
            return null;
        string config = "";
        if (NativeLibrary.TryGetExport(library, "openblas_get_config", out var getConfig))
            config = Marshal.PtrToStringAnsi(((delegate* unmanaged<nint>)getConfig)()) ?? "";
        // One OpenBLAS thread per call: the executor already runs one tensor per core, and OpenBLAS's threaded
        // reductions would make results depend on how many threads it happened to use.
        if (NativeLibrary.TryGetExport(library, "openblas_set_num_threads", out var setThreads))
            ((delegate* unmanaged<int, void>)setThreads)(1);
        return new OpenBlasBackend(library, config);
    }

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
        if (m == 0 || n == 0)
            return;
        // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, and a row-major matrix read column-major is
        // its transpose: so pass B first, A second, with the same transpose flags and swapped m, n.
        byte ta = transB ? (byte)'T' : (byte)'N',
            tb = transA ? (byte)'T' : (byte)'N';
        int mm = n,
            nn = m,
            kk = k,
            la = ldb,
            lb = lda,
            lc = ldc;
        fixed (
            float* pa = b,
                pb = a,
                pc = c
        )
        {
            // BLAS requires non-null pointers even when k = 0; a one-element dummy keeps it happy.
            float dummy = 0;
            _sgemm(
                &ta,
                &tb,
                &mm,
                &nn,
                &kk,
                &alpha,
                pa == null ? &dummy : pa,
                &la,
                pb == null ? &dummy : pb,
                &lb,
                &beta,
                pc,
                &lc,
                1,
                1
            );
        }
    }

    public override void Svd(ReadOnlySpan<float> a, int m, int n, Span<float> u, Span<float> s, Span<float> vt)
    {
        CheckSvd(a, m, n, u.Length, s.Length, vt.Length);
        int r = Math.Min(m, n),
            big = Math.Max(m, n);
        // The row-major m×n A is the column-major n×m Aᵀ = V·S·Uᵀ. LAPACK's "U" of Aᵀ (n×r column-major) is V, which
        // read row-major is Vᵀ (r×n); its "Vᵀ" of Aᵀ (r×m column-major) is Uᵀ, which read row-major is U (m×r).
        long workLength = 4L * r * r + 7L * r + big; // LAPACK 3.x's documented minimum for JOBZ = 'S', with margin
        using var copy = PooledArray.Rent((long)m * n); // sgesdd overwrites its input
        a[..(m * n)].CopyTo(copy.Span);
        var iwork = System.Buffers.ArrayPool<int>.Shared.Rent(8 * r);
        byte jobz = (byte)'S';
        int rows = n,
            cols = m,
            lda = n,
            ldu = n,
            ldvt = r,
            info = 0;
        fixed (
            float* pa = copy.Array,
                ps = s,
                pu = u,
                pvt = vt
        )
        fixed (int* piwork = iwork)
        {
            // Workspace query; the answer comes back as a float, which can round below the true integer for large
            // sizes, so take the larger of it (rounded up) and the documented minimum.
            float query = 0;
            int lwork = -1;
            _sgesdd(&jobz, &rows, &cols, pa, &lda, ps, pvt, &ldu, pu, &ldvt, &query, &lwork, piwork, &info, 1);
            if (info != 0)
                throw new InvalidOperationException($"sgesdd workspace query for {m}×{n} failed (info {info})");
            workLength = Math.Max(workLength, (long)Math.Ceiling(query * (1 + 1e-6)) + 16);
            if (workLength > int.MaxValue)
                throw new AlloyException(
                    $"SVD of a {m}×{n} matrix needs {workLength:N0} floats of LAPACK workspace, more than its 32-bit "
                        + $"interface allows"
                );
            lwork = (int)workLength;
            using var work = PooledArray.Rent(lwork);
            fixed (float* pwork = work.Array)
                _sgesdd(&jobz, &rows, &cols, pa, &lda, ps, pvt, &ldu, pu, &ldvt, pwork, &lwork, piwork, &info, 1);
        }
        System.Buffers.ArrayPool<int>.Shared.Return(iwork);
        if (info < 0)
            throw new InvalidOperationException($"sgesdd rejected argument {-info} for a {m}×{n} matrix");
        if (info > 0)
            throw new AlloyException(
                $"SVD of a {m}×{n} matrix did not converge (LAPACK sgesdd info {info}); the tensor may contain inf or "
                    + $"NaN"
            );
    }
}
