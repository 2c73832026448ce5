namespace Alloy.LinearAlgebra;

/// <summary>
/// Dense float32 linear algebra on row-major matrices: the two primitives a backend provides (matrix multiply and
/// thin SVD) and the operations built on them once for every backend. <see cref="Current"/> is OpenBLAS/LAPACK when
/// Debian's libopenblas.so.0 loads, else the managed implementation (measurements in docs/design.md).
/// </summary>
public abstract class DenseBackend
{
    private static readonly Lazy<DenseBackend> s_default = new(ChooseDefault);
    private static readonly AsyncLocal<DenseBackend?> s_override = new();
    private static readonly Lazy<OpenBlasBackend?> s_openBlas = new(() =>
        Forced() == "managed" ? null : OpenBlasBackend.TryLoad()
    );

    /// <summary>
    /// Environment variable that forces a backend: "openblas", or "managed" (which also hides OpenBLAS, as if the
    /// library were absent: the way to test the fallback on a machine that has it).
    /// </summary>
    public const string EnvironmentVariable = "ALLOY_LINALG";

    public abstract string Name { get; }

    /// <summary>Name plus build details (for benchmarks and bug reports).</summary>
    public virtual string Description => Name;

    /// <summary>
    /// This backend computing each GEMM on the calling thread, for callers that run many products in parallel
    /// themselves (nested parallel loops only add scheduling). Results are the same bits as <c>this</c>'s. OpenBLAS
    /// already runs one thread per call.
    /// </summary>
    public virtual DenseBackend SingleThreaded => this;

    /// <summary>
    /// C = α·op(A)·op(B) + β·C with op(A) m×k and op(B) k×n, all row-major with leading dimensions (row strides)
    /// lda, ldb, ldc. A stored untransposed is m×k (lda ≥ k); transposed, it is stored k×m (lda ≥ m). Same for B.
    /// When β = 0, C's previous contents are ignored (NaN included), as in BLAS.
    /// </summary>
    public abstract void Gemm(
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
    );

    /// <summary>
    /// Thin SVD A = U·diag(S)·Vᵀ of the row-major m×n matrix A, with r = min(m, n): U is m×r and Vᵀ is r×n (both
    /// row-major, orthonormal columns of U and rows of Vᵀ, completed to a full orthonormal set when A is rank
    /// deficient), S holds r non-negative values in descending order. A is not modified.
    /// </summary>
    public abstract void Svd(ReadOnlySpan<float> a, int m, int n, Span<float> u, Span<float> s, Span<float> vt);

    /// <summary>The backend in use: a test's or caller's override (<see cref="Use"/>), else the default.</summary>
    public static DenseBackend Current => s_override.Value ?? s_default.Value;

    /// <summary>
    /// OpenBLAS when it loads (and <see cref="EnvironmentVariable"/> does not say "managed"), else managed.
    /// </summary>
    public static DenseBackend Default => s_default.Value;

    /// <summary>The managed backend (always available).</summary>
    public static DenseBackend Managed => ManagedBackend.Instance;

    /// <summary>
    /// The OpenBLAS backend, or null when libopenblas.so.0 cannot be loaded (or ALLOY_LINALG=managed).
    /// </summary>
    public static DenseBackend? OpenBlas => s_openBlas.Value;

    /// <summary>
    /// Uses <paramref name="backend"/> for the current logical call flow (it follows tasks started inside it) until
    /// the result is disposed; other threads are unaffected, so tests running in parallel cannot disturb each other.
    /// </summary>
    internal static IDisposable Use(DenseBackend backend)
    {
        var previous = s_override.Value;
        s_override.Value = backend;
        return new Restore(previous);
    }

    private sealed class Restore(DenseBackend? previous) : IDisposable
    {
        public void Dispose() => s_override.Value = previous;
    }

    private static string? Forced() =>
        Environment.GetEnvironmentVariable(EnvironmentVariable)?.Trim().ToLowerInvariant();

    private static DenseBackend ChooseDefault()
    {
        var forced = Forced();
        if (forced is not (null or "" or "managed" or "openblas"))
            throw new AlloyException(
                $"{EnvironmentVariable}={forced} is not a linear-algebra backend; use 'managed' or 'openblas', or "
                    + $"unset it"
            );
        var openBlas = s_openBlas.Value;
        if (forced == "openblas" && openBlas is null)
            throw new AlloyException(
                $"{EnvironmentVariable}=openblas, but libopenblas.so.0 could not be loaded; install it (apt-get "
                    + $"install libopenblas0-pthread) or unset {EnvironmentVariable}"
            );
        return (DenseBackend?)openBlas ?? ManagedBackend.Instance;
    }

    /// <summary>C = α·A·B + β·C for contiguous row-major A (m×k), B (k×n), C (m×n).</summary>
    public void Multiply(
        int m,
        int n,
        int k,
        ReadOnlySpan<float> a,
        ReadOnlySpan<float> b,
        Span<float> c,
        float alpha = 1,
        float beta = 0
    ) => Gemm(false, false, m, n, k, alpha, a, Math.Max(1, k), b, Math.Max(1, n), beta, c, Math.Max(1, n));

