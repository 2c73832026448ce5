using System.Runtime.Intrinsics;

namespace Alloy.Methods.TaskVectors;

/// <summary>What the combined task vector is divided by in a disjoint merge.</summary>
public enum DisjointDivisor
{
    /// <summary>Nothing: the disjoint sum (TIES "dis-sum").</summary>
    None,

    /// <summary>The sum of the agreeing models' weights (mergekit's <c>normalize</c>: a weighted mean).</summary>
    AgreeingWeights,

    /// <summary>The number of agreeing models (the TIES paper's "dis-mean", PEFT).</summary>
    AgreeingCount,
}

/// <summary>
/// TIES's sign election and disjoint merge over several task vectors of one tensor. Model i votes with cᵢ·δᵢ, where
/// the vote weight cᵢ is its merge weight (mergekit) or 1 (the TIES paper, PEFT); it agrees with the elected sign where
/// cᵢ·δᵢ has that sign, so zero entries never agree.
/// </summary>
public static class SignConsensus
{
    /// <summary>Entries per pass over the models: double accumulators on the stack, deltas read with spans.</summary>
    private const int Block = 1024;

    /// <summary>
    /// <c>signs[j]</c> = +1 or −1: the sign of Σᵢ cᵢ·δᵢ[j] (the "mass"), or with <paramref name="byCount"/> of
    /// Σᵢ sign(cᵢ·δᵢ[j]) (the majority of signs); an exact 0 elects + (mergekit, PEFT).
    /// </summary>
    /// <remarks>Vectorized four doubles at a time; each entry gets exactly the operations of the scalar loop.</remarks>
    public static void Elect(
        IReadOnlyList<float[]> deltas,
        ReadOnlySpan<double> voteWeights,
        bool byCount,
        Span<float> signs
    )
    {
        Span<double> votes = stackalloc double[Block];
        for (int start = 0; start < signs.Length; start += Block)
        {
            var vote = votes[..Math.Min(Block, signs.Length - start)];
            vote.Clear();
            for (int i = 0; i < deltas.Count; i++)
            {
                var delta = deltas[i].AsSpan(start, vote.Length);
                double c = voteWeights[i];
                int j = 0;
                if (Vector256.IsHardwareAccelerated)
                {
                    var vc = Vector256.Create(c);
                    for (; j <= vote.Length - 8; j += 8)
                    {
                        var (low, high) = Vector256.Widen(Vector256.Create(delta.Slice(j, 8)));
                        AddVote(vote.Slice(j, 4), vc * low, byCount);
                        AddVote(vote.Slice(j + 4, 4), vc * high, byCount);
                    }
                }
                for (; j < vote.Length; j++)
                {
                    double v = c * delta[j];
                    vote[j] += byCount ? (v > 0 ? 1 : 0) - (v < 0 ? 1 : 0) : v;
                }
            }
            var sign = signs.Slice(start, vote.Length);
            int k = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                var (plus, minus) = (Vector256.Create(1.0), Vector256.Create(-1.0));
                for (; k <= vote.Length - 8; k += 8)
                {
                    var low = Vector256.ConditionalSelect(
                        Vector256.GreaterThanOrEqual(Vector256.Create(vote.Slice(k, 4)), Vector256<double>.Zero),
                        plus,
                        minus
                    );
                    var high = Vector256.ConditionalSelect(
                        Vector256.GreaterThanOrEqual(Vector256.Create(vote.Slice(k + 4, 4)), Vector256<double>.Zero),
                        plus,
                        minus
                    );
                    Vector256.Narrow(low, high).CopyTo(sign.Slice(k, 8));
                }
            }
            for (; k < vote.Length; k++)
                sign[k] = vote[k] >= 0 ? 1 : -1;
        }
    }

    private static void AddVote(Span<double> vote, Vector256<double> v, bool byCount)
    {
        var add = byCount
            ? (Vector256.GreaterThan(v, Vector256<double>.Zero) & Vector256.Create(1.0))
                - (Vector256.LessThan(v, Vector256<double>.Zero) & Vector256.Create(1.0))
            : v;
        (Vector256.Create((ReadOnlySpan<double>)vote) + add).CopyTo(vote);
    }

    /// <summary>
    /// <c>merged[j]</c> = Σ over the models agreeing with <c>signs[j]</c> of wᵢ·δᵢ[j], divided as
    /// <paramref name="divisor"/> says (a divisor of exactly 0 counts as 1). <paramref name="merged"/> may be the
    /// same memory as <paramref name="signs"/>: each block's signs are read before its entries are written.
    /// A positive <paramref name="minimumDivisor"/> raises every divisor to at least that value (SCE's clamp).
    /// </summary>
    /// <remarks>
    /// Vectorized four doubles at a time; each entry gets the scalar loop's operations (a model that does not agree
    /// adds +0 instead of ±0, which leaves a sum that starts at +0 unchanged).
    /// </remarks>
    public static void DisjointMerge(
        IReadOnlyList<float[]> deltas,
        ReadOnlySpan<double> weights,
        ReadOnlySpan<double> voteWeights,
        ReadOnlySpan<float> signs,
        Span<float> merged,
        DisjointDivisor divisor,
        double minimumDivisor = 0
    )
    {
        Span<double> sums = stackalloc double[Block],
            divisors = stackalloc double[Block];
        for (int start = 0; start < merged.Length; start += Block)
        {
            int length = Math.Min(Block, merged.Length - start);
            var sum = sums[..length];
            var den = divisors[..length];
            var sign = signs.Slice(start, length);
            sum.Clear();
            den.Clear();
            for (int i = 0; i < deltas.Count; i++)
            {
                var delta = deltas[i].AsSpan(start, length);
                double c = voteWeights[i],
                    w = weights[i],
                    unit = divisor == DisjointDivisor.AgreeingCount ? 1 : w;
                int j = 0;
                if (Vector256.IsHardwareAccelerated)
                {
                    var (vc, vw, vu) = (Vector256.Create(c), Vector256.Create(w), Vector256.Create(unit));
                    for (; j <= length - 8; j += 8)
                    {
                        var (d0, d1) = Vector256.Widen(Vector256.Create(delta.Slice(j, 8)));
                        var (s0, s1) = Vector256.Widen(Vector256.Create(sign.Slice(j, 8)));
                        AddAgreeing(sum.Slice(j, 4), den.Slice(j, 4), d0, s0, vc, vw, vu);
                        AddAgreeing(sum.Slice(j + 4, 4), den.Slice(j + 4, 4), d1, s1, vc, vw, vu);
                    }
                }
                for (; j < length; j++)
                {
                    double agrees = c * delta[j] * sign[j] > 0 ? 1 : 0;
                    sum[j] += agrees * w * delta[j];
                    den[j] += agrees * unit;
                }
            }
            var output = merged.Slice(start, length);
            if (minimumDivisor > 0)
                for (int j = 0; j < length; j++)
                    den[j] = Math.Max(den[j], minimumDivisor);
            int k = 0;
            if (Vector256.IsHardwareAccelerated && divisor != DisjointDivisor.None)
            {
                for (; k <= length - 8; k += 8)
                    Vector256
                        .Narrow(
                            Divide(sum.Slice(k, 4), den.Slice(k, 4)),
                            Divide(sum.Slice(k + 4, 4), den.Slice(k + 4, 4))
                        )
                        .CopyTo(output.Slice(k, 8));
            }
            for (; k < length; k++)
                output[k] = (float)(divisor == DisjointDivisor.None || den[k] == 0 ? sum[k] : sum[k] / den[k]);
        }
    }

    private static void AddAgreeing(
        Span<double> sum,
        Span<double> den,
        Vector256<double> delta,
        Vector256<double> sign,
        Vector256<double> c,
        Vector256<double> w,
        Vector256<double> unit
    )
    {
        var agrees = Vector256.GreaterThan(c * delta * sign, Vector256<double>.Zero);
        (Vector256.Create((ReadOnlySpan<double>)sum) + ((w * delta) & agrees)).CopyTo(sum);
        (Vector256.Create((ReadOnlySpan<double>)den) + (unit & agrees)).CopyTo(den);
    }

    /// <summary>sum / den, or sum where den is exactly 0.</summary>
    private static Vector256<double> Divide(ReadOnlySpan<double> sum, ReadOnlySpan<double> den)
    {
        var (s, d) = (Vector256.Create(sum), Vector256.Create(den));
        return Vector256.ConditionalSelect(Vector256.Equals(d, Vector256<double>.Zero), s, s / d);
    }
}
