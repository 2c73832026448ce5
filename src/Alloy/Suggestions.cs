namespace Alloy;

/// <summary>"Did you mean": the known name closest to a misspelt one.</summary>
public static class Suggestions
{
    /// <summary>
    /// The known name within edit distance 2 of <paramref name="key"/> (case-insensitive), the closest first, or null:
    /// a typo, not a different word.
    /// </summary>
    public static string? Closest(string key, IEnumerable<string> known)
    {
        string? best = null;
        var bestDistance = 3; // only close typos
        foreach (var k in known)
        {
            var d = Distance(key.ToLowerInvariant(), k.ToLowerInvariant());
            if (d < bestDistance)
                (best, bestDistance) = (k, d);
        }
        return best;
    }

    public static int Distance(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
            prev[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }
}
