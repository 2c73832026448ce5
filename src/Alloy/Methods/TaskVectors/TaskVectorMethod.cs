using System.Buffers;
using System.Numerics.Tensors;
using Alloy.Tensors;

namespace Alloy.Methods.TaskVectors;

/// <summary>How each task vector is thinned before the merge.</summary>
public enum Sparsification
{
    None,
    /// <summary>TIES: keep the largest magnitudes.</summary>
    Magnitude,
    /// <summary>DARE: keep entries at random with probability density.</summary>
    Random,
    /// <summary>Model Breadcrumbs: drop the largest (outliers) and the smallest magnitudes.</summary>
    MagnitudeOutliers,
    /// <summary>DELLA: keep at random with probability rising with magnitude rank.</summary>
    Della,
}

/// <summary>
/// One configuration of the task-vector pipeline, as mergekit configures its one engine for eight methods.
/// </summary>
/// <param name="Sparsification">How each task vector is thinned.</param>
/// <param name="SignConsensus">TIES's sign election and disjoint merge, instead of a plain weighted sum.</param>
/// <param name="DefaultNormalize">Default of <c>normalize</c>.</param>
/// <param name="DefaultRescale">Default of <c>rescale</c>.</param>
/// <param name="TallConsensus">Keep only entries at least k tasks' TALL masks select (consensus merging).</param>
public sealed record TaskVectorPipeline(Sparsification Sparsification, bool SignConsensus, bool DefaultNormalize, bool DefaultRescale,
    bool TallConsensus = false);

/// <summary>
/// The task-vector engine: per tensor, deltas δᵢ = xᵢ − base → sparsify each → weight → elect signs → combine → (TALL
/// consensus) → scale (λ, LiNeS) → add to the base. Each step is a public primitive of this folder; each method of the
/// family is this class with one <see cref="TaskVectorPipeline"/>, its parameters declared from it.
/// </summary>
public abstract class TaskVectorMethod(TaskVectorPipeline pipeline) : MergeMethod
{
    public TaskVectorPipeline Pipeline { get; } = pipeline;

    public override BaseModelUse BaseModel => BaseModelUse.Required;
    public override EmbeddingShapeRule EmbeddingShapes => EmbeddingShapeRule.TruncateToBase;
    public override bool SkipsMismatchedInputs => true;

    /// <summary>
    /// Every step but sparsification is elementwise; top-k cuts and L1 norms are statistics of the whole tensor, gathered
    /// before its chunks are merged, and DELLA ranks within rows (<see cref="Chunking"/>).
    /// </summary>
    public override bool IsElementwise => Pipeline.Sparsification == Sparsification.None;

    /// <summary>The pipeline runs tile by tile (<see cref="Tile"/> entries, or DELLA's whole rows), so no chunk-sized scratch.</summary>
    public override int ScratchBuffers(int inputCount) => 0;

    /// <summary>Entries per tile: every model's sparsified task vector of a tile stays in the L1/L2 cache until it is combined.</summary>
    private const int Tile = 4096;

    public override IReadOnlyList<ParameterSpec> Parameters { get; } = DeclareParameters(pipeline);

