using System.Buffers;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Alloy.Methods.TaskVectors;

/// <summary>
/// Finds the k-th largest magnitude of a population by selection, not sorting: a radix select over the magnitude keys
/// (<see cref="MagnitudeCut.KeyOf"/>, 31 bits). A coarse pass counts the top 15 bits, which locates the bucket holding
/// the k-th largest; a fine pass counts the low 16 bits of the entries in that bucket, which gives it exactly.
/// </summary>
/// <remarks>
/// Memory is two fixed tables whatever the population's size (each rented on first use, so a histogram that only
/// counts one pass holds one), and counts are integers, so a population split into chunks, added in any order on any
/// thread and merged with <see cref="Add"/>, gives the same answer as one span: the per-tensor top-k, the streamed
/// statistics passes (<see cref="CutSearch"/>) and the model-wide pre-pass use the same code.
/// </remarks>
public sealed class MagnitudeHistogram : IDisposable
{
    private const int FineBits = 16;
    public const int CoarseBins = 1 << 15;
    public const int FineBins = 1 << FineBits;

    private long[]? _coarse;
    private long[]? _fine;
    private bool _disposed;

    private long[] Coarse => Table(ref _coarse, CoarseBins);
    private long[] Fine => Table(ref _fine, FineBins);

    /// <summary>Entries counted by the coarse pass.</summary>
    public long Count { get; private set; }

    /// <summary>Coarse pass: counts the magnitudes of <paramref name="values"/> (signs are ignored).</summary>
    public void AddCoarse(ReadOnlySpan<float> values)
    {
        var coarse = Coarse;
        foreach (float v in values)
            coarse[MagnitudeCut.KeyOf(v) >> FineBits]++;
        Count += values.Length;
    }

    /// <summary>Fine pass: counts the low bits of the magnitudes in <paramref name="bucket"/>.</summary>
    public void AddFine(ReadOnlySpan<float> values, int bucket)
    {
        var fine = Fine;
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            // Most entries lie outside the bucket: skip eight at a time, count the blocks that hold one entry by entry.
            ref float first = ref MemoryMarshal.GetReference(values);
            var wanted = Vector256.Create((uint)bucket);
            var signless = Vector256.Create(0x7FFF_FFFFu);
            for (; j <= values.Length - 8; j += 8)
            {
                var buckets = Vector256.ShiftRightLogical(
                    Vector256.LoadUnsafe(ref first, (nuint)j).AsUInt32() & signless,
                    FineBits
                );
                if (!Vector256.EqualsAny(buckets, wanted))
                    continue;
                for (int t = j; t < j + 8; t++)
                    CountFine(fine, values[t], bucket);
            }
        }
        for (; j < values.Length; j++)
            CountFine(fine, values[j], bucket);
    }

    private static void CountFine(long[] fine, float value, int bucket)
    {
        uint key = MagnitudeCut.KeyOf(value);
        if (key >> FineBits == (uint)bucket)
            fine[key & (FineBins - 1)]++;
    }

    /// <summary>Adds another histogram's counts (from another chunk or thread).</summary>
    public void Add(MagnitudeHistogram other)
    {
        ObjectDisposedException.ThrowIf(_disposed || other._disposed, this);
        if (other._coarse is { } otherCoarse)
        {
            var coarse = Coarse;
            for (int b = 0; b < CoarseBins; b++)
                coarse[b] += otherCoarse[b];
        }
        if (other._fine is { } otherFine)
        {
            var fine = Fine;
            for (int b = 0; b < FineBins; b++)
                fine[b] += otherFine[b];
        }
        Count += other.Count;
    }

    /// <summary>
    /// After the coarse pass: the bucket holding the k-th largest (0 &lt; k ≤ Count), and the entries above it.
    /// </summary>
    public int FindBucket(long k, out long above)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(k, Count);
        var coarse = Coarse;
        above = 0;
        for (int b = CoarseBins - 1; ; b--)
        {
            if (above + coarse[b] >= k)
                return b;
            above += coarse[b];
        }
    }

    /// <summary>
    /// After the fine pass over <paramref name="bucket"/>: the cut keeping exactly k entries, and how many entries
    /// share its key (<paramref name="equal"/> ≥ the cut's TiesKept).
    /// </summary>
    public MagnitudeCut FindCut(int bucket, long above, long k, out long equal)
    {
        var fine = Fine;
        for (int b = FineBins - 1; b >= 0; b--)
        {
            if (above + fine[b] >= k)
            {
                equal = fine[b];
                return new MagnitudeCut(((uint)bucket << FineBits) | (uint)b, k - above);
            }
            above += fine[b];
        }
        throw new InvalidOperationException(
            "the fine pass did not see the entries the coarse pass counted in this bucket"
        );
    }

    public void Dispose()
    {
        if (_coarse is not null)
            ArrayPool<long>.Shared.Return(_coarse);
        if (_fine is not null)
            ArrayPool<long>.Shared.Return(_fine);
        _coarse = _fine = null;
        _disposed = true;
    }

    private long[] Table(ref long[]? table, int length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (table is null)
        {
            table = ArrayPool<long>.Shared.Rent(length);
            Array.Clear(table, 0, length);
        }
        return table;
    }
}
