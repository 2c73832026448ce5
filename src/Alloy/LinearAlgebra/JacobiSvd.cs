using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Alloy.LinearAlgebra;

/// <summary>
/// Thin SVD by one-sided (Hestenes) Jacobi: plane rotations orthogonalise the r = min(m, n) vectors of the longer
/// side (A's columns when m ≥ n, else its rows) while the same rotations accumulate the other side's singular
/// vectors. Accurate (each rotation is backward stable; small singular values keep high relative accuracy) and
/// simple; the pairs of each round are disjoint (round-robin order), so they are rotated in parallel and the result
/// does not depend on the thread count. Norms and inner products are accumulated in double.
/// </summary>
internal static class JacobiSvd
{
    private const int MaxSweeps = 60;

    /// <summary>Below this many doubles in the vectors, rotating blocks in parallel costs more than it saves.</summary>
    private const long ParallelWork = 1 << 16;

    /// <summary>
    /// Bytes of vectors (and their rows of W) per block: two blocks fit in a typical 512 KiB–1 MiB L2 cache.
    /// </summary>
    private const long BlockBytes = 256 << 10;

    public static void Run(ReadOnlySpan<float> a, int m, int n, Span<float> u, Span<float> s, Span<float> vt)
    {
        int r = Math.Min(m, n),
            len = Math.Max(m, n);
        var x = ArrayPool<double>.Shared.Rent(checked(r * len));
        var w = ArrayPool<double>.Shared.Rent(checked(r * r));
        try
        {
            Decompose(a, m, n, u, s, vt, x, w);
        }
        finally
        {
            ArrayPool<double>.Shared.Return(x);
            ArrayPool<double>.Shared.Return(w);
        }
    }

    private static void Decompose(
        ReadOnlySpan<float> a,
        int m,
        int n,
        Span<float> u,
        Span<float> s,
        Span<float> vt,
        double[] x,
        double[] w
    )
    {
        int r = Math.Min(m, n),
            len = Math.Max(m, n);
        bool tall = m >= n;
        // x holds the vectors being orthogonalised, one per row: A's columns (tall) or rows (wide).
        if (tall)
        {
            for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                x[(long)j * len + i] = a[i * n + j];
        }
        else
        {
            for (int i = 0; i < m * n; i++)
                x[i] = a[i];
        }
        // w accumulates the rotations: row j is the j-th vector of the short side.
        w.AsSpan(0, r * r).Clear();
        for (int j = 0; j < r; j++)
            w[j * r + j] = 1;

        var solver = new Solver(x, w, r, len);
        solver.Solve();

        var sigma = new double[r];
        for (int j = 0; j < r; j++)
            sigma[j] = Math.Sqrt(Kernels.DotDouble(solver.Row(j), solver.Row(j)));
        var order = Enumerable.Range(0, r).OrderByDescending(j => sigma[j]).ThenBy(j => j).ToArray();

        // The long side's singular vectors: normalised x rows in output order; vectors of zero singular values are
        // completed to an orthonormal set, as LAPACK does.
        var left = ArrayPool<double>.Shared.Rent(r * len);
        try
        {
            WriteFactors(solver, sigma, order, left, m, n, u, s, vt);
        }
        finally
        {
            ArrayPool<double>.Shared.Return(left);
        }
    }

    /// <summary>Normalises, completes and writes out the factors in descending order of singular value.</summary>
    private static void WriteFactors(
        Solver solver,
        double[] sigma,
        int[] order,
        double[] left,
        int m,
        int n,
        Span<float> u,
        Span<float> s,
        Span<float> vt
    )
    {
        int r = Math.Min(m, n),
            len = Math.Max(m, n);
        bool tall = m >= n;
        double zero = (order.Length > 0 ? sigma[order[0]] : 0) * Math.ScaleB(1.0, -64);
        var missing = new List<int>();
        for (int q = 0; q < r; q++)
        {
            int j = order[q];
            var target = left.AsSpan(q * len, len);
            if (sigma[j] > zero)
            {
                System.Numerics.Tensors.TensorPrimitives.Multiply(solver.Row(j), 1 / sigma[j], target);
                s[q] = (float)sigma[j];
            }
            else
            {
                missing.Add(q);
                s[q] = 0;
            }
        }
        Complete(left, r, len, missing);

        for (int q = 0; q < r; q++)
        {
            int j = order[q];
            var leftRow = left.AsSpan(q * len, len);
            var rightRow = solver.RotationRow(j);
            if (tall)
            {
                for (int i = 0; i < m; i++)
                    u[i * r + q] = (float)leftRow[i];
                for (int i = 0; i < n; i++)
                    vt[q * n + i] = (float)rightRow[i];
            }
            else
            {
                for (int i = 0; i < n; i++)
                    vt[q * n + i] = (float)leftRow[i];
                for (int i = 0; i < m; i++)
                    u[i * r + q] = (float)rightRow[i];
            }
        }
    }