    private static List<ParameterSpec> DeclareParameters(TaskVectorPipeline p)
    {
        bool sparsifies = p.Sparsification != Sparsification.None;
        var list = new List<ParameterSpec>
        {
            ParameterSpec.PerModelRequired("weight", "Weight of each task vector."),
            ParameterSpec.PerModel("density", 1, sparsifies
                ? "Fraction of each task vector's entries kept (1 keeps all)."
                : "Accepted for compatibility; this method does not sparsify."),
        };
        if (p.Sparsification == Sparsification.MagnitudeOutliers)
            list.Add(ParameterSpec.PerModel("gamma", 0.01, "Fraction of the largest magnitudes (outliers) dropped."));
        if (p.Sparsification == Sparsification.Della)
            list.Add(ParameterSpec.PerModel("epsilon", 0.15, "Half-width of the keep probabilities: from density − epsilon (smallest magnitude) to density + epsilon (largest)."));
        if (p.TallConsensus)
        {
            list.Add(ParameterSpec.PerModel("lambda", 1, "TALL mask threshold λ of each task: it keeps entries where |τ| > λ·|τ_MTL − τ| (mergekit's name)."));
            list.Add(ParameterSpec.PerModel("k", 1, "Keep entries that at least k tasks' TALL masks select (one value for all models)."));
            list.Add(ParameterSpec.Global("alpha", 1, "Scale of the consensus task vector."));
        }
        else
        {
            list.Add(ParameterSpec.Global("lambda", 1, "Scale of the combined task vector."));
        }
        list.Add(ParameterSpec.Global("normalize", p.DefaultNormalize ? 1 : 0, p.SignConsensus
            ? "Divide by the sum of the weights of the models agreeing with the elected sign, per entry."
            : "Divide the weighted sum of task vectors by the sum of the weights."));
        list.Add(ParameterSpec.Global("rescale", p.DefaultRescale ? 1 : 0, sparsifies
            ? "Rescale each sparsified task vector to its original L1 norm."
            : "Accepted for compatibility; no effect without sparsification."));
        list.Add(ParameterSpec.Global("int8_mask", 0, "Accepted for compatibility; a memory option in mergekit with no numeric effect."));
        if (p.SignConsensus)
        {
            list.Add(ParameterSpec.Global("unweighted_sign_election", 0, "Elect signs from the task vectors without their weights (the TIES paper, PEFT) instead of weighted (mergekit)."));
            list.Add(ParameterSpec.Global("count_sign_election", 0, "Elect the majority of signs instead of the sign of the sum (PEFT's \"frequency\")."));
            list.Add(ParameterSpec.Global("normalize_by_count", 0, "Divide by the number of agreeing models instead of their weights (the TIES paper's dis-mean, PEFT); implies normalize."));
        }
        if (p.Sparsification == Sparsification.Magnitude)
            list.Add(ParameterSpec.Global("model_wide_trim", 0, "Trim each task vector with one magnitude threshold over all of its tensors (the TIES paper) instead of per tensor (mergekit)."));
        list.Add(ParameterSpec.Global("lines_alpha", 1, "LiNeS: scale of the first layer's task vector and of tensors outside the layers."));
        list.Add(ParameterSpec.Global("lines_beta", 0, "LiNeS: added scale at the last layer, linear in depth (0 turns LiNeS off)."));
        return list;
    }

    public override void Validate(MergeInputsInfo inputs)
    {
        double? k = null;
        for (int i = 0; i < inputs.Count; i++)
        {
            if (i == inputs.BaseIndex) continue;
            string where = $"model '{inputs.ModelNames[i]}', tensor '{inputs.TensorName}'";
            double density = inputs.ForModel(i, "density");
            // Methods that do not sparsify ignore density, as mergekit does.
            if (Pipeline.Sparsification != Sparsification.None && !(density >= 0))
                throw new AlloyException($"{Name}: density {density} for {where} is not a fraction; use a value from 0 to 1");
            if (Pipeline.Sparsification == Sparsification.MagnitudeOutliers && !(inputs.ForModel(i, "gamma") >= 0))
                throw new AlloyException($"{Name}: gamma {inputs.ForModel(i, "gamma")} for {where} is negative; use the fraction of outliers to drop, e.g. 0.01");
            if (Pipeline.Sparsification == Sparsification.Della && density is > 0 and < 1)
            {
                double epsilon = inputs.ForModel(i, "epsilon");
                if (!(density - epsilon > 0 && density + epsilon < 1))
                    throw new AlloyException($"{Name}: epsilon {epsilon} with density {density} for {where} gives keep probabilities outside (0, 1); choose epsilon so that density ± epsilon is in (0, 1)");
            }
            if (Pipeline.TallConsensus)
            {
                double own = inputs.ForModel(i, "k");
                if (k is { } first && first != own)
                    throw new AlloyException($"{Name}: k differs between models for tensor '{inputs.TensorName}' ({first} and {own} for '{inputs.ModelNames[i]}'); k is one count for all tasks, set it once under parameters:");
                k = own;
            }
        }
    }

    public override double? ModelWideKeepFraction(MergeInputsInfo inputs, int input) =>
        Pipeline.Sparsification == Sparsification.Magnitude && input != inputs.BaseIndex && inputs.Global("model_wide_trim") != 0
            ? inputs.ForModel(input, "density")
            : null;

