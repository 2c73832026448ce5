using Alloy.Alignment;
using Alloy.Checkpoints;
using Alloy.Planning;
using Alloy.Tensors;
using Alloy.Tokenizers;

namespace Alloy.Execution;

/// <summary>
/// Reads a range of a planned input's elements as float32, honouring a leading sub-matrix crop or a re-laid-out
/// embedding (rows materialised from the memory-mapped inputs as they are read).
/// </summary>
public static class TensorReader
{
    public static void ReadFloat32(PlannedInput input, long start, Span<float> destination)
    {
        if (input.Rows is { } rows)
        {
            ReadRows(rows, start, destination);
            return;
        }
        if (input.Gather is { } gather)
        {
            ReadGathered(input, gather, start, destination);
            return;
        }
        if (!input.IsCropped)
            input.Tensor.ReadFloat32(start, destination);
        else
            ReadCropped(input, start, destination);
        if (input.Lora is { } lora)
            AddLora(lora, input, start, destination);
        input.LoraBias?.Add(start, destination); // a bias is 1-D: the view's elements are the stored ones
    }

    /// <summary>
    /// Drops the memory-mapped pages holding elements [start, start + count) of an input from the process once nothing
    /// will read them soon (the data stays in the OS page cache, so a later read costs a page fault, not a disk read).
    /// Views that read elsewhere (crops, re-laid-out rows) are released with their whole tensor instead.
    /// </summary>
    public static void Release(PlannedInput input, long start, long count)
    {
        if (input.Rows is not null || input.Gather is not null || input.IsCropped)
            return;
        int size = input.Tensor.Info.DType.Size();
        input.Tensor.File.Release(input.Tensor.Offset + start * size, count * size);
    }

    /// <summary>Adds a LoRA update to elements [start, start + n) of the (possibly cropped) view.</summary>
    private static void AddLora(LoraDelta lora, PlannedInput input, long start, Span<float> destination)
    {
        long cols = input.Shape[1];
        int storedCols = checked((int)input.Tensor.Info.Shape[1]);
        long firstRow = start / cols;
        int rowCount = (int)((start + destination.Length - 1) / cols - firstRow + 1);
        var buffer = BufferPool<float>.Rent(rowCount * storedCols);
        try
        {
            var delta = buffer.AsSpan(0, rowCount * storedCols);
            delta.Clear();
            lora.AddRows(firstRow, rowCount, storedCols, delta);
            int done = 0;
            while (done < destination.Length)
            {
                long element = start + done;
                long row = element / cols,
                    col = element % cols;
                int run = (int)Math.Min(cols - col, destination.Length - done);
                var update = delta.Slice((int)((row - firstRow) * storedCols + col), run);
                System.Numerics.Tensors.TensorPrimitives.Add(
                    destination.Slice(done, run),
                    update,
                    destination.Slice(done, run)
                );
                done += run;
            }
        }
        finally
        {
            BufferPool<float>.Return(buffer);
        }
    }

    /// <summary>
    /// Elements [start, start + n) of an aligned model's tensor: each row read from its stored place, its columns
    /// picked through the column map (a planner's crop keeps the leading part of the permuted view).
    /// </summary>
    private static void ReadGathered(PlannedInput input, TensorGather gather, long start, Span<float> destination)
    {
        long cols = input.Shape.Length > 1 ? input.Shape[1] : 1;
        int storedCols = input.Tensor.Info.Shape.Length > 1 ? checked((int)input.Tensor.Info.Shape[1]) : 1;
        var buffer = BufferPool<float>.Rent(storedCols);
        try
        {
            var row = buffer.AsSpan(0, storedCols);
            int done = 0;
            while (done < destination.Length)
            {
                long element = start + done;
                long r = element / cols;
                int c = (int)(element % cols),
                    run = (int)Math.Min(cols - c, destination.Length - done);
                long source = gather.Rows is { } rows ? rows[r] : r;
                input.Tensor.ReadFloat32(source * storedCols, row);
                for (int k = 0; k < run; k++)
                    destination[done + k] = row[gather.Columns is { } columns ? columns[c + k] : c + k];
                done += run;
            }
        }
        finally
        {
            BufferPool<float>.Return(buffer);
        }
    }