    /// <summary>
    /// The nearest matrix to A with orthonormal columns (m ≥ n) or rows (m &lt; n) in the Frobenius norm: the
    /// orthogonal polar factor U·Vᵀ of A's SVD. (Unique when A has full rank.)
    /// </summary>
    public void Polar(ReadOnlySpan<float> a, int m, int n, Span<float> result)
    {
        int r = Math.Min(m, n);
        CheckLength(result, (long)m * n, nameof(result));
        using var u = PooledArray.Rent((long)m * r);
        using var s = PooledArray.Rent(r);
        using var vt = PooledArray.Rent((long)r * n);
        Svd(a, m, n, u.Span, s.Span, vt.Span);
        Multiply(m, n, r, u.Span, vt.Span, result);
    }

    /// <summary>
    /// C = α·U[:, :rank]·diag(S[:rank])·Vᵀ[:rank, :] + β·C, where U is m×r and Vᵀ is r×n row-major (an SVD's factors)
    /// and C is m×n.
    /// </summary>
    public void Reconstruct(
        ReadOnlySpan<float> u,
        ReadOnlySpan<float> s,
        ReadOnlySpan<float> vt,
        int m,
        int n,
        int r,
        int rank,
        Span<float> c,
        float alpha = 1,
        float beta = 0
    )
    {
        if (rank < 0 || rank > r)
            throw new ArgumentOutOfRangeException(nameof(rank), $"rank {rank} is outside 0..{r}");
        CheckLength(u, (long)m * r, nameof(u));
        CheckLength(vt, (long)r * n, nameof(vt));
        CheckLength(c, (long)m * n, nameof(c));
        if (rank == 0)
        {
            Scale(c[..(m * n)], beta);
            return;
        }
        // Scale the kept columns of U by their singular values, then one multiply.
        using var scaled = PooledArray.Rent((long)m * rank);
        var us = scaled.Span;
        for (int i = 0; i < m; i++)
        for (int j = 0; j < rank; j++)
            us[i * rank + j] = u[i * r + j] * s[j];
        Gemm(false, false, m, n, rank, alpha, us, rank, vt, n, beta, c, n);
    }

    private static void Scale(Span<float> c, float beta)
    {
        if (beta == 0)
            c.Clear();
        else if (beta != 1)
            System.Numerics.Tensors.TensorPrimitives.Multiply(c, beta, c);
    }

    /// <summary>Checks the arguments every backend's Gemm receives, so both fail the same way.</summary>
    protected static void CheckGemm(
        bool transA,
        bool transB,
        int m,
        int n,
        int k,
        int aLength,
        int lda,
        int bLength,
        int ldb,
        int cLength,
        int ldc
    )
    {
        if (m < 0 || n < 0 || k < 0)
            throw new ArgumentOutOfRangeException(nameof(m), $"negative dimension in {m}×{k} · {k}×{n}");
        CheckStored("A", transA ? k : m, transA ? m : k, aLength, lda);
        CheckStored("B", transB ? n : k, transB ? k : n, bLength, ldb);
        CheckStored("C", m, n, cLength, ldc);
    }

    /// <summary>
    /// Checks an SVD's arguments, including that A is finite (LAPACK's behaviour on NaN varies by version).
    /// </summary>
    protected static void CheckSvd(ReadOnlySpan<float> a, int m, int n, int uLength, int sLength, int vtLength)
    {
        CheckSvdLengths(m, n, a.Length, uLength, sLength, vtLength);
        if (!AllFinite(a[..(m * n)]))
            throw new AlloyException($"cannot take the SVD of a {m}×{n} matrix that contains NaN or infinity");
    }

    /// <summary>True when no value is NaN or infinite.</summary>
    public static bool AllFinite(ReadOnlySpan<float> values)
    {
        int width = System.Numerics.Vector<float>.Count,
            i = 0;
        var bad = System.Numerics.Vector<float>.Zero;
        // x − x is 0 for finite x and NaN for NaN or ±∞; NaN ≠ NaN makes the comparison fail.
        for (; i <= values.Length - width; i += width)
        {
            var v = new System.Numerics.Vector<float>(values[i..]);
            if (!System.Numerics.Vector.EqualsAll(v - v, bad))
                return false;
        }
        for (; i < values.Length; i++)
            if (!float.IsFinite(values[i]))
                return false;
        return true;
    }

    private static void CheckSvdLengths(int m, int n, int aLength, int uLength, int sLength, int vtLength)
    {
        if (m < 1 || n < 1)
            throw new ArgumentOutOfRangeException(nameof(m), $"SVD of an empty {m}×{n} matrix");
        long r = Math.Min(m, n);
        if (aLength < (long)m * n || uLength < m * r || sLength < r || vtLength < r * n)
            throw new ArgumentException(
                $"SVD of {m}×{n}: spans too short (A {aLength}, U {uLength}, S {sLength}, Vᵀ {vtLength}; need "
                    + $"{(long)m * n}, {m * r}, {r}, {r * n})"
            );
    }

    private static void CheckStored(string name, int rows, int cols, int length, int ld)
    {
        if (ld < Math.Max(1, cols))
            throw new ArgumentException($"{name}: leading dimension {ld} is less than its {cols} columns");
        if (rows > 0 && cols > 0 && length < (long)(rows - 1) * ld + cols)
            throw new ArgumentException(
                $"{name}: {length} elements cannot hold {rows}×{cols} with leading dimension {ld}"
            );
    }

    private static void CheckLength(ReadOnlySpan<float> span, long needed, string name)
    {
        if (span.Length < needed)
            throw new ArgumentException($"{name} has {span.Length} elements; {needed} needed");
    }
}
