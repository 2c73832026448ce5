using System.Numerics.Tensors;

namespace Alloy.Methods.TaskVectors;

/// <summary>
/// One way to thin task vectors before they are combined (mergekit's sparsification methods: TIES's magnitude trim,
/// DARE's random drop, Breadcrumbs' outlier band, DELLA's ranked drop). Each is three steps over one fine-tune's task
/// vector of one tensor: <see cref="Plan"/> places the statistics it needs of the whole tensor (cuts, L1 norms for the
/// rescale) in the tensor's <see cref="StatisticsLayout"/>; the <see cref="Thinning"/> it returns adds its part of them
/// for each unit of a statistics pass; then its <see cref="TaskMask"/> thins the task vector tile by tile. The
/// primitives beneath are in <see cref="Sparsify"/> and <see cref="MagnitudeCut"/>.
/// </summary>
public abstract class Sparsifier
{
    /// <summary>TIES: keep the largest magnitudes (one cut per tensor, or per model with model_wide_trim).</summary>
    public static Sparsifier Magnitude { get; } = new MagnitudeTrim();

    /// <summary>DARE: keep each entry with probability density.</summary>
    public static Sparsifier Random { get; } = new RandomDrop(ranked: false);

    /// <summary>Model Breadcrumbs: drop the largest magnitudes (outliers, a gamma share) and the smallest.</summary>
    public static Sparsifier MagnitudeOutliers { get; } = new OutlierBand();

    /// <summary>DELLA: keep at random with a probability that rises with magnitude rank within each row.</summary>
    public static Sparsifier Della { get; } = new RandomDrop(ranked: true);

    /// <summary>The parameters it reads besides density (Breadcrumbs' gamma, DELLA's epsilon).</summary>
    public virtual IReadOnlyList<NumberParameter> Parameters => [];

    /// <summary>
    /// The elements a chunk must hold whole (DELLA ranks within rows); 0 when a chunk may end anywhere.
    /// </summary>
    public virtual long RowLength(long[] shape) => 0;

    /// <summary>
    /// Whether a per-model parameter of this sparsifier is acceptable for one input; null when it is, else why not.
    /// </summary>
    public virtual string? Problem(MergeInputsInfo inputs, int input, double density) => null;

    /// <summary>
    /// Input <paramref name="input"/>'s thinning of this tensor (<paramref name="elements"/> entries), its statistics
    /// placed in <paramref name="layout"/>; null when density ≥ 1, which keeps everything (as in mergekit).
    /// </summary>
    /// <param name="modelWide">For the magnitude trim: the cut comes from the model-wide pre-pass.</param>
    public abstract Thinning? Plan(
        MergeInputsInfo inputs,
        int input,
        long elements,
        double density,
        bool rescale,
        bool modelWide,
        StatisticsLayout layout
    );
}

/// <summary>
/// One fine-tune's thinning of one tensor: its share of the statistics passes, and its mask for a chunk.
/// </summary>
public abstract class Thinning(int input)
{
    /// <summary>The input whose task vector this thins.</summary>
    public int Input { get; } = input;

    /// <summary>
    /// Adds this unit's part of the statistics; <paramref name="scratch"/> holds at least the unit's length.
    /// </summary>
    public abstract void Accumulate(MergeInputs unit, StatisticsPass pass, Span<float> scratch);

    /// <summary>
    /// The mask for the chunk (or whole tensor) <paramref name="inputs"/>, from the tensor's statistics.
    /// </summary>
    public abstract TaskMask Mask(MergeInputs inputs, TensorStatistics statistics);

    /// <summary>
    /// Writes the task vector x − base of this unit or chunk into <paramref name="scratch"/> and returns it.
    /// </summary>
    protected Span<float> TaskVector(MergeInputs inputs, Span<float> scratch)
    {
        var delta = scratch[..inputs.Length];
        TensorPrimitives.Subtract(inputs[Input], inputs[inputs.BaseIndex], delta);
        return delta;
    }
}

/// <summary>Thins one task vector of one chunk, tile after tile in order (a cut's ties are kept in order).</summary>
public abstract class TaskMask
{
    /// <summary>Thins (and rescales) the tile holding the chunk's entries [start, start + tile.Length).</summary>
    public abstract void Apply(Span<float> tile, int start);
}

/// <summary>
/// The magnitude cuts: a band of the largest magnitudes, kept (TIES: one cut, nothing dropped above it; Breadcrumbs:
/// the largest dropped too). With <c>rescale</c>, ‖δ‖₁ in the first pass, and in the last the sum strictly inside the
/// band and the entries equal to each cut's key, from which ‖masked δ‖₁ follows without knowing where the kept ties
/// are.
/// </summary>
internal abstract class CutSparsifier : Sparsifier
{
    protected sealed class Band : Thinning
    {
        private readonly PopulationSlot _population;
        private readonly bool _dropsOutliers;
        private readonly (SumSlot L1, SumSlot Inside, SumSlot AtKeep, SumSlot AtDrop)? _rescale;

