using System.Buffers;
using System.Numerics.Tensors;

namespace Alloy.Methods.TaskVectors;

/// <summary>
/// One configuration of the task-vector pipeline, as mergekit configures its one engine for eight methods.
/// </summary>
/// <param name="Sparsifier">How each task vector is thinned (null: not at all).</param>
/// <param name="SignConsensus">TIES's sign election and disjoint merge, instead of a plain weighted sum.</param>
/// <param name="DefaultNormalize">Default of <c>normalize</c>.</param>
/// <param name="DefaultRescale">Default of <c>rescale</c>.</param>
/// <param name="TallConsensus">Keep only entries at least k tasks' TALL masks select (consensus merging).</param>
public sealed record TaskVectorPipeline(
    Sparsifier? Sparsifier,
    bool SignConsensus,
    bool DefaultNormalize,
    bool DefaultRescale,
    bool TallConsensus = false
);

/// <summary>
/// The task-vector engine: per tensor, deltas δᵢ = xᵢ − base → sparsify each → weight → elect signs → combine → (TALL
/// consensus) → scale (λ, LiNeS) → add to the base. Each step is a public primitive of this folder and the
/// sparsification a <see cref="TaskVectors.Sparsifier"/>; each method of the family is this class with one
/// <see cref="TaskVectorPipeline"/>, its parameters declared from it.
/// </summary>
public abstract class TaskVectorMethod : MergeMethod
{
    protected TaskVectorMethod(MethodDeclaration declaration, TaskVectorPipeline pipeline)
        : this(declaration, pipeline, new TaskVectorParameters(pipeline)) { }

    private TaskVectorMethod(
        MethodDeclaration declaration,
        TaskVectorPipeline pipeline,
        TaskVectorParameters parameters
    )
        : base(
            declaration with
            {
                BaseModel = BaseModelUse.Required,
                EmbeddingShapes = EmbeddingShapeRule.TruncateToBase,
                SkipsMismatchedInputs = true,
                // Every step but sparsification is elementwise; cuts and L1 norms are statistics of the whole tensor,
                // gathered before its chunks are merged, and DELLA ranks within rows (Chunking).
                Elementwise = pipeline.Sparsifier is null,
                Parameters = parameters.All,
            }
        )
    {
        Pipeline = pipeline;
        Declared = parameters;
    }

    public TaskVectorPipeline Pipeline { get; }

    /// <summary>This configuration's parameter declarations.</summary>
    public TaskVectorParameters Declared { get; }

    /// <summary>
    /// The pipeline runs tile by tile (<see cref="Tile"/> entries, or DELLA's whole rows), so no chunk-sized scratch.
    /// </summary>
    public override int ScratchBuffers(int inputCount) => 0;

    /// <summary>
    /// Entries per tile: every model's sparsified task vector of a tile stays in the L1/L2 cache until it is combined.
    /// </summary>
    private const int Tile = 4096;

    public override void Validate(MergeInputsInfo inputs)
    {
        int? k = null;
        foreach (int i in InputRules.NonBase(inputs))
        {
            if (Pipeline.Sparsifier?.Problem(inputs, i, inputs[Declared.Density, i]) is { } problem)
                throw new AlloyException(
                    $"{Name}: {problem} (model '{inputs.ModelNames[i]}', tensor '{inputs.TensorName}')"
                );
            if (Declared.ConsensusK is not { } consensus)
                continue;
            int own = inputs[consensus, i];
            if (k is { } first && first != own)
                throw new AlloyException(
                    $"{Name}: k differs between models for tensor '{inputs.TensorName}' ({first} and {own} for "
                        + $"'{inputs.ModelNames[i]}'); k is one count for all tasks, set it once under parameters:"
                );
            k = own;
        }
    }

    public override double? ModelWideKeepFraction(MergeInputsInfo inputs, int input) =>
        Declared.ModelWideTrim is { } trim && input != inputs.BaseIndex && inputs[trim]
            ? inputs[Declared.Density, input]
            : null;

