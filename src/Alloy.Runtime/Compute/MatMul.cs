using System.Numerics.Tensors;

namespace Alloy.Runtime.Compute;

/// <summary>
/// Matrix products for the runtime, through <see cref="Alloy.LinearAlgebra.DenseBackend.Gemm"/> on a grid of output
/// tiles computed in parallel. OpenBLAS runs one thread per call (for reproducible sums), so the runtime parallelises
/// by tiles itself. The grid depends only on the shape: each output element is computed by the same call with the
/// same operands whatever the thread count, so results are identical on 1 or 64 threads.
/// </summary>
public static class MatMul
{
    /// <summary>Tile widths are multiples of this many columns (whole kernel panels for either backend).</summary>
    internal const int ColumnQuantum = 64;

    /// <summary>Row tiles hold at most this many rows.</summary>
    internal const int RowTile = 512;

    /// <summary>
    /// Multiply-adds a tile should have at least: below ~0.1 ms of work, splitting costs more than it saves.
    /// </summary>
    internal const long TileWork = 1L << 19;

    /// <summary>
    /// A linear layer over <paramref name="rows"/> rows: y = x·Wᵀ + bias (+ y when <paramref name="accumulate"/>),
    /// with x rows × in, W out × in (Hugging Face's layout), y rows × out, all row-major and contiguous.
    /// </summary>
    public static void Linear(
        ComputeContext context,
        float[] x,
        int rows,
        float[] weight,
        int inFeatures,
        int outFeatures,
        float[]? bias,
        float[] y,
        bool accumulate = false,
        int weightOffset = 0
    )
    {
        Multiply(
            context,
            false,
            true,
            rows,
            outFeatures,
            inFeatures,
            x,
            inFeatures,
            weight,
            inFeatures,
            y,
            outFeatures,
            accumulate ? 1f : 0f,
            bias,
            bOffset: weightOffset
        );
    }

    /// <summary>
    /// C = op(A)·op(B) + β·C (+ a bias added to every row of C), with
    /// <see cref="Alloy.LinearAlgebra.DenseBackend.Gemm"/>'s conventions (row-major, leading dimensions), computed tile
    /// by tile in parallel. The offsets say where each matrix starts in its array (one expert of a fused stack).
    /// </summary>
    public static void Multiply(
        ComputeContext context,
        bool transA,
        bool transB,
        int m,
        int n,
        int k,
        float[] a,
        int lda,
        float[] b,
        int ldb,
        float[] c,
        int ldc,
        float beta = 0,
        float[]? bias = null,
        int aOffset = 0,
        int bOffset = 0,
        int cOffset = 0
    )
    {
        if (m == 0 || n == 0)
            return;
        var grid = Grid.For(m, n, k);
        var backend = context.Backend;
        context.For(grid.Count, t =>
        {
            var (r0, r1, c0, c1) = grid.Tile(t);
            backend.Gemm(
                transA,
                transB,
                r1 - r0,
                c1 - c0,
                k,
                1f,
                transA ? a.AsSpan(aOffset + r0) : a.AsSpan(aOffset + r0 * lda),
                lda,
                transB ? b.AsSpan(bOffset + c0 * ldb) : b.AsSpan(bOffset + c0),
                ldb,
                beta,
                c.AsSpan(cOffset + r0 * ldc + c0),
                ldc
            );
            if (bias is null)
                return;
            var biasPart = bias.AsSpan(c0, c1 - c0);
            for (int r = r0; r < r1; r++)
            {
                var row = c.AsSpan(cOffset + r * ldc + c0, c1 - c0);
                TensorPrimitives.Add(row, biasPart, row);
            }
        });
    }

    /// <summary>How an m × n product is cut into tiles: a function of (m, n, k) only.</summary>
    internal readonly record struct Grid(
        int Rows,
        int Columns,
        int RowTiles,
        int RowsPerTile,
        int ColumnTiles,
        int ColumnsPerTile
    )
    {
        public int Count => RowTiles * ColumnTiles;

        public static Grid For(int m, int n, int k)
        {
            int rowTiles = (m + RowTile - 1) / RowTile;
            int rowsPerTile = (m + rowTiles - 1) / rowTiles;
            rowTiles = (m + rowsPerTile - 1) / rowsPerTile;
            long work = (long)rowsPerTile * n * Math.Max(1, k);
            int maxColumnTiles = (n + ColumnQuantum - 1) / ColumnQuantum;
            int columnTiles = (int)Math.Clamp(work / TileWork, 1, maxColumnTiles);
            int columnsPerTile =
                ((n + columnTiles - 1) / columnTiles + ColumnQuantum - 1) / ColumnQuantum * ColumnQuantum;
            columnTiles = (n + columnsPerTile - 1) / columnsPerTile;
            return new Grid(m, n, rowTiles, rowsPerTile, columnTiles, columnsPerTile);
        }

        public (int R0, int R1, int C0, int C1) Tile(int index)
        {
            int row = index / ColumnTiles,
                column = index % ColumnTiles;
            int r0 = row * RowsPerTile,
                c0 = column * ColumnsPerTile;
            return (r0, Math.Min(Rows, r0 + RowsPerTile), c0, Math.Min(Columns, c0 + ColumnsPerTile));
        }
    }
}