        public Band(int input, StatisticsLayout layout, CutRequest cuts, bool dropsOutliers, bool rescale)
            : base(input)
        {
            _population = layout.Population(cuts);
            _dropsOutliers = dropsOutliers;
            if (rescale)
                _rescale = (layout.FirstSum(), layout.LastSum(), layout.LastSum(), layout.LastSum());
        }

        public override void Accumulate(MergeInputs unit, StatisticsPass pass, Span<float> scratch)
        {
            bool counts = pass.Counts(_population);
            bool sums = _rescale is not null && pass.Kind != StatisticsPassKind.Fine;
            if (!counts && !sums)
                return;
            var delta = TaskVector(unit, scratch);
            if (counts)
                pass.Count(_population, delta);
            if (_rescale is not { } slots || !sums)
                return;
            if (pass.Kind == StatisticsPassKind.First)
            {
                pass.Add(slots.L1, Sparsify.L1Norm(delta));
                return;
            }
            var (keep, drop) = Cuts(unit.Statistics!, tensor: true);
            pass.Add(slots.Inside, MagnitudeCut.MagnitudeSum(delta, keep.Key, drop.Key));
            pass.Add(slots.AtKeep, MagnitudeCut.CountKey(delta, keep.Key));
            pass.Add(slots.AtDrop, MagnitudeCut.CountKey(delta, drop.Key));
        }

        public override TaskMask Mask(MergeInputs inputs, TensorStatistics statistics)
        {
            var (keep, drop) = Cuts(statistics, tensor: false);
            return new CutMask(
                keep,
                drop,
                _rescale is { } slots ? Sparsify.RescaleFactor(statistics[slots.L1], MaskedL1(statistics, slots)) : null
            );
        }

        /// <summary>The kept band: the tensor's cuts, or this chunk's share of them.</summary>
        private (MagnitudeCut Keep, MagnitudeCut Drop) Cuts(TensorStatistics stats, bool tensor)
        {
            var keep = tensor ? stats.TensorCut(_population) : stats.Cut(_population);
            if (!_dropsOutliers)
                return (keep, MagnitudeCut.KeepNone);
            return (keep, tensor ? stats.TensorCut(_population, 1) : stats.Cut(_population, 1));
        }

        /// <summary>
        /// ‖masked δ‖₁: the entries strictly inside the band, plus those equal to a cut's key that the band keeps.
        /// </summary>
        private double MaskedL1(
            TensorStatistics stats,
            (SumSlot L1, SumSlot Inside, SumSlot AtKeep, SumSlot AtDrop) slots
        )
        {
            var (keep, drop) = Cuts(stats, tensor: true);
            long atKeep = (long)stats[slots.AtKeep],
                atDrop = (long)stats[slots.AtDrop];
            long keptAtKeep = Math.Min(keep.TiesKept, atKeep),
                droppedAtDrop = Math.Min(drop.TiesKept, atDrop);
            double inside = stats[slots.Inside];
            if (keep.Key == drop.Key)
                return inside + Magnitudes(keptAtKeep - droppedAtDrop, keep);
            return inside + Magnitudes(keptAtKeep, keep) + Magnitudes(atDrop - droppedAtDrop, drop);
        }

        /// <summary>
        /// count entries of the cut's magnitude (none for a cut that keeps nothing, whose key is no magnitude).
        /// </summary>
        private static double Magnitudes(long count, MagnitudeCut cut) =>
            count == 0 ? 0 : count * (double)cut.Threshold;
    }

    private sealed class CutMask(MagnitudeCut keep, MagnitudeCut drop, float? rescale) : TaskMask
    {
        private MagnitudeCut _keep = keep,
            _drop = drop;

        public override void Apply(Span<float> tile, int start)
        {
            MagnitudeCut.ApplyBand(tile, ref _keep, ref _drop);
            if (rescale is { } factor)
                TensorPrimitives.Multiply(tile, factor, tile);
        }
    }
}

/// <summary>
/// TIES's trim (mergekit <c>magnitude</c>): the ⌊density·n⌋ largest magnitudes, or the model-wide cut's share.
/// </summary>
internal sealed class MagnitudeTrim : CutSparsifier
{
    public override Thinning? Plan(
        MergeInputsInfo inputs,
        int input,
        long elements,
        double density,
        bool rescale,
        bool modelWide,
        StatisticsLayout layout
    ) =>
        density >= 1
            ? null
            : new Band(
                input,
                layout,
                modelWide ? CutRequest.ModelWide(input) : CutRequest.TopK(Sparsify.KeepCount(density, elements)),
                false,
                rescale
            );
}

