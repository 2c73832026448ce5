using System.Text;
using Alloy.Tensors;

namespace Alloy.Checkpoints;

/// <summary>A tensor's name, element type and shape. Equality compares the shape by value.</summary>
public sealed record TensorInfo(string Name, DType DType, long[] Shape)
{
    private readonly long[] _shape = CheckShape(Shape);

    public long[] Shape
    {
        get => _shape;
        init => _shape = CheckShape(value);
    }

    /// <summary>The product of <see cref="Shape"/>; 1 for a scalar (empty shape).</summary>
    public long ElementCount => Product(_shape);

    /// <summary><see cref="ElementCount"/> × the element size.</summary>
    public long ByteLength => ElementCount * DType.Size();

    /// <summary>The product of the dimensions, or null when it does not fit a byte count of 8-byte elements.</summary>
    internal static long? TryProduct(ReadOnlySpan<long> shape)
    {
        long product = 1;
        foreach (var dim in shape)
        {
            if (dim < 0)
                return null;
            if (dim != 0 && product > long.MaxValue / 8 / dim)
                return null;
            product *= dim;
        }
        return product;
    }

    private static long Product(long[] shape)
    {
        long product = 1;
        foreach (var dim in shape)
            product *= dim;
        return product;
    }

    private static long[] CheckShape(long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        foreach (var dim in shape)
        {
            if (dim < 0)
                throw new ArgumentException(
                    $"shape [{string.Join(", ", shape)}] has a negative dimension",
                    nameof(shape)
                );
        }
        // Checked once here so ElementCount and ByteLength can never overflow.
        if (TryProduct(shape) is null)
            throw new ArgumentException($"shape [{string.Join(", ", shape)}] is too large", nameof(shape));
        return shape;
    }

    public bool Equals(TensorInfo? other) =>
        other is not null && Name == other.Name && DType == other.DType && _shape.AsSpan().SequenceEqual(other._shape);

    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(Name);
        hash.Add(DType);
        foreach (var dim in _shape)
            hash.Add(dim);
        return hash.ToHashCode();
    }

    private bool PrintMembers(StringBuilder builder)
    {
        builder.Append($"Name = {Name}, DType = {DType.SafetensorsName()}, Shape = [{string.Join(", ", _shape)}]");
        return true;
    }
}

/// <summary>Where a stored tensor's bytes are: a range of a memory-mapped file.</summary>
public sealed class StoredTensor
{
    internal StoredTensor(TensorInfo info, MappedFile file, long offset)
    {
        if (offset < 0 || offset > file.Length - info.ByteLength)
        {
            throw new ArgumentOutOfRangeException(
                nameof(offset),
                $"{file.Path}: tensor '{info.Name}' lies outside the file"
            );
        }
        Info = info;
        File = file;
        Offset = offset;
    }

    public TensorInfo Info { get; }
    public string Name => Info.Name;
    public MappedFile File { get; }

    /// <summary>The absolute offset of the tensor's first byte in <see cref="File"/>.</summary>
    public long Offset { get; }

    /// <summary>
    /// Bytes [start, start + length) of the tensor (little-endian, row-major). Tensors over 2 GiB must be read in
    /// chunks, hence the range.
    /// </summary>
    public ReadOnlySpan<byte> Bytes(long start, int length)
    {
        if (start < 0 || length < 0 || start > Info.ByteLength - length)
        {
            throw new ArgumentOutOfRangeException(
                nameof(start),
                $"tensor '{Name}': bytes [{start}, {start + length}) are outside its {Info.ByteLength} bytes"
            );
        }
        return File.Span(Offset + start, length);
    }

    /// <summary>The whole tensor as float32.</summary>
    public float[] ReadFloat32()
    {
        var values = new float[Info.ElementCount];
        ReadFloat32(0, values);
        return values;
    }

    /// <summary>
    /// Elements [start, start + destination.Length) as float32, in reads of at most 64 Mi elements (a memory map's
    /// byte ranges have int lengths).
    /// </summary>
    public void ReadFloat32(long start, Span<float> destination)
    {
        int size = Info.DType.Size();
        const int Chunk = 1 << 26;
        for (int done = 0; done < destination.Length; done += Chunk)
        {
            int count = Math.Min(Chunk, destination.Length - done);
            Tensors.TensorConvert.ToFloat32(
                Bytes((start + done) * size, count * size),
                Info.DType,
                destination.Slice(done, count)
            );
        }
    }

    public override string ToString() => $"{Name} ({File.Path} @ {Offset})";
}
