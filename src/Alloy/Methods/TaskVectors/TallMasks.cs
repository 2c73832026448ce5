namespace Alloy.Methods.TaskVectors;

/// <summary>
/// TALL masks and consensus merging (Wang et al., <i>Localizing Task Information for Improved Model Merging and
/// Compression</i>, ICML 2024, arXiv:2405.07813): task t's mask selects the entries where its own task vector outweighs
/// its distance to the multi-task vector, <c>|τₜ| &gt; λₜ·|τ_MTL − τₜ|</c>; consensus keeps the entries of τ_MTL that
/// at least k tasks' masks select (k = 1 drops "catastrophic" weights no task needs, k = 2 also "selfish" ones).
/// </summary>
public static class TallMasks
{
    /// <summary>
    /// Adds task t's TALL mask to <paramref name="counts"/>: +1 where |τₜ| &gt; λ·|τ_MTL − τₜ|, with τₜ =
    /// <paramref name="finetuned"/> − <paramref name="base"/>. Strict, as in the reference code and mergekit.
    /// </summary>
    public static void AddMask(
        ReadOnlySpan<float> finetuned,
        ReadOnlySpan<float> @base,
        ReadOnlySpan<float> multiTask,
        double lambda,
        Span<float> counts
    )
    {
        for (int j = 0; j < counts.Length; j++)
        {
            float task = finetuned[j] - @base[j];
            if (Math.Abs(task) > lambda * Math.Abs(multiTask[j] - task))
                counts[j]++;
        }
    }

    /// <summary>
    /// Zeroes the entries of the multi-task vector that fewer than <paramref name="k"/> tasks' masks select.
    /// </summary>
    public static void KeepConsensus(Span<float> multiTask, ReadOnlySpan<float> counts, double k)
    {
        for (int j = 0; j < multiTask.Length; j++)
            if (!(counts[j] >= k))
                multiTask[j] = 0;
    }
}