    /// <summary>
    /// The statistics, per fine-tune m (its place among the non-base inputs): population m is its task vector, cut by a
    /// magnitude trim (one cut, or the model-wide one) or Breadcrumbs' band (keep, drop); with <c>rescale</c>, first sums
    /// 2m = ‖δ‖₁ and 2m + 1 = ‖masked δ‖₁ (random masks), and for cuts last sums 3m = Σ|δ| strictly inside the band and
    /// 3m + 1, 3m + 2 = the entries equal to each cut's key, from which ‖masked δ‖₁ follows without knowing where the
    /// kept ties are.
    /// </summary>
    public override ChunkPlan? Chunking(MergeInputsInfo inputs, long[] shape)
    {
        if (Pipeline.Sparsification == Sparsification.None) return ChunkPlan.Elementwise;
        int[] models = InputRules.NonBase(inputs);
        long n = 1;
        foreach (long size in shape) n *= size;
        bool cutting = Pipeline.Sparsification is Sparsification.Magnitude or Sparsification.MagnitudeOutliers;
        bool rescaled = false;
        var cuts = new CutRequest[models.Length];
        for (int m = 0; m < models.Length; m++)
        {
            int i = models[m];
            double density = inputs.ForModel(i, "density");
            cuts[m] = CutRequest.None;
            if (density >= 1) continue;
            rescaled |= inputs.Global("rescale") != 0;
            if (Pipeline.Sparsification == Sparsification.Magnitude)
            {
                // A model-wide cut handed to a direct call counts as asked for, as the executor hands one only when asked.
                bool modelWide = ModelWideKeepFraction(inputs, i) is not null || (inputs as MergeInputs)?.ModelWideCut(i) is not null;
                cuts[m] = modelWide ? CutRequest.ModelWide(i) : CutRequest.TopK(Sparsify.KeepCount(density, n));
            }
            else if (Pipeline.Sparsification == Sparsification.MagnitudeOutliers)
            {
                var (keep, drop) = Sparsify.OutlierBand(density, inputs.ForModel(i, "gamma"), n);
                cuts[m] = CutRequest.TopK(keep, drop);
            }
        }
        return new ChunkPlan
        {
            RowLength = Pipeline.Sparsification == Sparsification.Della ? Sparsify.DellaRowLength(shape) : 0,
            FirstSums = rescaled ? 2 * models.Length : 0,
            LastSums = rescaled && cutting ? 3 * models.Length : 0,
            Cuts = cutting ? cuts : [],
        };
    }

