using Alloy.Methods.TaskVectors;

namespace Alloy.Methods;

/// <summary>
/// Runs the statistics passes of one tensor (<see cref="ChunkPlan"/>): hands out fixed units, collects each unit's sums
/// and each thread's counts, and after each pass folds the sums in unit order and advances the cut searches. The
/// executor drives it over memory-mapped inputs on all threads; <see cref="Gather"/> drives it over a whole tensor in
/// memory, so the two compute the same numbers.
/// </summary>
internal sealed class StatisticsGatherer : IDisposable
{
    /// <summary>
    /// Elements per statistics unit: fixed, so sums fold the same way at any chunk size and thread count. 64 Ki floats
    /// per input keep a unit in the L2 cache while a method makes its few passes over it.
    /// </summary>
    public const int UnitElements = 1 << 16;

    private readonly MergeMethod _method;
    private readonly ChunkPlan _plan;
    private readonly long _elements;
    private readonly long _unitElements;
    private readonly long _chunkElements;
    private readonly int _chunks;
    private readonly CutSearch?[] _searches;
    private readonly TensorStatistics.PopulationCuts?[] _cuts;

    /// <summary>
    /// Per population and cut: the entries equal to its key in each chunk, while the last pass counts them.
    /// </summary>
    private readonly long[]?[]?[] _ties;
    private double[]? _partials;
    private double[]? _first,
        _last;
    private int _stage;

    /// <param name="chunkElements">The executor's chunk size for this tensor (whole rows), which cut shares refer
    /// to.</param>
    /// <param name="importCut">For <see cref="CutRequest.ModelWide"/>: the input's cut over this tensor, and the ties
    /// at its key before each chunk (null when it keeps them all).</param>
    public StatisticsGatherer(
        MergeMethod method,
        ChunkPlan plan,
        long elements,
        long chunkElements,
        Func<int, (MagnitudeCut Cut, long[]? TiesBefore)> importCut
    )
    {
        _method = method;
        _plan = plan;
        _elements = elements;
        _unitElements = plan.ChunkElements(UnitElements);
        _chunkElements = Math.Max(1, chunkElements);
        _chunks = (int)Math.Max(1, (elements + _chunkElements - 1) / _chunkElements);
        int populations = plan.Cuts.Count;
        _searches = new CutSearch?[populations];
        _cuts = new TensorStatistics.PopulationCuts?[populations];
        _ties = new long[]?[]?[populations];
        for (int p = 0; p < populations; p++)
        {
            var request = plan.Cuts[p];
            if (request.ModelWideInput >= 0)
            {
                var (cut, before) = importCut(request.ModelWideInput);
                if (before is not null && before.Length != _chunks + 1)
                    throw new InvalidOperationException(
                        $"{method.Name}: a model-wide cut's ties were counted over {before.Length - 1} chunks, not "
                            + $"this tensor's {_chunks}"
                    );
                _cuts[p] = new([cut], [before]);
            }
            else
            {
                _searches[p] = new CutSearch(elements, request.Keep);
            }
        }
        Known = Snapshot();
    }

    public int UnitCount => (int)((_elements + _unitElements - 1) / _unitElements);

    public (long Start, int Count) Unit(int unit)
    {
        long start = unit * _unitElements;
        return (start, (int)Math.Min(_unitElements, _elements - start));
    }

    /// <summary>What units may read in the current pass: the first sums and cuts of the passes before.</summary>
    public TensorStatistics Known { get; private set; }

    /// <summary>The next pass to run, or null when the statistics are complete.</summary>
    public StatisticsPassKind? NextPass()
    {
        while (true)
        {
            switch (_stage)
            {
                case 0 when _plan.FirstSums > 0 || Searching(CutSearch.Stage.Coarse):
                    _partials = new double[UnitCount * _plan.FirstSums];
                    return StatisticsPassKind.First;
                case 1 when Searching(CutSearch.Stage.Fine):
                    return StatisticsPassKind.Fine;
                case 2 when _plan.LastSums > 0 || _ties.Any(t => t is not null && t.Any(c => c is not null)):
                    _partials = new double[UnitCount * _plan.LastSums];
                    return StatisticsPassKind.Last;
                case 3:
                    return null;
            }
            EndStage();
        }
    }

