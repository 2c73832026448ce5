namespace Alloy.LinearAlgebra;

/// <summary>Cholesky factorisation A = L Lᵀ of a symmetric matrix in place (L in the lower triangle); solves.</summary>
public static class Cholesky
{
    /// <summary>
    /// Factors <paramref name="a"/> [n, n] in place; when it is not positive definite, adds a ridge (1e-8 of its mean
    /// diagonal, doubled until the factorisation succeeds) to the diagonal and returns it (0 when none was needed).
    /// </summary>
    public static double FactorWithRidge(double[] a, int n)
    {
        var original = (double[])a.Clone();
        double meanDiagonal = 0;
        for (int i = 0; i < n; i++)
            meanDiagonal += original[i * n + i] / n;
        double ridge = 0;
        while (!TryFactor(a, n))
        {
            ridge = ridge == 0 ? 1e-8 * (meanDiagonal > 0 ? meanDiagonal : 1) : 2 * ridge;
            Array.Copy(original, a, a.Length);
            for (int i = 0; i < n; i++)
                a[i * n + i] += ridge;
        }
        return ridge;
    }

    private static bool TryFactor(double[] a, int n)
    {
        for (int j = 0; j < n; j++)
        {
            double d = a[j * n + j];
            for (int k = 0; k < j; k++)
                d -= a[j * n + k] * a[j * n + k];
            if (!(d > 0) || !double.IsFinite(d))
                return false;
            double l = Math.Sqrt(d);
            a[j * n + j] = l;
            for (int i = j + 1; i < n; i++)
            {
                double s = a[i * n + j];
                for (int k = 0; k < j; k++)
                    s -= a[i * n + k] * a[j * n + k];
                a[i * n + j] = s / l;
            }
        }
        return true;
    }

    /// <summary>Solves L Lᵀ X = B in place for B [n, m] (m right-hand sides), with L from a factorisation.</summary>
    public static void Solve(double[] factor, int n, double[] b, int m)
    {
        for (int i = 0; i < n; i++) // L Y = B
        for (int c = 0; c < m; c++)
        {
            double s = b[i * m + c];
            for (int k = 0; k < i; k++)
                s -= factor[i * n + k] * b[k * m + c];
            b[i * m + c] = s / factor[i * n + i];
        }
        for (int i = n - 1; i >= 0; i--) // Lᵀ X = Y
        for (int c = 0; c < m; c++)
        {
            double s = b[i * m + c];
            for (int k = i + 1; k < n; k++)
                s -= factor[k * n + i] * b[k * m + c];
            b[i * m + c] = s / factor[i * n + i];
        }
    }
}
