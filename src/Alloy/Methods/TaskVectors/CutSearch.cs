namespace Alloy.Methods.TaskVectors;

/// <summary>
/// Finds exact top-k cuts (<see cref="MagnitudeCut"/>) of one population of values that is seen in pieces — the chunks
/// of one tensor, or every tensor of a model — on any number of threads: a coarse pass, then a fine pass, of
/// <see cref="MagnitudeHistogram"/> counts. Several cuts of one population (Breadcrumbs keeps the band between two)
/// share its coarse pass. Counts are integers, so the cuts do not depend on how the population was split or ordered.
/// </summary>
/// <remarks>
/// A cut keeps every entry above its key and the first <see cref="MagnitudeCut.TiesKept"/> of those equal to it. When
/// that splits a group of equal entries (<see cref="SplitsTies"/>), which of them a piece keeps depends on the ties in
/// the pieces before it: the caller counts them in its own order (plan order, chunk order) with
/// <see cref="MagnitudeCut.CountKey"/>.
/// </remarks>
public sealed class CutSearch : IDisposable
{
    public enum Stage
    {
        Coarse,
        Fine,
        Done,
    }

    private readonly long _count;
    private readonly long[] _keep;
    private readonly bool[] _searched;
    private readonly int[] _bucket;
    private readonly long[] _above;
    private readonly MagnitudeCut[] _cuts;
    private readonly bool[] _splits;
    private readonly object _gate = new();
    private MagnitudeHistogram[]? _totals;

    /// <param name="count">Entries in the population.</param>
    /// <param name="keep">For each cut, how many of the largest magnitudes it keeps.</param>
    public CutSearch(long count, IReadOnlyList<long> keep)
    {
        _count = count;
        _keep = keep.ToArray();
        _searched = new bool[_keep.Length];
        _bucket = new int[_keep.Length];
        _above = new long[_keep.Length];
        _cuts = new MagnitudeCut[_keep.Length];
        _splits = new bool[_keep.Length];
        for (int w = 0; w < _keep.Length; w++)
        {
            if (_keep[w] <= 0)
                _cuts[w] = MagnitudeCut.KeepNone;
            else if (_keep[w] >= count)
                _cuts[w] = MagnitudeCut.KeepAll;
            else
                _searched[w] = true;
        }
        Current = _searched.Contains(true) ? Stage.Coarse : Stage.Done;
        if (Current != Stage.Done)
            _totals = NewHistograms();
    }

    public Stage Current { get; private set; }

    /// <summary>True while the pieces must be counted (<see cref="Count"/>) in the current pass.</summary>
    public bool Counting => Current != Stage.Done;

    /// <summary>The cuts, in the order they were asked for; valid once <see cref="Current"/> is Done.</summary>
    public IReadOnlyList<MagnitudeCut> Cuts =>
        Current == Stage.Done ? _cuts : throw new InvalidOperationException("the cut search is not finished");

    /// <summary>True when cut <paramref name="which"/> keeps only some of the entries equal to its key.</summary>
    public bool SplitsTies(int which) =>
        Current == Stage.Done ? _splits[which] : throw new InvalidOperationException("the cut search is not finished");

    /// <summary>A thread's counts for the current pass; merge them with <see cref="Add"/>.</summary>
    public sealed class Tally : IDisposable
    {
        internal Tally(MagnitudeHistogram[] histograms) => Histograms = histograms;

        internal MagnitudeHistogram[] Histograms { get; }

        public void Dispose()
        {
            foreach (var h in Histograms)
                h.Dispose();
        }
    }

    public Tally NewTally() => new(NewHistograms());

    /// <summary>Counts one piece of the population into a thread's tally.</summary>
    public void Count(Tally tally, ReadOnlySpan<float> values) => Count(tally.Histograms, values);

    /// <summary>
    /// Counts one piece straight into the population's counts: for a search that only one thread feeds.
    /// </summary>
    public void Count(ReadOnlySpan<float> values) => Count(_totals!, values);

    private void Count(MagnitudeHistogram[] histograms, ReadOnlySpan<float> values)
    {
        switch (Current)
        {
            case Stage.Coarse:
                histograms[0].AddCoarse(values);
                break;
            case Stage.Fine:
                for (int w = 0; w < _keep.Length; w++)
                    if (_searched[w])
                        histograms[w].AddFine(values, _bucket[w]);
                break;
        }
    }

    /// <summary>Adds a thread's tally to the population's counts (thread-safe).</summary>
    public void Add(Tally tally)
    {
        lock (_gate)
            for (int w = 0; w < _keep.Length; w++)
                _totals![w].Add(tally.Histograms[w]);
    }

    /// <summary>
    /// Ends a pass once every piece is counted and every tally added: locates the buckets, then the cuts.
    /// </summary>
    public void EndPass()
    {
        switch (Current)
        {
            case Stage.Coarse:
                if (_totals![0].Count != _count)
                    throw new InvalidOperationException(
                        $"the coarse pass counted {_totals[0].Count} entries of a population of {_count}"
                    );
                for (int w = 0; w < _keep.Length; w++)
                    if (_searched[w])
                        _bucket[w] = _totals[0].FindBucket(_keep[w], out _above[w]);
                Current = Stage.Fine;
                break;
            case Stage.Fine:
                for (int w = 0; w < _keep.Length; w++)
                {
                    if (!_searched[w])
                        continue;
                    _cuts[w] = _totals![w].FindCut(_bucket[w], _above[w], _keep[w], out long equal);
                    _splits[w] = _cuts[w].TiesKept < equal;
                }
                Current = Stage.Done;
                Dispose();
                break;
        }
    }

    public void Dispose()
    {
        if (_totals is null)
            return;
        foreach (var h in _totals)
            h.Dispose();
        _totals = null;
    }

    private MagnitudeHistogram[] NewHistograms()
    {
        var histograms = new MagnitudeHistogram[Math.Max(1, _keep.Length)];
        for (int w = 0; w < histograms.Length; w++)
            histograms[w] = new MagnitudeHistogram();
        return histograms;
    }
}
