using System.Buffers;

namespace Alloy.Tensors;

/// <summary>
/// Working buffers for merges. Small ones come from the shared pool, which caches a buffer per thread; large ones
/// (a whole tensor, a Gram matrix) from a pool without per-thread caches that keeps at most four of each size, since a
/// large buffer cached on each of the thread pool's many threads would hold gigabytes no work is using (measured:
/// RegMean's peak memory doubled on two threads).
/// </summary>
public static class BufferPool<T>
{
    /// <summary>Elements from which a buffer counts as large.</summary>
    public const int LargeLength = 1 << 20;

    private static readonly ArrayPool<T> s_large = ArrayPool<T>.Create(1 << 30, maxArraysPerBucket: 4);

    /// <summary>A buffer of at least <paramref name="length"/> elements, with arbitrary contents.</summary>
    public static T[] Rent(int length) =>
        length < LargeLength ? ArrayPool<T>.Shared.Rent(length) : s_large.Rent(length);

    public static void Return(T[] array)
    {
        if (array.Length < LargeLength)
            ArrayPool<T>.Shared.Return(array);
        else
            s_large.Return(array);
    }
}
