using Alloy.Methods.TaskVectors;

namespace Alloy.Methods;

public enum StatisticsPassKind
{
    First,
    Fine,
    Last,
}

/// <summary>
/// What the statistics passes found about one tensor (<see cref="ChunkPlan"/>), as a method reads it: the sums, and the
/// cuts — in <see cref="MergeMethod.Merge"/> each cut as this chunk's share (how many of the ties at its key the chunk
/// keeps), during the passes as the whole tensor's.
/// </summary>
public sealed class TensorStatistics
{
    /// <summary>
    /// The cuts of one population: for each, the tensor's cut and the ties at its key before each chunk.
    /// </summary>
    /// <param name="TiesBefore">Per cut, null when it keeps every entry equal to its key; else, of length chunks + 1,
    /// the tensor's entries equal to the key before each chunk.</param>
    internal sealed record PopulationCuts(MagnitudeCut[] Cuts, long[]?[] TiesBefore);

    public static TensorStatistics Empty { get; } = new([], [], [], -1);

    private readonly double[]? _first;
    private readonly double[]? _last;
    private readonly PopulationCuts?[] _cuts;
    private readonly int _chunk;

    internal TensorStatistics(double[]? first, double[]? last, PopulationCuts?[] cuts, int chunk)
    {
        _first = first;
        _last = last;
        _cuts = cuts;
        _chunk = chunk;
    }

    /// <summary>The sum in <paramref name="slot"/>, over the whole tensor.</summary>
    public double this[SumSlot slot] =>
        slot.Pass == StatisticsPassKind.First
            ? (_first ?? throw NotYet("first-pass sums"))[slot.Index]
            : (_last ?? throw NotYet("last-pass sums"))[slot.Index];

    /// <summary>
    /// Cut <paramref name="which"/> of population <paramref name="population"/>: in a chunk's merge, with the number of
    /// ties this chunk keeps (so <see cref="MagnitudeCut.Apply"/> on the chunk keeps exactly the tensor's top-k there);
    /// during the passes, the tensor's cut.
    /// </summary>
    public MagnitudeCut Cut(PopulationSlot population, int which = 0)
    {
        var cuts = _cuts[population.Index] ?? throw NotYet($"cuts of population {population.Index}");
        var cut = cuts.Cuts[which];
        if (_chunk < 0)
            return cut;
        if (cuts.TiesBefore[which] is not { } before)
            return cut == MagnitudeCut.KeepNone ? cut : cut with { TiesKept = long.MaxValue };
        long earlier = before[_chunk],
            inside = before[_chunk + 1] - earlier;
        return cut with { TiesKept = Math.Clamp(cut.TiesKept - earlier, 0, inside) };
    }

    /// <summary>
    /// Cut <paramref name="which"/> of population <paramref name="population"/> over the whole tensor, in any chunk.
    /// </summary>
    public MagnitudeCut TensorCut(PopulationSlot population, int which = 0) =>
        (_cuts[population.Index] ?? throw NotYet($"cuts of population {population.Index}")).Cuts[which];

    /// <summary>
    /// This tensor's statistics as chunk <paramref name="chunk"/> of the executor's chunking sees them.
    /// </summary>
    internal TensorStatistics ForChunk(int chunk) => new(_first, _last, _cuts, chunk);

    private static InvalidOperationException NotYet(string what) =>
        new($"the {what} are not known at this point; see ChunkPlan for what each statistics pass may read");
}

/// <summary>One statistics unit's view of a pass: the sums it adds to, and the populations it counts.</summary>
public sealed class StatisticsPass
{
    private readonly StatisticsGatherer _gatherer;
    private readonly double[] _sums;

    internal StatisticsPass(StatisticsGatherer gatherer, StatisticsPassKind kind, int sums, int populations, bool sole)
    {
        _gatherer = gatherer;
        Kind = kind;
        Sole = sole;
        _sums = new double[sums];
        Tallies = new CutSearch.Tally?[populations];
    }

    public StatisticsPassKind Kind { get; }

    /// <summary>
    /// True when this pass adds up sums (the first and last passes do, when the plan has any of theirs).
    /// </summary>
    public bool HasSums => _sums.Length > 0;

    /// <summary>Adds the unit's part of the sum in <paramref name="slot"/>, which must be one of this pass's.</summary>
    public void Add(SumSlot slot, double value)
    {
        if (slot.Pass != Kind)
            throw new InvalidOperationException(
                $"a {slot.Pass.ToString().ToLowerInvariant()}-pass sum added in the "
                    + $"{Kind.ToString().ToLowerInvariant()} pass"
            );
        _sums[slot.Index] += value;
    }

    /// <summary>True when <paramref name="population"/> must be counted in this pass.</summary>
    public bool Counts(PopulationSlot population) => _gatherer.Counts(Kind, population.Index);

    /// <summary>Counts the unit's values of <paramref name="population"/>: one value per element of the unit.</summary>
    public void Count(PopulationSlot population, ReadOnlySpan<float> values) =>
        _gatherer.Count(this, population.Index, values);

    internal CutSearch.Tally?[] Tallies { get; }

    /// <summary>True when this is the pass's only lane, which then counts straight into the searches.</summary>
    internal bool Sole { get; }

    internal long UnitStart { get; set; }

    internal int UnitLength { get; set; }

    internal double[] SumsArray => _sums;
}
