using Alloy.Tensors;

namespace Alloy.LinearAlgebra;

/// <summary>
/// A float buffer rented from the shared pool and returned on dispose: SVD temporaries are large and frequent.
/// </summary>
public readonly struct PooledArray : IDisposable
{
    private readonly float[] _array;

    private PooledArray(float[] array, int length)
    {
        _array = array;
        Length = length;
    }

    public static PooledArray Rent(long length)
    {
        if (length > System.Array.MaxLength)
            throw new AlloyException(
                $"a matrix buffer of {length:N0} elements exceeds the largest .NET array ({System.Array.MaxLength:N0})"
            );
        return new PooledArray(BufferPool<float>.Rent((int)length), (int)length);
    }

    public int Length { get; }

    public Span<float> Span => _array.AsSpan(0, Length);

    public float[] Array => _array;

    public void Dispose()
    {
        if (_array is not null)
            BufferPool<float>.Return(_array);
    }
}