    /// <summary>
    /// Fills the rows listed in <paramref name="missing"/> with unit vectors orthogonal to every other row, by
    /// Gram–Schmidt (twice, for accuracy) on coordinate vectors e₀, e₁, … until one has a large enough remainder.
    /// </summary>
    private static void Complete(double[] rows, int r, int len, List<int> missing)
    {
        if (missing.Count == 0)
            return;
        var isMissing = new bool[r];
        foreach (var q in missing)
            isMissing[q] = true;
        var v = new double[len];
        int candidate = 0;
        foreach (var q in missing)
        {
            while (true)
            {
                if (candidate >= len)
                    throw new InvalidOperationException("SVD basis completion ran out of candidates");
                Array.Clear(v);
                int c = candidate++;
                v[c] = 1;
                // First pass: the projection of e_c on a row is that row's c-th entry. Rows that are zero there
                // (the common case when most of the matrix is zero) cost nothing, and if none is, e_c is already
                // orthogonal to every row and the second pass can be skipped.
                bool changed = false;
                for (int l = 0; l < r; l++)
                {
                    if (isMissing[l] || rows[l * len + c] == 0)
                        continue;
                    var row = rows.AsSpan(l * len, len);
                    double dot = row[c];
                    for (int i = 0; i < len; i++)
                        v[i] -= dot * row[i];
                    changed = true;
                }
                for (int l = 0; changed && l < r; l++)
                {
                    if (isMissing[l])
                        continue;
                    var row = rows.AsSpan(l * len, len);
                    double dot = 0;
                    for (int i = 0; i < len; i++)
                        dot += row[i] * v[i];
                    for (int i = 0; i < len; i++)
                        v[i] -= dot * row[i];
                }
                double norm = Math.Sqrt(v.Sum(t => t * t));
                // A coordinate vector keeps at least √((len − r + 1)/len) of its length for some choice; 0.5 is plenty.
                if (norm < 0.5)
                    continue;
                var target = rows.AsSpan(q * len, len);
                for (int i = 0; i < len; i++)
                    target[i] = v[i] / norm;
                isMissing[q] = false;
                break;
            }
        }
    }

    private sealed class Solver(double[] x, double[] w, int r, int len)
    {
        private readonly double[] _norms = new double[r];

        // Rotate while the cosine of the angle between two vectors exceeds this; LAPACK's sgesvj uses √len·ε too.
        private readonly double _tolerance = Math.ScaleB(1.0, -24);
        private int _rotated;

        public Span<double> Row(int j) => x.AsSpan(j * len, len);

        public Span<double> RotationRow(int j) => w.AsSpan(j * r, r);

        /// <summary>
        /// Sweeps until no pair needs a rotation. The vectors are grouped into blocks small enough that two of them
        /// (with their rows of W) stay in the core's cache: each sweep first rotates the pairs inside every block,
        /// then the pairs between blocks, the blocks meeting in round-robin order. Blocks of one round are disjoint,
        /// so they run in parallel, and the order of rotations (hence the result) does not depend on threads.
        /// </summary>
        public void Solve()
        {
            int block = (int)Math.Clamp(BlockBytes / (8L * (len + r)), 1, r);
            int blocks = (r + block - 1) / block;
            int players = blocks + (blocks & 1); // the last player, when blocks is odd, is a bye
            bool parallel = (long)r * (len + r) >= ParallelWork && blocks > 1;
            for (int sweep = 0; sweep < MaxSweeps; sweep++)
            {
                for (int j = 0; j < r; j++)
                    _norms[j] = Kernels.DotDouble(Row(j), Row(j));
                _rotated = 0;
                Run(blocks, parallel, b => Within(b, block));
                for (int round = 0; round < players - 1; round++)
                {
                    int roundCopy = round;
                    Run(players / 2, parallel, p => Between(players, roundCopy, p, block));
                }
                if (_rotated == 0)
                    return;
            }
        }

        private static void Run(int count, bool parallel, Action<int> body)
        {
            if (parallel)
                Parallel.For(0, count, body);
            else
                for (int i = 0; i < count; i++)
                    body(i);
        }

        private void Within(int b, int block)
        {
            int start = b * block,
                end = Math.Min(r, start + block);
            for (int i = start; i < end - 1; i++)
            for (int j = i + 1; j < end; j++)
                Rotate(i, j);
        }

        /// <summary>
        /// The p-th pair of blocks of a round in the circle method (player players−1 stays, the others rotate).
        /// </summary>
        private void Between(int players, int round, int p, int block)
        {
            int n1 = players - 1;
            int a = p == 0 ? n1 : (round + p) % n1;
            int b = (round - p + n1) % n1;
            if (a > b)
                (a, b) = (b, a);
            int startB = b * block;
            if (startB >= r)
                return;
            int startA = a * block,
                endA = startA + block,
                endB = Math.Min(r, startB + block);
            for (int i = startA; i < endA; i++)
            for (int j = startB; j < endB; j++)
                Rotate(i, j);
        }