/// <summary>
/// Model Breadcrumbs (mergekit <c>magnitude_outliers</c>): the band between the outliers and the smallest.
/// </summary>
internal sealed class OutlierBand : CutSparsifier
{
    public static readonly NumberParameter Gamma = MethodParameter.Number(
        "gamma",
        ParameterScope.PerModel,
        0.01,
        "Fraction of the largest magnitudes (outliers) dropped.",
        NumberRange.Fraction
    );

    public override IReadOnlyList<NumberParameter> Parameters => [Gamma];

    public override Thinning? Plan(
        MergeInputsInfo inputs,
        int input,
        long elements,
        double density,
        bool rescale,
        bool modelWide,
        StatisticsLayout layout
    )
    {
        if (density >= 1)
            return null;
        var (keep, drop) = Sparsify.OutlierBand(density, inputs[Gamma, input], elements);
        return new Band(input, layout, CutRequest.TopK(keep, drop), true, rescale);
    }
}

/// <summary>
/// DARE's drop (mergekit <c>random</c>) or, ranked, DELLA's MagPrune (<c>della_magprune</c>, within rows): each entry
/// kept at random, with one probability or one that rises with its magnitude rank. With <c>rescale</c>, ‖δ‖₁ and
/// ‖masked δ‖₁ in the first pass (the mask is drawn from counter-based streams, so the pass draws the same one).
/// </summary>
internal sealed class RandomDrop(bool ranked) : Sparsifier
{
    public static readonly NumberParameter Epsilon = MethodParameter.Number(
        "epsilon",
        ParameterScope.PerModel,
        0.15,
        "Half-width of the keep probabilities: from density − epsilon (smallest magnitude) to density + epsilon "
            + "(largest).",
        NumberRange.NonNegative
    );

    public override IReadOnlyList<NumberParameter> Parameters => ranked ? [Epsilon] : [];

    public override long RowLength(long[] shape) => ranked ? Sparsify.DellaRowLength(shape) : 0;

    public override string? Problem(MergeInputsInfo inputs, int input, double density)
    {
        if (!ranked || density is <= 0 or >= 1)
            return null;
        double epsilon = inputs[Epsilon, input];
        return density - epsilon > 0 && density + epsilon < 1
            ? null
            : $"epsilon {epsilon} with density {density} gives keep probabilities outside (0, 1); choose epsilon so "
                + $"that density ± epsilon is in (0, 1)";
    }

    public override Thinning? Plan(
        MergeInputsInfo inputs,
        int input,
        long elements,
        double density,
        bool rescale,
        bool modelWide,
        StatisticsLayout layout
    ) =>
        density >= 1 ? null : new Drop(input, density, ranked, rescale ? (layout.FirstSum(), layout.FirstSum()) : null);

    private sealed class Drop(int input, double density, bool ranked, (SumSlot L1, SumSlot MaskedL1)? rescale)
        : Thinning(input)
    {
        public override void Accumulate(MergeInputs unit, StatisticsPass pass, Span<float> scratch)
        {
            if (rescale is not { } slots || pass.Kind != StatisticsPassKind.First)
                return;
            var delta = TaskVector(unit, scratch);
            pass.Add(slots.L1, Sparsify.L1Norm(delta));
            Thin(unit, 0, delta);
            pass.Add(slots.MaskedL1, Sparsify.L1Norm(delta));
        }

        public override TaskMask Mask(MergeInputs inputs, TensorStatistics statistics) =>
            new DropMask(
                this,
                inputs,
                rescale is { } slots ? Sparsify.RescaleFactor(statistics[slots.L1], statistics[slots.MaskedL1]) : null
            );

        /// <summary>
        /// Drops entries of the run starting at <paramref name="start"/> of <paramref name="inputs"/>' chunk.
        /// </summary>
        public void Thin(MergeInputs inputs, int start, Span<float> delta)
        {
            long first = inputs.ElementOffset + start;
            if (!ranked)
                Sparsify.Random(delta, density, inputs.Random(Input), first);
            else
                Sparsify.Della(delta, inputs.Shape, density, inputs[Epsilon, Input], inputs.Random(Input), first);
        }
    }

    private sealed class DropMask(Drop drop, MergeInputs inputs, float? rescale) : TaskMask
    {
        public override void Apply(Span<float> tile, int start)
        {
            drop.Thin(inputs, start, tile);
            if (rescale is { } factor)
                TensorPrimitives.Multiply(tile, factor, tile);
        }
    }
}
