using System.Numerics.Tensors;

namespace Alloy.LinearAlgebra;

/// <summary>Cholesky factorisation A = L Lᵀ of a symmetric matrix in place (L in the lower triangle); solves.</summary>
public static class Cholesky
{
    /// <summary>
    /// Factors the symmetric positive semidefinite <paramref name="a"/> [n, n] in place (L in the lower triangle; the
    /// strict upper triangle is left as it was); when it is singular, adds a ridge (1e-8 of its mean diagonal, doubled
    /// until the factorisation succeeds, at most 1 % of it) to the diagonal and returns it (0 when none was needed).
    /// A matrix with a non-finite value, a negative diagonal entry or one that needs a larger ridge is refused. A
    /// failed attempt is undone from the untouched upper triangle and a copy of the diagonal, so no copy of the matrix
    /// is held.
    /// </summary>
    public static double FactorWithRidge(double[] a, int n)
    {
        var diagonal = new double[n];
        for (int i = 0; i < n; i++)
            diagonal[i] = a[i * n + i];
        for (int i = 0; i < n * n; i++)
            if (!double.IsFinite(a[i]))
                throw new AlloyException("the matrix to factor has a value that is not a finite number");
        if (diagonal.Any(d => d < 0))
            throw new AlloyException("the matrix is not positive semidefinite (a diagonal entry is negative)");
        double meanDiagonal = diagonal.Sum() / n;
        double scale = meanDiagonal > 0 ? meanDiagonal : 1;
        double ridge = 0;
        while (!TryFactor(a, n))
        {
            ridge = ridge == 0 ? 1e-8 * scale : 2 * ridge;
            // A semidefinite matrix factors with a tiny ridge; one that needs 1 % of its diagonal is not semidefinite
            // (no Gram matrix is like that), and a ridge would only hide it.
            if (ridge > 1e-2 * scale)
                throw new AlloyException("the matrix is not positive semidefinite, so no small ridge makes it factor");
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < i; j++)
                    a[i * n + j] = a[j * n + i];
                a[i * n + i] = diagonal[i] + ridge;
            }
        }
        return ridge;
    }

    /// <summary>
    /// Left-looking, column by column: each entry below the diagonal is one dot product of two rows' leading parts
    /// (contiguous, vectorised), and the rows of one column are independent, so large columns run in parallel.
    /// </summary>
    private static bool TryFactor(double[] a, int n)
    {
        for (int j = 0; j < n; j++)
        {
            var rowJ = a.AsSpan(j * n, j);
            double d = a[j * n + j] - TensorPrimitives.Dot<double>(rowJ, rowJ);
            if (!(d > 0) || !double.IsFinite(d))
                return false;
            double l = Math.Sqrt(d);
            a[j * n + j] = l;
            int column = j;
            void Row(int i)
            {
                double dot = TensorPrimitives.Dot<double>(a.AsSpan(i * n, column), a.AsSpan(column * n, column));
                a[i * n + column] = (a[i * n + column] - dot) / l;
            }
            if ((long)(n - j) * j < ParallelWork)
                for (int i = j + 1; i < n; i++)
                    Row(i);
            else
                Parallel.For(j + 1, n, Row);
        }
        return true;
    }

    /// <summary>Multiply-adds below which a step runs on one thread.</summary>
    private const long ParallelWork = 1 << 16;

    /// <summary>
    /// Solves L Lᵀ X = B in place for B [n, m] (m right-hand sides), with L from a factorisation. The right-hand sides
    /// are independent: blocks of columns run in parallel, and each step updates a block of a row at once (contiguous,
    /// vectorised), so every column gets the same operations whatever the thread count.
    /// </summary>
    public static void Solve(double[] factor, int n, double[] b, int m)
    {
        const int Block = 128;
        int blocks = (m + Block - 1) / Block;
        void SolveBlock(int block)
        {
            int first = block * Block,
                width = Math.Min(Block, m - first);
            Span<double> Row(int i) => b.AsSpan(i * m + first, width);
            for (int i = 0; i < n; i++) // L Y = B
            {
                var row = Row(i);
                for (int k = 0; k < i; k++)
                    if (factor[i * n + k] is var l and not 0)
                        TensorPrimitives.MultiplyAdd<double>(Row(k), -l, row, row);
                TensorPrimitives.Divide<double>(row, factor[i * n + i], row);
            }
            for (int i = n - 1; i >= 0; i--) // Lᵀ X = Y
            {
                var row = Row(i);
                for (int k = i + 1; k < n; k++)
                    if (factor[k * n + i] is var l and not 0)
                        TensorPrimitives.MultiplyAdd<double>(Row(k), -l, row, row);
                TensorPrimitives.Divide<double>(row, factor[i * n + i], row);
            }
        }
        if ((long)n * n * m < ParallelWork || blocks == 1)
            for (int block = 0; block < blocks; block++)
                SolveBlock(block);
        else
            Parallel.For(0, blocks, SolveBlock);
    }
}