    /// <summary>
    /// A thread's working state for the current pass; <paramref name="sole"/> when no other lane runs it.
    /// </summary>
    public StatisticsPass NewLane(StatisticsPassKind kind, bool sole) =>
        new(
            this,
            kind,
            kind switch
            {
                StatisticsPassKind.First => _plan.FirstSums,
                StatisticsPassKind.Last => _plan.LastSums,
                _ => 0,
            },
            _searches.Length,
            sole
        );

    /// <summary>
    /// Runs the method over one unit (its inputs read from <c>unit.ElementOffset</c>) and keeps the unit's sums.
    /// </summary>
    public void Accumulate(StatisticsPass lane, int unit, MergeInputs inputs)
    {
        lane.UnitStart = inputs.ElementOffset;
        lane.UnitLength = inputs.Length;
        var sums = lane.SumsArray;
        Array.Clear(sums);
        _method.Accumulate(inputs, lane);
        // Each unit owns its slot: no two threads write the same place, and the fold reads them in unit order.
        sums.CopyTo(_partials.AsSpan(unit * sums.Length, sums.Length));
    }

    /// <summary>Adds a thread's counts once it has no more units to do.</summary>
    public void EndLane(StatisticsPass lane)
    {
        for (int p = 0; p < lane.Tallies.Length; p++)
        {
            if (lane.Tallies[p] is not { } tally)
                continue;
            _searches[p]!.Add(tally);
            tally.Dispose();
            lane.Tallies[p] = null;
        }
    }

    /// <summary>Ends the current pass once every unit is done and every lane ended.</summary>
    public void EndPass() => EndStage();

    /// <summary>Everything found, for the executor to hand each chunk its share.</summary>
    public TensorStatistics Result =>
        _stage == 3 ? Known : throw new InvalidOperationException("the statistics passes are not finished");

    internal bool Counts(StatisticsPassKind kind, int population) =>
        kind switch
        {
            StatisticsPassKind.Last => _ties[population] is { } ties && ties.Any(t => t is not null),
            _ => _searches[population] is { Counting: true },
        };

    internal void Count(StatisticsPass lane, int population, ReadOnlySpan<float> values)
    {
        if (values.Length != lane.UnitLength)
            throw new InvalidOperationException(
                $"{_method.Name} counted {values.Length} values of population {population} for a unit of "
                    + $"{lane.UnitLength} elements"
            );
        if (lane.Kind != StatisticsPassKind.Last)
        {
            if (_searches[population] is not { Counting: true } search)
                return;
            if (lane.Sole)
                search.Count(values);
            else
                search.Count(lane.Tallies[population] ??= search.NewTally(), values);
            return;
        }
        if (_ties[population] is not { } ties)
            return;
        var cuts = _cuts[population]!.Cuts;
        for (int w = 0; w < ties.Length; w++)
        {
            if (ties[w] is not { } perChunk)
                continue;
            // A unit may straddle chunk boundaries: count each part towards its chunk.
            for (int done = 0; done < values.Length; )
            {
                long element = lane.UnitStart + done;
                int chunk = (int)(element / _chunkElements);
                int run = (int)Math.Min(values.Length - done, (chunk + 1) * _chunkElements - element);
                long equal = MagnitudeCut.CountKey(values.Slice(done, run), cuts[w].Key);
                if (equal > 0)
                    Interlocked.Add(ref perChunk[chunk], equal);
                done += run;
            }
        }
    }

    private bool Searching(CutSearch.Stage stage) =>
        _searches.Any(s => s is not null && s.Counting && s.Current == stage);