    /// <summary>
    /// Each fine-tune's thinning of this tensor, its statistics laid out by name, and the resulting plan.
    /// </summary>
    private (ChunkPlan Plan, Thinning?[] Thinnings) Layout(MergeInputsInfo inputs, long[] shape)
    {
        int[] models = InputRules.NonBase(inputs);
        var sparsifier = Pipeline.Sparsifier!;
        long n = 1;
        foreach (long size in shape)
            n *= size;
        var layout = new StatisticsLayout();
        var thinnings = new Thinning?[models.Length];
        for (int m = 0; m < models.Length; m++)
        {
            int i = models[m];
            // A model-wide cut handed to a direct call counts as asked for, as the executor hands one only when asked.
            bool modelWide =
                ModelWideKeepFraction(inputs, i) is not null || (inputs as MergeInputs)?.ModelWideCut(i) is not null;
            thinnings[m] = sparsifier.Plan(
                inputs,
                i,
                n,
                inputs[Declared.Density, i],
                inputs[Declared.Rescale],
                modelWide,
                layout
            );
        }
        return (layout.Plan(sparsifier.RowLength(shape)), thinnings);
    }

    public override ChunkPlan? Chunking(MergeInputsInfo inputs, long[] shape) =>
        Pipeline.Sparsifier is null ? ChunkPlan.Elementwise : Layout(inputs, shape).Plan;

    public override void Accumulate(MergeInputs unit, StatisticsPass pass)
    {
        float[] buffer = ArrayPool<float>.Shared.Rent(unit.Length);
        try
        {
            foreach (var thinning in Layout(unit, unit.Shape).Thinnings)
                thinning?.Accumulate(unit, pass, buffer.AsSpan(0, unit.Length));
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
    }

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        int[] models = InputRules.FineTunesOrCopyBase(inputs, output);
        if (models.Length == 0)
            return;
        var @base = inputs[inputs.BaseIndex];
        TaskMask?[]? masks = null;
        if (Pipeline.Sparsifier is not null)
        {
            var stats = StatisticsOf(inputs);
            masks = [.. Layout(inputs, inputs.Shape).Thinnings.Select(t => t?.Mask(inputs, stats))];
        }
        using var tasks = new TaskVectorSet(inputs, masks: masks);
        var weights = models.Select(i => inputs[Declared.Weight, i]).ToArray();
        double scale =
            inputs[Declared.Scale]
            * LayerScaling.Factor(
                inputs.Position,
                inputs[TaskVectorParameters.LinesAlpha],
                inputs[TaskVectorParameters.LinesBeta]
            );

        // Tiles of whole rows for DELLA, which ranks within rows.
        long rows = Math.Max(1, Pipeline.Sparsifier?.RowLength(inputs.Shape) ?? 1);
        int tile = (int)Math.Min(Math.Max(1, Tile / rows) * rows, Math.Max(1, output.Length));
        var election = Pipeline.SignConsensus ? new Election(this, inputs, weights) : null;
        double weightDivisor = WeightDivisor(inputs, weights);
        // An election needs every model's task vector of a tile at once; a weighted sum adds them one by one.
        var deltas = election is null ? null : new float[models.Length][];
        float[]? counts = Declared.ConsensusK is not null ? ArrayPool<float>.Shared.Rent(tile) : null;
        try
        {
            for (int b = 0; b < (deltas?.Length ?? 0); b++)
                deltas![b] = ArrayPool<float>.Shared.Rent(tile);
            for (int start = 0; start < output.Length; start += tile)
            {
                int length = Math.Min(tile, output.Length - start);
                var merged = output.Slice(start, length);
                if (election is not null)
                {
                    for (int m = 0; m < models.Length; m++)
                        tasks.Write(m, start, deltas![m].AsSpan(0, length));
                    election.Merge(deltas!, merged);
                }
                else
                {
                    // Σᵢ wᵢ·δᵢ / (Σᵢ wᵢ when normalizing, unless ~0), one task vector at a time.
                    merged.Clear();
                    for (int m = 0; m < models.Length; m++)
                        tasks.AddTo(m, start, (float)(weights[m] / weightDivisor), merged);
                }
                if (counts is not null)
                    KeepTallConsensus(inputs, models, start, merged, counts.AsSpan(0, length));
                TensorPrimitives.MultiplyAdd(merged, (float)scale, @base.Slice(start, length), merged);
            }
        }
        finally
        {
            foreach (var d in deltas ?? [])
                if (d is not null)
                    ArrayPool<float>.Shared.Return(d);
            if (counts is not null)
                ArrayPool<float>.Shared.Return(counts);
        }
    }

