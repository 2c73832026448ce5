namespace Alloy.Tensors;

/// <summary>
/// Order statistics without sorting: quickselect in O(n) on average, deterministic (no random pivots), so quantiles
/// and top-k thresholds of whole tensors are exact and the same on every run.
/// </summary>
public static class Selection
{
    /// <summary>
    /// Rearranges <paramref name="values"/> so that values[k] is the k-th smallest (0-based), everything before it is
    /// ≤ it and everything after it is ≥ it; returns values[k]. NaNs end up in unspecified places.
    /// </summary>
    public static float Select(Span<float> values, int k)
    {
        if ((uint)k >= (uint)values.Length)
            throw new ArgumentOutOfRangeException(nameof(k));
        int lo = 0,
            hi = values.Length - 1;
        while (hi > lo)
        {
            float pivot = MedianOfThree(values[lo], values[lo + (hi - lo) / 2], values[hi]);
            // Hoare partition: afterwards [lo, j] ≤ pivot ≤ [i, hi], and both sides are non-empty or the pivot is
            // placed.
            int i = lo,
                j = hi;
            while (i <= j)
            {
                while (values[i] < pivot)
                    i++;
                while (values[j] > pivot)
                    j--;
                if (i <= j)
                {
                    (values[i], values[j]) = (values[j], values[i]);
                    i++;
                    j--;
                }
            }
            if (k <= j)
                hi = j;
            else if (k >= i)
                lo = i;
            else
                break; // j < k < i: values[k] equals the pivot and is in place
        }
        return values[k];
    }

    private static float MedianOfThree(float a, float b, float c) =>
        a < b
            ? (
                b < c ? b
                : a < c ? c
                : a
            )
            : (
                a < c ? a
                : b < c ? c
                : b
            );
}
