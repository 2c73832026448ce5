namespace Alloy.Methods;

/// <summary>
/// How the executor may merge one output tensor chunk by chunk (<see cref="MergeMethod.Chunking"/>): where a chunk may
/// end, and which statistics of the whole tensor the method needs before it merges any chunk.
/// </summary>
/// <remarks>
/// Statistics are gathered in up to three passes over the tensor, each over fixed units of
/// <see cref="StatisticsGatherer.UnitElements"/> elements (whole rows with <see cref="RowLength"/>) on all threads,
/// with the method's <see cref="MergeMethod.Accumulate"/> called once per unit:
/// <list type="number">
/// <item><b>first</b>: the <see cref="FirstSums"/>, and the coarse counts of every <see cref="Cuts"/>
/// population;</item>
/// <item><b>fine</b> (only while a cut is searched): the fine counts;</item>
/// <item><b>last</b> (when there are <see cref="LastSums"/>, or a cut keeps only some of the entries equal to its key):
/// the last sums, which may use the first sums and the cuts' keys, and the ties per chunk.</item>
/// </list>
/// Sums are kept per unit and added in unit order, and counts are integers, so the statistics — and the output — do not
/// depend on the chunk size or the thread count, and equal those of a whole-tensor call.
/// </remarks>
public sealed record ChunkPlan
{
    /// <summary>Any split, nothing needed first: output element i depends on input elements i only.</summary>
    public static ChunkPlan Elementwise { get; } = new();

    /// <summary>
    /// Chunks (and statistics units) hold whole rows of this many elements; 0: a chunk may end anywhere.
    /// </summary>
    public long RowLength { get; init; }

    /// <summary>Sums the method adds up in the first pass (<see cref="StatisticsPass.Sums"/>).</summary>
    public int FirstSums { get; init; }

    /// <summary>Sums the method adds up in the last pass, once the first sums and the cuts' keys are known.</summary>
    public int LastSums { get; init; }

    /// <summary>
    /// Populations of values the method computes per element (one value per element of the tensor, e.g. one input's
    /// task vector), each with the magnitude cuts wanted over it.
    /// </summary>
    public IReadOnlyList<CutRequest> Cuts { get; init; } = [];

    public bool NeedsStatistics => FirstSums > 0 || LastSums > 0 || Cuts.Count > 0;

    /// <summary>The chunk size the executor uses for a requested one: whole rows, at least one.</summary>
    public long ChunkElements(long requested) =>
        RowLength > 0 ? Math.Max(1, requested / RowLength) * RowLength : requested;
}

/// <summary>
/// The cuts wanted over one population: for each, how many of the largest magnitudes it keeps (exactly, ties to the
/// lower index: <see cref="TaskVectors.MagnitudeCut"/>); or the model-wide cut of one input, found before the merge
/// (<see cref="MergeMethod.ModelWideKeepFraction"/>), whose values the population must then be (x − base).
/// </summary>
public sealed record CutRequest(IReadOnlyList<long> Keep, int ModelWideInput = -1)
{
    /// <summary>A population counted for nothing (a fixed layout can hold places that need no cut).</summary>
    public static CutRequest None { get; } = new([]);

    public static CutRequest TopK(params long[] keep) => new(keep);

    /// <summary>Input <paramref name="input"/>'s share of its model-wide cut, as one cut.</summary>
    public static CutRequest ModelWide(int input) => new([0], input);
}

/// <summary>
/// A named place for one sum of a tensor's statistics, handed out by a <see cref="StatisticsLayout"/>.
/// </summary>
public readonly record struct SumSlot(StatisticsPassKind Pass, int Index);

/// <summary>
/// A population a method counts for magnitude cuts (one value per element), handed out by a
/// <see cref="StatisticsLayout"/>.
/// </summary>
public readonly record struct PopulationSlot(int Index);

/// <summary>
/// Hands out the slots of a tensor's statistics as a method declares what it needs, so sums and populations are read
/// and written by name (<c>stats[norm]</c>, <c>pass.Add(norm, …)</c>) rather than by index arithmetic; then makes the
/// <see cref="ChunkPlan"/>. Methods with a fixed layout keep one in a static field; others build one per tensor, the
/// same way for planning, accumulating and merging.
/// </summary>
public sealed class StatisticsLayout
{
    private int _first,
        _last;
    private readonly List<CutRequest> _cuts = [];

    /// <summary>A sum added up in the first pass.</summary>
    public SumSlot FirstSum() => new(StatisticsPassKind.First, _first++);

    /// <summary><paramref name="count"/> sums added up in the first pass.</summary>
    public SumSlot[] FirstSums(int count) => [.. Enumerable.Range(0, count).Select(_ => FirstSum())];

    /// <summary>A sum added up in the last pass, which may use the first sums and the cuts.</summary>
    public SumSlot LastSum() => new(StatisticsPassKind.Last, _last++);

    /// <summary>A population counted for <paramref name="cuts"/>.</summary>
    public PopulationSlot Population(CutRequest cuts)
    {
        _cuts.Add(cuts);
        return new PopulationSlot(_cuts.Count - 1);
    }

    /// <summary>
    /// The plan for these statistics, with chunks of whole rows of <paramref name="rowLength"/> elements (0: any
    /// split).
    /// </summary>
    public ChunkPlan Plan(long rowLength = 0) =>
        new()
        {
            RowLength = rowLength,
            FirstSums = _first,
            LastSums = _last,
            Cuts = [.. _cuts],
        };
}