    /// <summary>The divisor of the weighted sum: Σᵢ wᵢ when normalizing (unless ~0), else 1.</summary>
    private double WeightDivisor(MergeInputs inputs, double[] weights)
    {
        if (!inputs[Declared.Normalize])
            return 1;
        double weightSum = weights.Sum();
        return Math.Abs(weightSum) >= 1e-8 ? weightSum : 1;
    }

    /// <summary>
    /// TIES: elect a sign per entry, then merge the entries that agree with it, as the parameters say.
    /// </summary>
    private sealed class Election
    {
        private readonly double[] _weights,
            _votes;
        private readonly bool _byCount;
        private readonly DisjointDivisor _divisor;

        public Election(TaskVectorMethod method, MergeInputs inputs, double[] weights)
        {
            var p = method.Declared;
            _weights = weights;
            _votes = inputs[p.UnweightedSignElection!] ? [.. weights.Select(_ => 1.0)] : weights;
            _byCount = inputs[p.CountSignElection!];
            _divisor =
                inputs[p.NormalizeByCount!] ? DisjointDivisor.AgreeingCount
                : inputs[p.Normalize] ? DisjointDivisor.AgreeingWeights
                : DisjointDivisor.None;
        }

        /// <summary>
        /// One tile: the elected signs go into <paramref name="merged"/>, which the disjoint merge then overwrites.
        /// </summary>
        public void Merge(float[][] deltas, Span<float> merged)
        {
            SignConsensus.Elect(deltas, _votes, _byCount, merged);
            SignConsensus.DisjointMerge(deltas, _weights, _votes, merged, merged, _divisor);
        }
    }

    /// <summary>Consensus merging: zero the combined task vector where fewer than k tasks' TALL masks agree.</summary>
    private void KeepTallConsensus(
        MergeInputs inputs,
        int[] models,
        int start,
        Span<float> multiTask,
        Span<float> counts
    )
    {
        var @base = inputs[inputs.BaseIndex].Slice(start, multiTask.Length);
        counts.Clear();
        foreach (int i in models)
            TallMasks.AddMask(
                inputs[i].Slice(start, multiTask.Length),
                @base,
                multiTask,
                inputs[Declared.TallLambda!, i],
                counts
            );
        TallMasks.KeepConsensus(multiTask, counts, inputs[Declared.ConsensusK!, models[0]]);
    }
}