        private void Rotate(int i, int j)
        {
            double alpha = _norms[i],
                beta = _norms[j];
            // A vector orthogonalised down to nothing has no direction to rotate toward.
            if (alpha <= 0 || beta <= 0)
                return;
            var xi = Row(i);
            var xj = Row(j);
            double gamma = Kernels.DotDouble(xi, xj);
            if (Math.Abs(gamma) <= _tolerance * Math.Sqrt(alpha) * Math.Sqrt(beta))
                return;
            // The rotation that zeroes the off-diagonal of [[α, γ], [γ, β]]; t is the smaller root of t² + 2ζt − 1.
            double zeta = (beta - alpha) / (2 * gamma);
            double t = (zeta >= 0 ? 1 : -1) / (Math.Abs(zeta) + Math.Sqrt(1 + zeta * zeta));
            double c = 1 / Math.Sqrt(1 + t * t),
                sn = c * t;
            Kernels.Rotate(xi, xj, c, sn);
            Kernels.Rotate(w.AsSpan(i * r, r), w.AsSpan(j * r, r), c, sn);
            // Updated, not recomputed: rounding can take a vanishing norm below zero, which must read as zero (a
            // negative one made √α·√β NaN, let a zero γ through and turned the whole factorisation into NaN).
            _norms[i] = Math.Max(alpha - t * gamma, 0);
            _norms[j] = Math.Max(beta + t * gamma, 0);
            Volatile.Write(ref _rotated, 1);
        }
    }
}

/// <summary>Small vector kernels shared by the managed linear algebra.</summary>
internal static class Kernels
{
    /// <summary>Σ xᵢ·yᵢ with a fixed summation order for a given length and vector width.</summary>
    public static double DotDouble(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        if (x.Length != y.Length)
            throw new ArgumentException("vectors differ in length");
        ref double px = ref MemoryMarshal.GetReference(x);
        ref double py = ref MemoryMarshal.GetReference(y);
        int i = 0;
        double sum = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var acc0 = Vector512<double>.Zero;
            var acc1 = Vector512<double>.Zero;
            for (; i <= x.Length - 16; i += 16)
            {
                acc0 = Vector512.FusedMultiplyAdd(
                    Vector512.LoadUnsafe(ref px, (nuint)i),
                    Vector512.LoadUnsafe(ref py, (nuint)i),
                    acc0
                );
                acc1 = Vector512.FusedMultiplyAdd(
                    Vector512.LoadUnsafe(ref px, (nuint)(i + 8)),
                    Vector512.LoadUnsafe(ref py, (nuint)(i + 8)),
                    acc1
                );
            }
            sum = Vector512.Sum(acc0 + acc1);
        }
        else
        {
            int width = Vector<double>.Count;
            var acc0 = Vector<double>.Zero;
            var acc1 = Vector<double>.Zero;
            for (; i <= x.Length - 2 * width; i += 2 * width)
            {
                acc0 = Vector.FusedMultiplyAdd(
                    Vector.LoadUnsafe(ref px, (nuint)i),
                    Vector.LoadUnsafe(ref py, (nuint)i),
                    acc0
                );
                acc1 = Vector.FusedMultiplyAdd(
                    Vector.LoadUnsafe(ref px, (nuint)(i + width)),
                    Vector.LoadUnsafe(ref py, (nuint)(i + width)),
                    acc1
                );
            }
            sum = Vector.Sum(acc0 + acc1);
        }
        for (; i < x.Length; i++)
            sum += x[i] * y[i];
        return sum;
    }

    /// <summary>(x, y) ← (c·x − s·y, s·x + c·y).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rotate(Span<double> x, Span<double> y, double c, double s)
    {
        if (x.Length != y.Length)
            throw new ArgumentException("vectors differ in length");
        int width = Vector<double>.Count,
            i = 0;
        ref double px = ref MemoryMarshal.GetReference(x);
        ref double py = ref MemoryMarshal.GetReference(y);
        if (Vector512.IsHardwareAccelerated)
        {
            var c8 = Vector512.Create(c);
            var s8 = Vector512.Create(s);
            for (; i <= x.Length - 8; i += 8)
            {
                var xv = Vector512.LoadUnsafe(ref px, (nuint)i);
                var yv = Vector512.LoadUnsafe(ref py, (nuint)i);
                (c8 * xv - s8 * yv).StoreUnsafe(ref px, (nuint)i);
                (s8 * xv + c8 * yv).StoreUnsafe(ref py, (nuint)i);
            }
        }
        var vc = new Vector<double>(c);
        var vs = new Vector<double>(s);
        for (; i <= x.Length - width; i += width)
        {
            var xv = Vector.LoadUnsafe(ref px, (nuint)i);
            var yv = Vector.LoadUnsafe(ref py, (nuint)i);
            Vector.StoreUnsafe(vc * xv - vs * yv, ref px, (nuint)i);
            Vector.StoreUnsafe(vs * xv + vc * yv, ref py, (nuint)i);
        }
        for (; i < x.Length; i++)
        {
            double xv = x[i],
                yv = y[i];
            x[i] = c * xv - s * yv;
            y[i] = s * xv + c * yv;
        }
    }
}