    public override void Accumulate(MergeInputs unit, StatisticsPass pass)
    {
        int[] models = InputRules.NonBase(unit);
        var @base = unit[unit.BaseIndex];
        bool cutting = Pipeline.Sparsification is Sparsification.Magnitude or Sparsification.MagnitudeOutliers;
        float[] buffer = ArrayPool<float>.Shared.Rent(unit.Length);
        try
        {
            var delta = buffer.AsSpan(0, unit.Length);
            for (int m = 0; m < models.Length; m++)
            {
                int i = models[m];
                double density = unit.ForModel(i, "density");
                bool counts = cutting && pass.Counts(m), sums = pass.Sums.Length > 0;
                if (density >= 1 || !(counts || sums)) continue;
                TensorPrimitives.Subtract(unit[i], @base, delta);
                if (counts) pass.Count(m, delta);
                if (!sums) continue;
                if (pass.Kind == StatisticsPassKind.First)
                {
                    pass.Sums[2 * m] += Sparsify.L1Norm(delta);
                    if (Pipeline.Sparsification is Sparsification.Random or Sparsification.Della)
                    {
                        DropAtRandom(unit, i, density, 0, delta);
                        pass.Sums[2 * m + 1] += Sparsify.L1Norm(delta);
                    }
                }
                else
                {
                    var (keep, drop) = Band(unit.Statistics!, m, tensor: true);
                    pass.Sums[3 * m] += MagnitudeCut.MagnitudeSum(delta, keep.Key, drop.Key);
                    pass.Sums[3 * m + 1] += MagnitudeCut.CountKey(delta, keep.Key);
                    pass.Sums[3 * m + 2] += MagnitudeCut.CountKey(delta, drop.Key);
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
    }

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        int[] models = InputRules.FineTunesOrCopyBase(inputs, output);
        if (models.Length == 0) return;
        var @base = inputs[inputs.BaseIndex];
        var stats = Pipeline.Sparsification == Sparsification.None ? TensorStatistics.Empty : StatisticsOf(inputs);
        var tasks = models.Select((i, m) => new FineTune(this, inputs, stats, i, m)).ToArray();
        double scale = inputs.Global(Pipeline.TallConsensus ? "alpha" : "lambda")
            * LayerScaling.Factor(inputs.Position, inputs.Global("lines_alpha"), inputs.Global("lines_beta"));

        // Tiles of whole rows for DELLA, which ranks within rows.
        long rows = Pipeline.Sparsification == Sparsification.Della ? Sparsify.DellaRowLength(inputs.Shape) : 1;
        int tile = (int)Math.Min(Math.Max(1, Tile / rows) * rows, Math.Max(1, output.Length));
        var election = Pipeline.SignConsensus ? new Election(inputs, models) : null;
        double weightDivisor = WeightDivisor(inputs, models);
        // An election needs every model's task vector of a tile at once; a weighted sum adds them one by one.
        var deltas = new float[election is null ? 1 : models.Length][];
        float[]? counts = Pipeline.TallConsensus ? ArrayPool<float>.Shared.Rent(tile) : null;
        try
        {
            for (int b = 0; b < deltas.Length; b++) deltas[b] = ArrayPool<float>.Shared.Rent(tile);
            for (int start = 0; start < output.Length; start += tile)
            {
                int length = Math.Min(tile, output.Length - start);
                var merged = output.Slice(start, length);
                if (election is not null)
                {
                    for (int m = 0; m < models.Length; m++) tasks[m].TaskVector(start, deltas[m].AsSpan(0, length));
                    election.Merge(deltas, merged);
                }
                else
                {
                    // Σᵢ wᵢ·δᵢ / (Σᵢ wᵢ when normalizing, unless ~0), one task vector at a time.
                    merged.Clear();
                    foreach (var task in tasks)
                    {
                        float weight = (float)(task.Weight / weightDivisor);
                        if (!task.Sparsified)
                        {
                            SpanMath.AddScaledDifference(inputs[task.Input].Slice(start, length), @base.Slice(start, length), weight, merged);
                            continue;
                        }
                        var delta = deltas[0].AsSpan(0, length);
                        task.TaskVector(start, delta);
                        TensorPrimitives.MultiplyAdd(delta, weight, merged, merged);
                    }
                }
                if (counts is not null) KeepTallConsensus(inputs, models, start, merged, counts.AsSpan(0, length));
                TensorPrimitives.MultiplyAdd(merged, (float)scale, @base.Slice(start, length), merged);
            }
        }
        finally
        {
            foreach (var d in deltas)
                if (d is not null) ArrayPool<float>.Shared.Return(d);
            if (counts is not null) ArrayPool<float>.Shared.Return(counts);
        }
    }

    /// <summary>The divisor of the weighted sum: Σᵢ wᵢ when normalizing (unless ~0), else 1.</summary>
    private static double WeightDivisor(MergeInputs inputs, int[] models)
    {
        if (inputs.Global("normalize") == 0) return 1;
        double weightSum = models.Sum(i => inputs.ForModel(i, "weight"));
        return Math.Abs(weightSum) >= 1e-8 ? weightSum : 1;
    }

    /// <summary>TIES: elect a sign per entry, then merge the entries that agree with it, as the parameters say.</summary>
    private sealed class Election(MergeInputs inputs, int[] models)
    {
        private readonly double[] _weights = models.Select(i => inputs.ForModel(i, "weight")).ToArray();
        private readonly double[] _votes = models.Select(i => inputs.Global("unweighted_sign_election") != 0 ? 1 : inputs.ForModel(i, "weight")).ToArray();
        private readonly bool _byCount = inputs.Global("count_sign_election") != 0;
        private readonly DisjointDivisor _divisor = inputs.Global("normalize_by_count") != 0 ? DisjointDivisor.AgreeingCount
            : inputs.Global("normalize") != 0 ? DisjointDivisor.AgreeingWeights
            : DisjointDivisor.None;

        /// <summary>One tile: the elected signs go into <paramref name="merged"/>, which the disjoint merge then overwrites.</summary>
        public void Merge(float[][] deltas, Span<float> merged)
        {
            SignConsensus.Elect(deltas, _votes, _byCount, merged);
            SignConsensus.DisjointMerge(deltas, _weights, _votes, merged, merged, _divisor);
        }
    }

    /// <summary>Consensus merging: zero the combined task vector where fewer than k tasks' TALL masks agree.</summary>
    private static void KeepTallConsensus(MergeInputs inputs, int[] models, int start, Span<float> multiTask, Span<float> counts)
    {
        var @base = inputs[inputs.BaseIndex].Slice(start, multiTask.Length);
        counts.Clear();
        foreach (int i in models)
            TallMasks.AddMask(inputs[i].Slice(start, multiTask.Length), @base, multiTask, inputs.ForModel(i, "lambda"), counts);
        TallMasks.KeepConsensus(multiTask, counts, inputs.ForModel(models[0], "k"));
    }

    /// <summary>Applies the pipeline's random sparsification (DARE, DELLA) to a run of input i's task vector starting at <paramref name="start"/> of the span.</summary>
    private void DropAtRandom(MergeInputs inputs, int i, double density, int start, Span<float> delta)
    {
        long first = inputs.ElementOffset + start;
        if (Pipeline.Sparsification == Sparsification.Random)
            Sparsify.Random(delta, density, inputs.Random(i), first);
        else
            Sparsify.Della(delta, inputs.Shape, density, inputs.ForModel(i, "epsilon"), inputs.Random(i), first);
    }

    /// <summary>Fine-tune m's cuts: the kept band (a magnitude trim drops nothing above it).</summary>
    private (MagnitudeCut Keep, MagnitudeCut Drop) Band(TensorStatistics stats, int m, bool tensor)
    {
        var keep = tensor ? stats.TensorCut(m) : stats.Cut(m);
        if (Pipeline.Sparsification != Sparsification.MagnitudeOutliers) return (keep, MagnitudeCut.KeepNone);
        return (keep, tensor ? stats.TensorCut(m, 1) : stats.Cut(m, 1));
    }

    /// <summary>‖masked δ‖₁ of fine-tune m, from its statistics.</summary>
    private double MaskedL1(TensorStatistics stats, int m)
    {
        if (Pipeline.Sparsification is Sparsification.Random or Sparsification.Della) return stats.FirstSum(2 * m + 1);
        // Entries strictly inside the band, plus those equal to a cut's key that the band keeps.
        var (keep, drop) = Band(stats, m, tensor: true);
        long atKeep = (long)stats.LastSum(3 * m + 1), atDrop = (long)stats.LastSum(3 * m + 2);
        long keptAtKeep = Math.Min(keep.TiesKept, atKeep), droppedAtDrop = Math.Min(drop.TiesKept, atDrop);
        double inside = stats.LastSum(3 * m);
        if (keep.Key == drop.Key) return inside + Magnitudes(keptAtKeep - droppedAtDrop, keep);
        return inside + Magnitudes(keptAtKeep, keep) + Magnitudes(atDrop - droppedAtDrop, drop);
    }

    /// <summary>count entries of the cut's magnitude (none for a cut that keeps nothing, whose key is no magnitude).</summary>
    private static double Magnitudes(long count, MagnitudeCut cut) => count == 0 ? 0 : count * (double)cut.Threshold;

    /// <summary>One fine-tune of a tensor: its weight and how its task vector is sparsified, tile after tile in order.</summary>
    private sealed class FineTune
    {
        private readonly TaskVectorMethod _method;
        private readonly MergeInputs _inputs;
        private readonly double _density;
        private readonly float? _rescale;
        private MagnitudeCut _keep, _drop;

        public FineTune(TaskVectorMethod method, MergeInputs inputs, TensorStatistics stats, int input, int m)
        {
            _method = method;
            _inputs = inputs;
            Input = input;
            Weight = inputs.ForModel(input, "weight");
            _density = inputs.ForModel(input, "density");
            // consensus_ta merges whole task vectors (mergekit skipped its sparsification); density ≥ 1 keeps everything.
            Sparsified = method.Pipeline.Sparsification != Sparsification.None && _density < 1;
            if (!Sparsified) return;
            if (method.Pipeline.Sparsification is Sparsification.Magnitude or Sparsification.MagnitudeOutliers)
                (_keep, _drop) = method.Band(stats, m, tensor: false);
            if (inputs.Global("rescale") != 0)
                _rescale = Sparsify.RescaleFactor(stats.FirstSum(2 * m), method.MaskedL1(stats, m));
        }

        public int Input { get; }

        public double Weight { get; }

        public bool Sparsified { get; }

        /// <summary>The task vector over [start, start + delta.Length) of the chunk, sparsified (and rescaled); tiles must come in order.</summary>
        public void TaskVector(int start, Span<float> delta)
        {
            TensorPrimitives.Subtract(_inputs[Input].Slice(start, delta.Length), _inputs[_inputs.BaseIndex].Slice(start, delta.Length), delta);
            if (!Sparsified) return;
            if (_method.Pipeline.Sparsification is Sparsification.Magnitude or Sparsification.MagnitudeOutliers)
                MagnitudeCut.ApplyBand(delta, ref _keep, ref _drop);
            else
                _method.DropAtRandom(_inputs, Input, _density, start, delta);
            if (_rescale is { } factor) TensorPrimitives.Multiply(delta, factor, delta);
        }
    }
}