/// <summary>
/// The parameters of one <see cref="TaskVectorPipeline"/>, declared from it: weight and density always, the
/// sparsifier's own, λ (or consensus's α, λ and k), normalize and rescale with the pipeline's defaults, the sign
/// election's options, TIES's model-wide trim, LiNeS.
/// </summary>
public sealed class TaskVectorParameters
{
    public TaskVectorParameters(TaskVectorPipeline pipeline)
    {
        bool sparsifies = pipeline.Sparsifier is not null;
        Weight = MethodParameter.Number("weight", ParameterScope.PerModel, null, "Weight of each task vector.");
        // Where it has no effect, any number passes, as in mergekit (configs in the wild carry it).
        Density = sparsifies
            ? MethodParameter.Number(
                "density",
                ParameterScope.PerModel,
                1,
                "Fraction of each task vector's entries kept (1 keeps all).",
                NumberRange.Fraction
            )
            : MethodParameter.Number(
                "density",
                ParameterScope.PerModel,
                1,
                "Accepted for compatibility; this method does not sparsify."
            );
        var all = new List<MethodParameter> { Weight, Density };
        all.AddRange(pipeline.Sparsifier?.Parameters ?? []);
        if (pipeline.TallConsensus)
        {
            TallLambda = MethodParameter.Number(
                "lambda",
                ParameterScope.PerModel,
                1,
                "TALL mask threshold λ of each task: it keeps entries where |τ| > λ·|τ_MTL − τ| (mergekit's name).",
                NumberRange.NonNegative
            );
            ConsensusK = MethodParameter.Integer(
                "k",
                ParameterScope.PerModel,
                1,
                "Keep entries that at least k tasks' TALL masks select (one value for all models).",
                minimum: 0
            );
            Scale = MethodParameter.Number("alpha", ParameterScope.Global, 1, "Scale of the consensus task vector.");
            all.AddRange([TallLambda, ConsensusK, Scale]);
        }
        else
        {
            Scale = MethodParameter.Number("lambda", ParameterScope.Global, 1, "Scale of the combined task vector.");
            all.Add(Scale);
        }
        Normalize = MethodParameter.Boolean(
            "normalize",
            ParameterScope.Global,
            pipeline.DefaultNormalize,
            pipeline.SignConsensus
                ? "Divide by the sum of the weights of the models agreeing with the elected sign, per entry."
                : "Divide the weighted sum of task vectors by the sum of the weights."
        );
        Rescale = MethodParameter.Boolean(
            "rescale",
            ParameterScope.Global,
            pipeline.DefaultRescale,
            sparsifies
                ? "Rescale each sparsified task vector to its original L1 norm."
                : "Accepted for compatibility; no effect without sparsification."
        );
        all.AddRange([Normalize, Rescale, Int8Mask]);
        if (pipeline.SignConsensus)
        {
            UnweightedSignElection = MethodParameter.Boolean(
                "unweighted_sign_election",
                ParameterScope.Global,
                false,
                "Elect signs from the task vectors without their weights (the TIES paper, PEFT) instead of weighted "
                    + "(mergekit)."
            );
            CountSignElection = MethodParameter.Boolean(
                "count_sign_election",
                ParameterScope.Global,
                false,
                "Elect the majority of signs instead of the sign of the sum (PEFT's \"frequency\")."
            );
            NormalizeByCount = MethodParameter.Boolean(
                "normalize_by_count",
                ParameterScope.Global,
                false,
                "Divide by the number of agreeing models instead of their weights (the TIES paper's dis-mean, PEFT); "
                    + "implies normalize."
            );
            all.AddRange([UnweightedSignElection, CountSignElection, NormalizeByCount]);
        }
        if (pipeline.Sparsifier == Sparsifier.Magnitude)
        {
            ModelWideTrim = MethodParameter.Boolean(
                "model_wide_trim",
                ParameterScope.Global,
                false,
                "Trim each task vector with one magnitude threshold over all of its tensors (the TIES paper) instead "
                    + "of per tensor (mergekit)."
            );
            all.Add(ModelWideTrim);
        }
        all.AddRange([LinesAlpha, LinesBeta]);
        All = all;
    }

    /// <summary>Accepted for compatibility: a memory option in mergekit with no numeric effect.</summary>
    public static readonly BooleanParameter Int8Mask = MethodParameter.Boolean(
        "int8_mask",
        ParameterScope.Global,
        false,
        "Accepted for compatibility; a memory option in mergekit with no numeric effect."
    );

    public static readonly NumberParameter LinesAlpha = MethodParameter.Number(
        "lines_alpha",
        ParameterScope.Global,
        1,
        "LiNeS: scale of the first layer's task vector and of tensors outside the layers."
    );

    public static readonly NumberParameter LinesBeta = MethodParameter.Number(
        "lines_beta",
        ParameterScope.Global,
        0,
        "LiNeS: added scale at the last layer, linear in depth (0 turns LiNeS off)."
    );

    public IReadOnlyList<MethodParameter> All { get; }

    public NumberParameter Weight { get; }

    public NumberParameter Density { get; }

    /// <summary>
    /// λ, the combined task vector's scale; consensus merging calls it alpha (its λ is the TALL threshold).
    /// </summary>
    public NumberParameter Scale { get; }

    public BooleanParameter Normalize { get; }

    public BooleanParameter Rescale { get; }

    public NumberParameter? TallLambda { get; }

    public IntegerParameter? ConsensusK { get; }

    public BooleanParameter? UnweightedSignElection { get; }

    public BooleanParameter? CountSignElection { get; }

    public BooleanParameter? NormalizeByCount { get; }

    public BooleanParameter? ModelWideTrim { get; }
}
