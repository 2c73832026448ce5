using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Alloy.Methods.TaskVectors;

/// <summary>
/// Which entries of a population a magnitude top-k keeps: every entry whose magnitude key is above <see cref="Key"/>,
/// and, of the entries whose key equals it, the first <see cref="TiesKept"/> in order. So exactly k entries survive
/// however many share the threshold magnitude (common in bf16 task vectors).
/// </summary>
/// <remarks>
/// <b>Tie rule</b>: magnitudes are ordered by |v|, and equal magnitudes by position, the lower index counting as the
/// larger (as a stable descending sort would order them); across the tensors of a model-wide cut, by plan order, then
/// input order, then index. Keys are the float's bits without its sign, which order like |v| (NaN above infinity).
/// </remarks>
public readonly record struct MagnitudeCut(uint Key, long TiesKept)
{
    /// <summary>Keeps every entry.</summary>
    public static MagnitudeCut KeepAll { get; } = new(0, long.MaxValue);

    /// <summary>Keeps no entry (no key can exceed or equal it).</summary>
    public static MagnitudeCut KeepNone { get; } = new(uint.MaxValue, 0);

    /// <summary>The threshold magnitude.</summary>
    public float Threshold => BitConverter.UInt32BitsToSingle(Key);

    /// <summary>The magnitude key of a value: its bits without the sign bit.</summary>
    public static uint KeyOf(float value) => BitConverter.SingleToUInt32Bits(value) & 0x7FFF_FFFF;

    /// <summary>
    /// The cut that keeps the <paramref name="k"/> largest magnitudes of <paramref name="values"/> (tie rule above).
    /// </summary>
    public static MagnitudeCut TopK(ReadOnlySpan<float> values, long k)
    {
        using var search = new CutSearch(values.Length, [k]);
        while (search.Counting)
        {
            search.Count(values);
            search.EndPass();
        }
        return search.Cuts[0];
    }

    /// <summary>Zeroes every entry the cut does not keep.</summary>
    public static void Apply(Span<float> values, MagnitudeCut cut) => ApplyBand(values, cut, KeepNone);

    /// <summary>
    /// Zeroes every entry except those <paramref name="keep"/> keeps and <paramref name="drop"/> does not.
    /// </summary>
    /// <remarks>With both cuts from <see cref="TopK"/> on the same values, this keeps a band of descending
    /// ranks.</remarks>
    public static void ApplyBand(Span<float> values, MagnitudeCut keep, MagnitudeCut drop) =>
        ApplyBand(values, ref keep, ref drop);

    /// <summary>
    /// <see cref="ApplyBand(Span{float}, MagnitudeCut, MagnitudeCut)"/> for consecutive pieces of one population: each
    /// cut's <see cref="TiesKept"/> counts down as the piece takes ties, so the next piece continues where it stopped.
    /// </summary>
    public static void ApplyBand(Span<float> values, ref MagnitudeCut keep, ref MagnitudeCut drop)
    {
        long keepTies = keep.TiesKept,
            dropTies = drop.TiesKept;
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            // Eight at a time by unsigned key comparison; a block holding a key equal to either cut goes entry by
            // entry, so ties are still taken in index order.
            ref float first = ref MemoryMarshal.GetReference(values);
            var signless = Vector256.Create(0x7FFF_FFFFu);
            var (keepKey, dropKey) = (Vector256.Create(keep.Key), Vector256.Create(drop.Key));
            for (; j <= values.Length - 8; j += 8)
            {
                var v = Vector256.LoadUnsafe(ref first, (nuint)j);
                var key = v.AsUInt32() & signless;
                if (Vector256.EqualsAny(key, keepKey) || Vector256.EqualsAny(key, dropKey))
                {
                    for (int t = j; t < j + 8; t++)
                        KeepOrZero(values, t, keep.Key, ref keepTies, drop.Key, ref dropTies);
                    continue;
                }
                var kept = Vector256.GreaterThan(key, keepKey) & ~Vector256.GreaterThan(key, dropKey);
                (v & kept.AsSingle()).StoreUnsafe(ref first, (nuint)j);
            }
        }
        for (; j < values.Length; j++)
            KeepOrZero(values, j, keep.Key, ref keepTies, drop.Key, ref dropTies);
        keep = keep with { TiesKept = keepTies };
        drop = drop with { TiesKept = dropTies };
    }

    /// <summary>How many of <paramref name="values"/> have magnitude key <paramref name="key"/>.</summary>
    public static long CountKey(ReadOnlySpan<float> values, uint key)
    {
        long count = 0;
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref float first = ref MemoryMarshal.GetReference(values);
            var (signless, wanted) = (Vector256.Create(0x7FFF_FFFFu), Vector256.Create(key));
            for (; j <= values.Length - 8; j += 8)
            {
                var keys = Vector256.LoadUnsafe(ref first, (nuint)j).AsUInt32() & signless;
                count += BitOperations.PopCount(Vector256.Equals(keys, wanted).ExtractMostSignificantBits());
            }
        }
        for (; j < values.Length; j++)
            if (KeyOf(values[j]) == key)
                count++;
        return count;
    }

    /// <summary>
    /// Σ|vⱼ| over the entries whose key lies strictly between <paramref name="aboveKey"/> and
    /// <paramref name="belowKey"/>, accumulated in double (four lanes, then in order), so it does not depend on where
    /// the span sits in memory. With (0, <see cref="uint.MaxValue"/>) it is the L1 norm (entries of key 0 are zeros).
    /// </summary>
    public static double MagnitudeSum(ReadOnlySpan<float> values, uint aboveKey, uint belowKey)
    {
        var lanes = Vector256<double>.Zero;
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref float first = ref MemoryMarshal.GetReference(values);
            var signless = Vector256.Create(0x7FFF_FFFFu);
            var (low, high) = (Vector256.Create(aboveKey), Vector256.Create(belowKey));
            for (; j <= values.Length - 8; j += 8)
            {
                var keys = Vector256.LoadUnsafe(ref first, (nuint)j).AsUInt32() & signless;
                var inside = Vector256.GreaterThan(keys, low) & Vector256.LessThan(keys, high);
                var (lower, upper) = Vector256.Widen((keys & inside).AsSingle());
                lanes += lower + upper;
            }
        }
        double sum = Vector256.Sum(lanes);
        for (; j < values.Length; j++)
        {
            uint key = KeyOf(values[j]);
            if (key > aboveKey && key < belowKey)
                sum += BitConverter.UInt32BitsToSingle(key);
        }
        return sum;
    }

    private static void KeepOrZero(
        Span<float> values,
        int j,
        uint keepKey,
        ref long keepTies,
        uint dropKey,
        ref long dropTies
    )
    {
        uint key = KeyOf(values[j]);
        // Both counters must advance on every tie they see, so evaluate both.
        bool kept = Takes(key, keepKey, ref keepTies);
        bool dropped = Takes(key, dropKey, ref dropTies);
        if (!kept || dropped)
            values[j] = 0;
    }

    /// <summary>Streaming membership: above the key, or equal to it while ties remain.</summary>
    private static bool Takes(uint key, uint cutKey, ref long ties)
    {
        if (key > cutKey)
            return true;
        if (key != cutKey || ties <= 0)
            return false;
        ties--;
        return true;
    }
}
