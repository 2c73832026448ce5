using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Alloy.Tensors;

namespace Alloy.Methods.TaskVectors;

/// <summary>
/// The sparsifications of mergekit's task-vector family, each applied in place to one task vector (δ = x − base) of
/// one tensor. Callers skip them at density ≥ 1, where mergekit leaves the vector unchanged.
/// </summary>
public static class Sparsify
{
    /// <summary>
    /// mergekit's entry count for a density: <c>int(density·n)</c>, truncated in double as Python does.
    /// </summary>
    public static long KeepCount(double density, long n) => (long)(density * n);

    /// <summary>
    /// TIES trim (mergekit <c>magnitude</c>): keeps the ⌊density·n⌋ largest magnitudes, ties to the lower index
    /// (<see cref="MagnitudeCut"/>). ⌊density·n⌋ = 0 keeps nothing (mergekit stops with an assertion).
    /// </summary>
    public static void Magnitude(Span<float> delta, double density) =>
        MagnitudeCut.Apply(delta, MagnitudeCut.TopK(delta, KeepCount(density, delta.Length)));

    /// <summary>
    /// Model Breadcrumbs (mergekit <c>magnitude_outliers</c>): drops the ⌊γ·n⌋ largest magnitudes (outliers) and the
    /// smallest, so ⌊density·n⌋ remain; when γ and density together exceed the tensor, fewer outliers are dropped.
    /// </summary>
    /// <remarks>
    /// mergekit keeps <c>sorted[n_bot:-n_top]</c>, which is empty when n_top = 0 (γ·n &lt; 1), zeroing the whole task
    /// vector; this keeps ranks [n_bot, n − n_top) of the ascending order in every case.
    /// </remarks>
    public static void MagnitudeOutliers(Span<float> delta, double density, double gamma)
    {
        var (keep, drop) = OutlierBand(density, gamma, delta.Length);
        MagnitudeCut.ApplyBand(delta, MagnitudeCut.TopK(delta, keep), MagnitudeCut.TopK(delta, drop));
    }

    /// <summary>
    /// Breadcrumbs' band over n entries as two top-k counts: the band is the <paramref name="Keep"/> largest magnitudes
    /// without the <paramref name="Drop"/> largest (ascending ranks [n_bot, n − n_top)).
    /// </summary>
    public static (long Keep, long Drop) OutlierBand(double density, double gamma, long n)
    {
        long target = KeepCount(density, n),
            top = (long)(gamma * n),
            bottom = n - target - top;
        if (bottom < 0)
        {
            top += bottom;
            bottom = 0;
        }
        return (n - bottom, top);
    }

