namespace Alloy.Runtime.Compute;

/// <summary>
/// A row-major float32 matrix with a fixed column count and a row count that changes from step to step. Its storage
/// only grows, so a buffer kept between forward passes stops allocating once it has seen the largest batch.
/// </summary>
public sealed class Matrix
{
    public Matrix(int columns, int rows = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(columns);
        Columns = columns;
        Data = [];
        Resize(rows);
    }

    public int Columns { get; }

    public int Rows { get; private set; }

    /// <summary>The storage: the first Rows × Columns elements are the matrix; the rest is spare capacity.</summary>
    public float[] Data { get; private set; }

    public Span<float> Span => Data.AsSpan(0, Rows * Columns);

    public Span<float> Row(int row) => Data.AsSpan(row * Columns, Columns);

    /// <summary>Sets the row count; contents are not kept when the storage has to grow.</summary>
    public Matrix Resize(int rows)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        long needed = (long)rows * Columns;
        if (needed > Array.MaxLength)
            throw new AlloyException(
                $"an activation of {rows:N0} × {Columns:N0} floats exceeds the largest .NET array; use smaller batches"
            );
        if (needed > Data.Length)
            Data = new float[(int)Math.Min(Array.MaxLength, Math.Max(needed, Data.Length * 3L / 2))];
        Rows = rows;
        return this;
    }
}
