namespace Alloy.Runtime.Models;

/// <summary>
/// How often each expert of each layer was chosen: one count per (token, chosen expert) of every forward pass of a
/// mixture-of-experts model, so a layer's counts add up to top-k × the tokens forwarded. Passes on several threads add
/// their counts atomically; counts are integers, so the totals do not depend on the order.
/// </summary>
public sealed class RoutingCounts
{
    private readonly long[][] _counts;

    public RoutingCounts(int layers, int experts) =>
        _counts = [.. Enumerable.Range(0, layers).Select(_ => new long[experts])];

    internal void Add(int layer, int expert, long count) => Interlocked.Add(ref _counts[layer][expert], count);

    /// <summary>The counts so far (a copy).</summary>
    public RoutingTable Snapshot() =>
        new([.. _counts.Select(layer => (IReadOnlyList<long>)[.. layer.Select(c => Interlocked.Read(ref c))])]);

    public void Reset()
    {
        foreach (var layer in _counts)
            for (int e = 0; e < layer.Length; e++)
                Interlocked.Exchange(ref layer[e], 0);
    }
}

/// <summary>Per layer, how many times each expert was chosen.</summary>
public sealed record RoutingTable(IReadOnlyList<IReadOnlyList<long>> Layers)
{
    /// <summary>The counts added since <paramref name="earlier"/> (a snapshot of the same model): one task's routing.
    /// </summary>
    public RoutingTable Since(RoutingTable earlier) =>
        new([
            .. Layers.Select((layer, l) => (IReadOnlyList<long>)[.. layer.Select((c, e) => c - earlier.Layers[l][e])]),
        ]);

    /// <summary>Expert <paramref name="expert"/>'s share of layer <paramref name="layer"/>'s choices (0 if none).
    /// </summary>
    public double Share(int layer, int expert)
    {
        long total = Layers[layer].Sum();
        return total == 0 ? 0 : (double)Layers[layer][expert] / total;
    }
}