    /// <summary>
    /// DARE's drop (mergekit <c>random</c>): keeps each entry with probability <paramref name="density"/>, drawing
    /// element j's uniform from <paramref name="random"/> at index <paramref name="firstIndex"/> + j.
    /// </summary>
    public static void Random(Span<float> delta, double density, RandomStream random, long firstIndex)
    {
        const int block = 4096;
        Span<float> uniform = stackalloc float[block];
        float threshold = UniformThreshold(density);
        for (int start = 0; start < delta.Length; start += block)
        {
            var part = delta.Slice(start, Math.Min(block, delta.Length - start));
            var u = uniform[..part.Length];
            random.FillUniform(firstIndex + start, u);
            int j = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                // Masks, not branches: a keep decision is a coin flip, which no branch predictor guesses.
                var limit = Vector256.Create(threshold);
                for (; j <= part.Length - 8; j += 8)
                    (
                        Vector256.Create((ReadOnlySpan<float>)part.Slice(j, 8))
                        & Vector256.LessThan(Vector256.Create((ReadOnlySpan<float>)u.Slice(j, 8)), limit)
                    ).CopyTo(part.Slice(j, 8));
            }
            for (; j < part.Length; j++)
                part[j] = u[j] < threshold ? part[j] : 0;
        }
    }

    /// <summary>
    /// A float t with <c>u &lt; t ⇔ u &lt; p</c> for every uniform u of <see cref="RandomStream.Uniform"/> (multiples
    /// of 2^-24): p rounded up to that grid, so comparing in float decides exactly as comparing with p in double.
    /// </summary>
    public static float UniformThreshold(double p) =>
        (float)(Math.Ceiling(Math.Clamp(p, 0, 1) * (1 << 24)) / (1 << 24));

    /// <summary>
    /// DELLA's MagPrune (mergekit <c>della_magprune</c>): along dimension 1 (a 1-D tensor is one row), entry
    /// probabilities rise linearly with magnitude rank from density − ε (smallest) to density + ε (largest)
    /// (<see cref="DellaRankThresholds"/>); each entry is kept with its probability, drawn from
    /// <paramref name="random"/> at its flat index. Density ≤ 0 keeps nothing. <paramref name="delta"/> may be a run of
    /// whole rows (of <see cref="DellaRowLength"/> entries) starting at flat index <paramref name="firstIndex"/>.
    /// </summary>
    public static void Della(
        Span<float> delta,
        ReadOnlySpan<long> shape,
        double density,
        double epsilon,
        RandomStream random,
        long firstIndex = 0
    )
    {
        if (density <= 0)
        {
            delta.Clear();
            return;
        }
        // Rows run along dimension 1: outer × n × inner, with stride `inner` between a row's entries.
        int n = (int)(
            shape.Length switch
            {
                0 => 1,
                1 => shape[0],
                _ => shape[1],
            }
        );
        long inner = 1;
        for (int d = 2; d < shape.Length; d++)
            inner *= shape[d];
        if (n == 0)
            return;
        long outer = delta.Length / (n * inner);
        var row = ArrayPool<float>.Shared.Rent(n);
        var uniform = ArrayPool<float>.Shared.Rent(n);
        var thresholds = ArrayPool<float>.Shared.Rent(n);
        var order = ArrayPool<int>.Shared.Rent(n);
        try
        {
            // Every row has the same length, so the same probability per rank: as float thresholds, once.
            DellaRankThresholds(n, density, epsilon, thresholds.AsSpan(0, n));
            for (long o = 0; o < outer; o++)
            {
                for (long c = 0; c < inner; c++)
                {
                    long first = o * n * inner + c;
                    if (inner == 1)
                    {
                        random.FillUniform(firstIndex + first, uniform.AsSpan(0, n));
                        DellaKeep(
                            delta.Slice((int)first, n),
                            uniform.AsSpan(0, n),
                            thresholds.AsSpan(0, n),
                            order.AsSpan(0, n)
                        );
                        continue;
                    }
                    // A strided row is gathered, decided as a contiguous one, and its zeros written back.
                    for (int j = 0; j < n; j++)
                    {
                        long index = first + j * inner;
                        row[j] = delta[(int)index];
                        uniform[j] = random.Uniform(firstIndex + index);
                    }
                    DellaKeep(row.AsSpan(0, n), uniform.AsSpan(0, n), thresholds.AsSpan(0, n), order.AsSpan(0, n));
                    for (int j = 0; j < n; j++)
                        delta[(int)(first + j * inner)] = row[j];
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(row);
            ArrayPool<float>.Shared.Return(uniform);
            ArrayPool<float>.Shared.Return(thresholds);
            ArrayPool<int>.Shared.Return(order);
        }
    }

    /// <summary>
    /// DELLA's keep probability of each ascending magnitude rank r of a row of n (<see cref="MagnitudeOrder"/>):
    /// (density − ε) + 2ε·r/(n − 1), and density for a one-entry row (mergekit divides 0 by 0 there); as float
    /// thresholds on the uniforms (<see cref="UniformThreshold"/>), so rank r keeps an entry iff u &lt; threshold[r]
    /// decides exactly as comparing u with the double probability.
    /// </summary>
    public static void DellaRankThresholds(int n, double density, double epsilon, Span<float> thresholds)
    {
        if (n == 1)
        {
            thresholds[0] = UniformThreshold(density);
            return;
        }
        for (int r = 0; r < n; r++)
            thresholds[r] = UniformThreshold(density - epsilon + 2 * epsilon * r / (n - 1));
    }

    /// <summary>
    /// One row's DELLA decision: zeroes <c>row[j]</c> unless <c>uniform[j] &lt; thresholds[rank of j]</c>
    /// (<see cref="DellaRankThresholds"/>), walking the row in rank order (<see cref="MagnitudeOrder"/>).
    /// </summary>
    public static void DellaKeep(
        Span<float> row,
        ReadOnlySpan<float> uniform,
        ReadOnlySpan<float> thresholds,
        Span<int> order
    )
    {
        MagnitudeOrder(row, order);
        ref float first = ref MemoryMarshal.GetReference(row);
        for (int r = 0; r < row.Length; r++)
        {
            int j = order[r];
            // A mask, not a branch: the outcome is a coin flip.
            uint keep = (uint)-Unsafe.BitCast<bool, byte>(uniform[j] < thresholds[r]);
            ref float entry = ref Unsafe.Add(ref first, j);
            entry = BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(entry) & keep);
        }
    }

    /// <summary>
    /// The entries DELLA ranks together and the ones after them up to the next such group: dimension 1 and every
    /// dimension after it (a 1-D tensor is one row), so a run of whole rows can be sparsified on its own.
    /// </summary>
    public static long DellaRowLength(ReadOnlySpan<long> shape)
    {
        if (shape.Length == 0)
            return 1;
        long length = 1;
        foreach (long size in shape.Length == 1 ? shape : shape[1..])
            length *= size;
        return Math.Max(1, length);
    }

    private const int DigitBits = 8;

    /// <summary>
    /// <c>order[r]</c> = the index of the entry of ascending magnitude rank r (0 for the smallest), equal magnitudes
    /// ranked by position with the lower index higher (<see cref="MagnitudeCut"/>'s tie rule). A
    /// least-significant-digit radix sort over the 31-bit magnitude keys, 8 bits a pass (wider digits cost more in
    /// clearing and summing their counts than they save on rows of a few thousand): linear time.
    /// </summary>
    public static void MagnitudeOrder(ReadOnlySpan<float> values, Span<int> order)
    {
        int n = values.Length;
        const int digits = (31 + DigitBits - 1) / DigitBits,
            radix = 1 << DigitBits;
        // Each entry is (key << 32) | index, one word to move per pass; the two halves alternate as source and
        // destination.
        var buffer = ArrayPool<ulong>.Shared.Rent(2 * n);
        try
        {
            ref ulong from = ref MemoryMarshal.GetArrayDataReference(buffer);
            ref ulong to = ref Unsafe.Add(ref from, n);
            // One counting pass for all digits; a digit every key shares needs no pass.
            Span<int> counts = stackalloc int[digits * radix];
            counts.Clear();
            ref int count = ref MemoryMarshal.GetReference(counts);
            // Start in descending index order: stable passes keep it among equal keys, so the higher index ranks lower.
            for (int p = 0; p < n; p++)
            {
                int j = n - 1 - p;
                uint key = MagnitudeCut.KeyOf(values[j]);
                Unsafe.Add(ref from, p) = ((ulong)key << 32) | (uint)j;
                for (int digit = 0; digit < digits; digit++)
                    Unsafe.Add(ref count, digit * radix + (int)((key >> (DigitBits * digit)) & (radix - 1)))++;
            }
            for (int digit = 0; digit < digits && n > 0; digit++)
            {
                int shift = 32 + DigitBits * digit;
                var offsets = counts.Slice(radix * digit, radix);
                if (offsets[(int)(from >> shift) & (radix - 1)] == n)
                    continue;
                for (int d = 0, sum = 0; d < radix; d++)
                    (offsets[d], sum) = (sum, sum + offsets[d]);
                ref int offset = ref MemoryMarshal.GetReference(offsets);
                for (int p = 0; p < n; p++)
                {
                    ulong entry = Unsafe.Add(ref from, p);
                    Unsafe.Add(ref to, Unsafe.Add(ref offset, (int)(entry >> shift) & (radix - 1))++) = entry;
                }
                ref ulong swap = ref from;
                from = ref to;
                to = ref swap;
            }
            for (int p = 0; p < n; p++)
                order[p] = (int)(uint)Unsafe.Add(ref from, p);
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// mergekit's <c>rescale</c> (the L1 norm, not DARE's 1/density): multiplies the surviving entries by
    /// ‖δ‖₁ / ‖masked δ‖₁ so the task vector keeps its L1 norm; either norm below 1e-7 leaves it as is.
    /// </summary>
    public static void RescaleL1(Span<float> masked, double originalL1)
    {
        if (RescaleFactor(originalL1, L1Norm(masked)) is { } factor)
            System.Numerics.Tensors.TensorPrimitives.Multiply(masked, factor, masked);
    }

    /// <summary>The factor of <see cref="RescaleL1"/> from the two norms, or null when either is below 1e-7.</summary>
    public static float? RescaleFactor(double originalL1, double maskedL1) =>
        originalL1 < 1e-7 || maskedL1 < 1e-7 ? null : (float)(originalL1 / maskedL1);

    /// <summary>Σ|vⱼ|, accumulated in double.</summary>
    public static double L1Norm(ReadOnlySpan<float> values) => MagnitudeCut.MagnitudeSum(values, 0, uint.MaxValue);
}
