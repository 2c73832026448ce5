namespace Alloy.Tests.Support;

/// <summary>
/// Plain double-precision linear algebra on double[rows, cols], written for clarity rather than speed, to check the
/// float32 backends and the SVD-based methods against: cyclic one-sided Jacobi SVD, products, polar factors.
/// </summary>
public static class ReferenceLinearAlgebra
{
    public static double[,] FromRowMajor(ReadOnlySpan<float> values, int rows, int cols)
    {
        var result = new double[rows, cols];
        for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            result[i, j] = values[i * cols + j];
        return result;
    }

    public static double[] ToRowMajor(double[,] a)
    {
        int rows = a.GetLength(0),
            cols = a.GetLength(1);
        var result = new double[rows * cols];
        for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            result[i * cols + j] = a[i, j];
        return result;
    }

    public static double[,] Transpose(double[,] a)
    {
        int rows = a.GetLength(0),
            cols = a.GetLength(1);
        var result = new double[cols, rows];
        for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            result[j, i] = a[i, j];
        return result;
    }

    public static double[,] Multiply(double[,] a, double[,] b)
    {
        int m = a.GetLength(0),
            k = a.GetLength(1),
            n = b.GetLength(1);
        if (b.GetLength(0) != k)
            throw new ArgumentException("inner dimensions differ");
        var c = new double[m, n];
        for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
        {
            double sum = 0;
            for (int p = 0; p < k; p++)
                sum += a[i, p] * b[p, j];
            c[i, j] = sum;
        }
        return c;
    }

    public static double[,] Add(double[,] a, double[,] b, double scaleB = 1)
    {
        var c = (double[,])a.Clone();
        for (int i = 0; i < a.GetLength(0); i++)
        for (int j = 0; j < a.GetLength(1); j++)
            c[i, j] += scaleB * b[i, j];
        return c;
    }

    public static double[,] Scale(double[,] a, double factor) =>
        Add(new double[a.GetLength(0), a.GetLength(1)], a, factor);

    /// <summary>U[:, :rank]·diag(S[:rank])·Vᵀ[:rank, :], times a factor.</summary>
    public static double[,] Reconstruct(double[,] u, double[] s, double[,] vt, int rank, double factor = 1)
    {
        int m = u.GetLength(0),
            n = vt.GetLength(1);
        var c = new double[m, n];
        for (int q = 0; q < rank; q++)
        for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            c[i, j] += factor * u[i, q] * s[q] * vt[q, j];
        return c;
    }

