using System.Buffers;
using System.Numerics.Tensors;
using Alloy.Tensors;

namespace Alloy.Methods.TaskVectors;

/// <summary>
/// The task vectors τₘ = sₘ·(xₘ − base) of one tensor's fine-tunes (every input but the base, in input order), or of
/// one chunk of it: the one holder every method that works on task vectors uses. A task vector is written a tile at a
/// time, thinned by its <see cref="TaskMask"/> when the method gives one (tiles of a thinned vector must come in
/// order), added into a sum, summed and averaged without a copy, or materialised all at once in pooled buffers for
/// methods that change them in place or read them many times (<see cref="Dispose"/> returns the buffers).
/// </summary>
public sealed class TaskVectorSet : IDisposable
{
    private readonly MergeInputs _inputs;
    private readonly float[]? _scales;
    private readonly TaskMask?[]? _masks;
    private float[][]? _materialised;
    private float[]? _tile;

    /// <param name="scales">A factor per task vector (indexed like <see cref="Models"/>), or null for 1.</param>
    /// <param name="masks">A mask per task vector (null entries keep every entry), or null for none.</param>
    public TaskVectorSet(
        MergeInputs inputs,
        IReadOnlyList<float>? scales = null,
        IReadOnlyList<TaskMask?>? masks = null
    )
    {
        _inputs = inputs;
        Models = InputRules.NonBase(inputs);
        if (scales is not null && scales.Count != Models.Length || masks is not null && masks.Count != Models.Length)
            throw new ArgumentException("one scale and one mask per task vector");
        _scales = scales?.ToArray();
        _masks = masks?.ToArray();
    }

    /// <summary>The input index of each task vector.</summary>
    public int[] Models { get; }

    public int Count => Models.Length;

    /// <summary>Entries per task vector (the chunk's length).</summary>
    public int Length => _inputs.Length;

    private float Scale(int m) => _scales?[m] ?? 1;

    private TaskMask? Mask(int m) => _masks?[m];

    /// <summary>True when task vector m is thinned by a mask.</summary>
    public bool IsThinned(int m) => Mask(m) is not null;

    /// <summary>destination = τₘ over entries [start, start + destination.Length).</summary>
    public void Write(int m, int start, Span<float> destination)
    {
        int i = Models[m];
        TensorPrimitives.Subtract(
            _inputs[i].Slice(start, destination.Length),
            _inputs[_inputs.BaseIndex].Slice(start, destination.Length),
            destination
        );
        Mask(m)?.Apply(destination, start);
        float scale = Scale(m);
        if (scale != 1)
            TensorPrimitives.Multiply(destination, scale, destination);
    }

    /// <summary>destination = τₘ (the whole chunk).</summary>
    public void Write(int m, Span<float> destination) => Write(m, 0, destination);

    /// <summary>
    /// destination += weight·τₘ over entries [start, start + destination.Length); an unthinned task vector is added as
    /// a difference, without a copy.
    /// </summary>
    public void AddTo(int m, int start, float weight, Span<float> destination)
    {
        int i = Models[m];
        if (!IsThinned(m))
        {
            SpanMath.AddScaledDifference(
                _inputs[i].Slice(start, destination.Length),
                _inputs[_inputs.BaseIndex].Slice(start, destination.Length),
                weight * Scale(m),
                destination
            );
            return;
        }
        if (_tile is null || _tile.Length < destination.Length)
        {
            if (_tile is not null)
                ArrayPool<float>.Shared.Return(_tile);
            _tile = ArrayPool<float>.Shared.Rent(destination.Length);
        }
        var tile = _tile.AsSpan(0, destination.Length);
        Write(m, start, tile);
        TensorPrimitives.MultiplyAdd(tile, weight, destination, destination);
    }

    /// <summary>destination = Σₘ τₘ, summing differences so small task vectors keep their precision.</summary>
    public void Sum(Span<float> destination)
    {
        destination.Clear();
        for (int m = 0; m < Count; m++)
            AddTo(m, 0, 1, destination);
    }

    /// <summary>destination = (1/M)·Σₘ τₘ.</summary>
    public void Mean(Span<float> destination)
    {
        Sum(destination);
        TensorPrimitives.Divide(destination, Count, destination);
    }

    /// <summary>
    /// Writes every task vector into a pooled buffer of its own, read and changed through the indexer or
    /// <see cref="Buffers"/>.
    /// </summary>
    public TaskVectorSet Materialise()
    {
        if (_materialised is not null)
            return this;
        _materialised = new float[Count][];
        for (int m = 0; m < Count; m++)
        {
            _materialised[m] = ArrayPool<float>.Shared.Rent(Length);
            Write(m, _materialised[m].AsSpan(0, Length));
        }
        return this;
    }

    /// <summary>Materialised task vector m.</summary>
    public Span<float> this[int m] => Materialised[m].AsSpan(0, Length);

    /// <summary>
    /// The materialised buffers, for primitives that take arrays (only the first <see cref="Length"/> entries count).
    /// </summary>
    public IReadOnlyList<float[]> Buffers => Materialised;

    private float[][] Materialised =>
        _materialised
        ?? throw new InvalidOperationException("the task vectors are not materialised; call Materialise first");

    public void Dispose()
    {
        foreach (var buffer in _materialised ?? [])
            if (buffer is not null)
                ArrayPool<float>.Shared.Return(buffer);
        if (_tile is not null)
            ArrayPool<float>.Shared.Return(_tile);
        _materialised = null;
        _tile = null;
    }
}