    private static void ReadCropped(PlannedInput input, long start, Span<float> destination)
    {
        var info = input.Tensor.Info;
        int size = info.DType.Size();

        // Cropped 2-D input: element (r, c) of the [rows, cols] view lives at r·storedCols + c.
        long cols = input.Shape[1],
            storedCols = info.Shape[1];
        int done = 0;
        while (done < destination.Length)
        {
            long element = start + done;
            long row = element / cols,
                col = element % cols;
            int run = (int)Math.Min(cols - col, destination.Length - done);
            var bytes = input.Tensor.Bytes((row * storedCols + col) * size, run * size);
            TensorConvert.ToFloat32(bytes, info.DType, destination.Slice(done, run));
            done += run;
        }
    }

    /// <summary>Elements [start, start + destination.Length) of a re-laid-out [rows, columns] matrix.</summary>
    public static void ReadRows(RowLayout rows, long start, Span<float> destination)
    {
        long columns = rows.Columns;
        int done = 0;
        while (done < destination.Length)
        {
            long element = start + done;
            int row = (int)(element / columns);
            long column = element % columns;
            int run = (int)Math.Min(columns - column, destination.Length - done);
            ReadRowPart(rows, row, column, destination.Slice(done, run));
            done += run;
        }
    }

    private static void ReadRowPart(RowLayout rows, int row, long column, Span<float> destination)
    {
        if (rows.OwnRow(row) is { } own)
        {
            rows.Own.ReadFloat32(own * rows.Columns + column, destination);
            return;
        }
        if (rows.IsPadding(row))
        {
            rows.PaddingRow(MeanOfTokenRows).AsSpan((int)column, destination.Length).CopyTo(destination);
            return;
        }
        var terms = rows.Composite(row)!;
        if (terms is [{ Weight: 1.0 } single])
        {
            single.Tensor.ReadFloat32(single.Row * rows.Columns + column, destination);
            return;
        }
        destination.Clear();
        if (terms.Length == 0)
            return;
        // A mean of a few models' rows: accumulate in double, round once.
        var sum = BufferPool<double>.Rent(destination.Length);
        var scratch = BufferPool<float>.Rent(destination.Length);
        try
        {
            var acc = sum.AsSpan(0, destination.Length);
            acc.Clear();
            var values = scratch.AsSpan(0, destination.Length);
            foreach (var term in terms)
            {
                term.Tensor.ReadFloat32(term.Row * rows.Columns + column, values);
                for (int j = 0; j < values.Length; j++)
                    acc[j] += term.Weight * values[j];
            }
            for (int j = 0; j < acc.Length; j++)
                destination[j] = (float)acc[j];
        }
        finally
        {
            BufferPool<double>.Return(sum);
            BufferPool<float>.Return(scratch);
        }
    }

    /// <summary>
    /// The mean of a layout's token rows as laid out (mergekit's padding row), read row by row: one pass over the
    /// matrix, holding one row and a double accumulator.
    /// </summary>
    private static float[] MeanOfTokenRows(RowLayout rows)
    {
        int columns = checked((int)rows.Columns);
        var sum = new double[columns];
        var row = new float[columns];
        for (int r = 0; r < rows.Rows; r++)
        {
            if (rows.IsPadding(r))
                continue;
            ReadRowPart(rows, r, 0, row);
            for (int j = 0; j < columns; j++)
                sum[j] += row[j];
        }
        var mean = new float[columns];
        if (rows.TokenRows > 0)
            for (int j = 0; j < columns; j++)
                mean[j] = (float)(sum[j] / rows.TokenRows);
        return mean;
    }
}