    private void EndStage()
    {
        switch (_stage)
        {
            case 0:
                _first = Fold(_plan.FirstSums);
                foreach (var search in _searches)
                    if (search is { Current: CutSearch.Stage.Coarse })
                        search.EndPass();
                break;
            case 1:
                foreach (var search in _searches)
                    if (search is { Current: CutSearch.Stage.Fine })
                        search.EndPass();
                for (int p = 0; p < _searches.Length; p++)
                {
                    if (_searches[p] is not { } search)
                        continue;
                    var cuts = search.Cuts.ToArray();
                    // One chunk keeps the tensor's share of the ties, wherever they are: no need to count them.
                    _cuts[p] = new(
                        cuts,
                        cuts.Select((cut, w) => search.SplitsTies(w) && _chunks == 1 ? new[] { 0, cut.TiesKept } : null)
                            .ToArray()
                    );
                    _ties[p] = Enumerable
                        .Range(0, cuts.Length)
                        .Select(w => search.SplitsTies(w) && _chunks > 1 ? new long[_chunks] : null)
                        .ToArray();
                }
                break;
            case 2:
                _last = Fold(_plan.LastSums);
                for (int p = 0; p < _ties.Length; p++)
                {
                    if (_ties[p] is not { } ties)
                        continue;
                    for (int w = 0; w < ties.Length; w++)
                    {
                        if (ties[w] is not { } perChunk)
                            continue;
                        // Counts per chunk become "ties before each chunk", the form a chunk's share is read from.
                        var before = new long[_chunks + 1];
                        for (int c = 0; c < _chunks; c++)
                            before[c + 1] = before[c] + perChunk[c];
                        _cuts[p]!.TiesBefore[w] = before;
                    }
                }
                break;
        }
        _partials = null;
        _stage++;
        Known = Snapshot();
    }

    /// <summary>Each sum over the whole tensor: the units' partial sums added in unit order.</summary>
    private double[] Fold(int sums)
    {
        var totals = new double[sums];
        if (_partials is null)
            return totals;
        for (int unit = 0; unit < UnitCount; unit++)
        for (int s = 0; s < sums; s++)
            totals[s] += _partials[unit * sums + s];
        return totals;
    }

    private TensorStatistics Snapshot() => new(_first, _last, (TensorStatistics.PopulationCuts?[])_cuts.Clone(), -1);

    public void Dispose()
    {
        foreach (var search in _searches)
            search?.Dispose();
    }

    /// <summary>
    /// The statistics of a whole tensor in memory (a method's <see cref="MergeMethod.Merge"/> called without the
    /// executor, or on a tensor the executor merges in one piece), by the same passes over the same units.
    /// </summary>
    public static TensorStatistics Gather(MergeMethod method, MergeInputs inputs)
    {
        var plan = method.Chunking(inputs, inputs.Shape);
        if (plan is null || !plan.NeedsStatistics)
            return TensorStatistics.Empty;
        long elements = 1;
        foreach (long size in inputs.Shape)
            elements *= size;
        if (inputs.ElementOffset != 0 || inputs.Length != elements)
            throw new InvalidOperationException(
                $"{method.Name}: a chunk of tensor '{inputs.TensorName}' was merged without the statistics of the "
                    + $"whole tensor"
            );
        using var gatherer = new StatisticsGatherer(method, plan, elements, elements, input =>
        {
            var cut = inputs.ModelWideCut(input)
                ?? throw new InvalidOperationException(
                    $"{method.Name}: no model-wide cut was given for input {input} of '{inputs.TensorName}'"
                );
            // The tensor is one chunk, whose share is the tensor's: TiesKept itself, unless that is "all of them".
            return (cut, cut.TiesKept == long.MaxValue || cut == MagnitudeCut.KeepNone ? null : [0, cut.TiesKept]);
        });
        while (gatherer.NextPass() is { } kind)
        {
            var lane = gatherer.NewLane(kind, sole: true);
            for (int unit = 0; unit < gatherer.UnitCount; unit++)
            {
                var (start, count) = gatherer.Unit(unit);
                gatherer.Accumulate(lane, unit, inputs.Slice((int)start, count, gatherer.Known));
            }
            gatherer.EndLane(lane);
            gatherer.EndPass();
        }
        return gatherer.Result.ForChunk(0);
    }
}
