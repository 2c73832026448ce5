using System.Buffers;
using Alloy.Tensors;

namespace Alloy.Methods;

/// <summary>
/// A tensor a method writes beside the merged model for one output tensor: one value per entry of the output tensor,
/// filled by <see cref="MergeMethod.Merge"/> through <see cref="MergeInputs.Side"/> chunk by chunk, like the output.
/// </summary>
public sealed class SideTensor
{
    private SideTensor(string file, string name, DType dtype, bool isPackedBits)
    {
        SidePaths.Check(file);
        File = file;
        Name = name;
        DType = dtype;
        IsPackedBits = isPackedBits;
    }

    /// <summary>
    /// Its safetensors file, relative to the output folder and inside a subfolder (e.g. "emr/task.safetensors").
    /// </summary>
    public string File { get; }

    /// <summary>Its name in that file.</summary>
    public string Name { get; }

    /// <summary>The stored dtype: U8 for packed bits, else the float dtype the values are rounded to.</summary>
    public DType DType { get; }

    /// <summary>
    /// One bit per entry (value ≠ 0), packed along the last axis as <see cref="PackedBits"/> describes.
    /// </summary>
    public bool IsPackedBits { get; }

    /// <summary>A boolean mask stored as packed bits.</summary>
    public static SideTensor Bits(string file, string name) => new(file, name, DType.U8, isPackedBits: true);

    /// <summary>Values rounded once to a float dtype, as the merged tensor is.</summary>
    public static SideTensor Values(string file, string name, DType dtype) =>
        dtype.IsFloat()
            ? new(file, name, dtype, isPackedBits: false)
            : throw new ArgumentException($"side tensor '{name}': {dtype} is not a float dtype", nameof(dtype));

    /// <summary>The stored shape for an output tensor of <paramref name="outputShape"/>.</summary>
    public long[] StoredShape(long[] outputShape) => IsPackedBits ? PackedBits.Shape(outputShape) : outputShape;

    /// <summary>Bytes per entry while a chunk is in flight: the float32 value and (at most) its encoding.</summary>
    internal int WorkingBytesPerEntry => 4 + (IsPackedBits ? 1 : DType.Size());
}

/// <summary>
/// What a method writes beside the model for one output tensor: side tensors, and how many exact totals it sums over
/// the tensor.
/// </summary>
public sealed record SideOutputs(IReadOnlyList<SideTensor> Tensors, int Totals)
{
    /// <summary>Working memory of a work item of <paramref name="count"/> entries, for the executor's budget.</summary>
    public long WorkingBytes(int count) => Tensors.Sum(t => (long)count * t.WorkingBytesPerEntry);
}

/// <summary>
/// One output tensor's totals, complete (every chunk added), for <see cref="SideOutputPlan.Finish"/>.
/// </summary>
/// <param name="Elements">The tensor's number of entries (for means).</param>
public sealed record TensorTotals(MergeInputsInfo Tensor, long Elements, IReadOnlyList<double> Values);

/// <summary>
/// A small text file written beside the model after the last tensor, relative to the output folder and inside a
/// subfolder.
/// </summary>
public sealed record SideFile(string Path, string Text);

/// <summary>
/// A method's side outputs for a whole plan: for each tensor given to <see cref="MergeMethod.PlanSideOutputs"/>, its
/// <see cref="SideOutputs"/> (or null), and how the tensors' totals — passed in plan order, for the tensors that
/// declared some — become files once the last tensor is written.
/// </summary>
public sealed record SideOutputPlan(
    IReadOnlyList<SideOutputs?> Tensors,
    Func<IReadOnlyList<TensorTotals>, IReadOnlyList<SideFile>> Finish
);

/// <summary>
/// One work item's side values, filled by the method: each side tensor's values for the item's entries (zero until
/// written) and the item's part of each total. Buffers are pooled; the executor disposes it once written.
/// </summary>
public sealed class SideValues : IDisposable
{
    private readonly float[][] _values;
    private readonly ExactSum[] _totals;

    public SideValues(SideOutputs outputs, int length)
    {
        Outputs = outputs;
        Length = length;
        _values = outputs.Tensors.Select(_ => ArrayPool<float>.Shared.Rent(length)).ToArray();
        foreach (var buffer in _values)
            buffer.AsSpan(0, length).Clear();
        _totals = Enumerable.Range(0, outputs.Totals).Select(_ => new ExactSum()).ToArray();
    }

    public SideOutputs Outputs { get; }

    /// <summary>Entries in this work item (the length of every <see cref="Tensor"/> span).</summary>
    public int Length { get; }

    /// <summary>Side tensor <paramref name="k"/>'s values for this work item's entries.</summary>
    public Span<float> Tensor(int k) => _values[k].AsSpan(0, Length);

    /// <summary>Total <paramref name="k"/>, to add this work item's values to.</summary>
    public ExactSum Total(int k) => _totals[k];

    internal IReadOnlyList<ExactSum> Totals => _totals;

    public void Dispose()
    {
        for (int k = 0; k < _values.Length; k++)
        {
            if (_values[k] is null)
                continue;
            ArrayPool<float>.Shared.Return(_values[k]);
            _values[k] = null!;
        }
    }
}

/// <summary>The rule for side output paths: relative, inside a subfolder of the output, never above it.</summary>
internal static class SidePaths
{
    public static void Check(string path)
    {
        var parts = path.Split('/');
        if (
            Path.IsPathRooted(path)
            || path.Contains('\\')
            || parts.Length < 2
            || parts.Any(p => p is "" or "." or "..")
        )
            throw new ArgumentException(
                $"side output path '{path}' must be relative, '/'-separated and inside a subfolder of the output",
                nameof(path)
            );
    }
}