    /// <summary>
    /// Thin SVD by cyclic one-sided Jacobi in double; singular vectors of zero singular values completed.
    /// </summary>
    public static (double[,] U, double[] S, double[,] Vt) Svd(double[,] a)
    {
        int m = a.GetLength(0),
            n = a.GetLength(1);
        if (m < n)
        {
            var (ut, st, vtt) = Svd(Transpose(a));
            return (Transpose(vtt), st, Transpose(ut));
        }
        var x = (double[,])a.Clone();
        var v = new double[n, n];
        for (int i = 0; i < n; i++)
            v[i, i] = 1;
        for (int sweep = 0; sweep < 100; sweep++)
        {
            bool rotated = false;
            for (int i = 0; i < n - 1; i++)
            for (int j = i + 1; j < n; j++)
            {
                double alpha = 0,
                    beta = 0,
                    gamma = 0;
                for (int k = 0; k < m; k++)
                {
                    alpha += x[k, i] * x[k, i];
                    beta += x[k, j] * x[k, j];
                    gamma += x[k, i] * x[k, j];
                }
                if (alpha == 0 || beta == 0 || Math.Abs(gamma) <= 1e-15 * Math.Sqrt(alpha * beta))
                    continue;
                rotated = true;
                double zeta = (beta - alpha) / (2 * gamma);
                double t = Math.Sign(zeta == 0 ? 1 : zeta) / (Math.Abs(zeta) + Math.Sqrt(1 + zeta * zeta));
                double c = 1 / Math.Sqrt(1 + t * t),
                    s = c * t;
                for (int k = 0; k < m; k++)
                    (x[k, i], x[k, j]) = (c * x[k, i] - s * x[k, j], s * x[k, i] + c * x[k, j]);
                for (int k = 0; k < n; k++)
                    (v[k, i], v[k, j]) = (c * v[k, i] - s * v[k, j], s * v[k, i] + c * v[k, j]);
            }
            if (!rotated)
                break;
        }
        var norms = Enumerable
            .Range(0, n)
            .Select(j => Math.Sqrt(Enumerable.Range(0, m).Sum(k => x[k, j] * x[k, j])))
            .ToArray();
        var order = Enumerable.Range(0, n).OrderByDescending(j => norms[j]).ThenBy(j => j).ToArray();
        var u = new double[m, n];
        var sv = new double[n];
        var vtOut = new double[n, n];
        double zero = norms.Max() * 1e-13;
        for (int q = 0; q < n; q++)
        {
            int j = order[q];
            sv[q] = norms[j] > zero ? norms[j] : 0;
            for (int k = 0; k < n; k++)
                vtOut[q, k] = v[k, j];
            if (sv[q] == 0)
                continue;
            for (int k = 0; k < m; k++)
                u[k, q] = x[k, j] / norms[j];
        }
        // Complete U for zero singular values with Gram–Schmidt on coordinate vectors.
        int candidate = 0;
        for (int q = 0; q < n; q++)
        {
            if (sv[q] != 0)
                continue;
            while (true)
            {
                var w = new double[m];
                w[candidate++] = 1;
                for (int pass = 0; pass < 2; pass++)
                for (int l = 0; l < n; l++)
                {
                    if (l == q || (sv[l] == 0 && l > q))
                        continue;
                    double dot = 0;
                    for (int k = 0; k < m; k++)
                        dot += u[k, l] * w[k];
                    for (int k = 0; k < m; k++)
                        w[k] -= dot * u[k, l];
                }
                double norm = Math.Sqrt(w.Sum(e => e * e));
                if (norm < 0.5)
                    continue;
                for (int k = 0; k < m; k++)
                    u[k, q] = w[k] / norm;
                break;
            }
        }
        return (u, sv, vtOut);
    }

    /// <summary>
    /// The orthogonal polar factor U·Vᵀ of A's SVD (the nearest matrix with orthonormal columns or rows).
    /// </summary>
    public static double[,] Polar(double[,] a)
    {
        var (u, _, vt) = Svd(a);
        return Multiply(u, vt);
    }

    /// <summary>Columns [from, from+count) of a matrix.</summary>
    public static double[,] Columns(double[,] a, int from, int count)
    {
        var result = new double[a.GetLength(0), count];
        for (int i = 0; i < a.GetLength(0); i++)
        for (int j = 0; j < count; j++)
            result[i, j] = a[i, from + j];
        return result;
    }

    /// <summary>Rows [from, from+count) of a matrix.</summary>
    public static double[,] Rows(double[,] a, int from, int count)
    {
        var result = new double[count, a.GetLength(1)];
        for (int i = 0; i < count; i++)
        for (int j = 0; j < a.GetLength(1); j++)
            result[i, j] = a[from + i, j];
        return result;
    }

    /// <summary>Largest |A − B| entry.</summary>
    /// <summary>√Σ a_ij².</summary>
    public static double FrobeniusNorm(double[,] a)
    {
        double sum = 0;
        foreach (double v in a)
            sum += v * v;
        return Math.Sqrt(sum);
    }

    public static double MaxDifference(double[,] a, double[,] b)
    {
        double worst = 0;
        for (int i = 0; i < a.GetLength(0); i++)
        for (int j = 0; j < a.GetLength(1); j++)
            worst = Math.Max(worst, Math.Abs(a[i, j] - b[i, j]));
        return worst;
    }

    public static double MaxAbs(double[,] a)
    {
        double worst = 0;
        foreach (var v in a)
            worst = Math.Max(worst, Math.Abs(v));
        return worst;
    }
}
