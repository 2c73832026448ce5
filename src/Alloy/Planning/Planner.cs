using Alloy.Checkpoints;
using Alloy.Methods;
using Alloy.Recipes;
using Alloy.Recipes.Yaml;
using Alloy.Tensors;
using Alloy.Tokenizers;

namespace Alloy.Planning;

/// <summary>
/// How a raw state-dict merge (mergekit-pytorch) treats a tensor that some models lack: refuse, merge it from the
/// models that have it, or leave it out.
/// </summary>
public enum RawTensorPolicy
{
    Strict,
    Union,
    Intersection,
}

/// <param name="Raw">Merge state dicts tensor by tensor, without layers or architecture (null: an architecture-aware
/// merge).</param>
public sealed record PlanOptions(
    bool AllowCrimes = false,
    ulong Seed = PlanOptions.DefaultSeed,
    RawTensorPolicy? Raw = null
)
{
    /// <summary>The seed used when --random-seed is not given, so every run of a config gives the same bytes.</summary>
    public const ulong DefaultSeed = 0;
}

/// <summary>
/// Turns a recipe and its opened models into a <see cref="MergePlan"/>: mergekit's expansion of <c>models:</c> into one
/// slice, consecutive renumbering of sliced layers, pre-layer weights from the first slice and post-layer weights from
/// the last, parameters resolved per tensor (source → slice → global → default, gradients at the layer's fraction,
/// t = 0 outside the layers), and every shape, dtype and parameter checked before a byte is written.
/// </summary>
public sealed class Planner
{
    private readonly MergeRecipe _recipe;
    private readonly ModelSet _models;
    private readonly PlanOptions _options;
    private readonly Diagnostics _diagnostics;
    private readonly MergeMethod _method;
    private readonly IReadOnlyList<OutputSlice> _slices;
    private readonly List<TensorJob> _jobs = [];
    private readonly HashSet<string> _outputNames = new(StringComparer.Ordinal);
    private TokenizerPlan? _tokenizer;

    private Planner(
        MergeRecipe recipe,
        ModelSet models,
        PlanOptions options,
        Diagnostics diagnostics,
        MergeMethod method
    )
    {
        _recipe = recipe;
        _models = models;
        _options = options;
        _diagnostics = diagnostics;
        _method = method;
        _slices = SlicesOf(recipe, models, method);
    }

    public static MergeMethod FindMethod(MergeRecipe recipe) =>
        MethodRegistry.Find(recipe.Method)
        ?? throw new AlloyException(
            $"{recipe.MethodLocation}: unknown merge method '{recipe.Method}'; "
                + (
                    Suggestions.Closest(recipe.Method, MethodRegistry.All.Select(m => m.Name)) is { } near
                        ? $"did you mean '{near}'? "
                        : ""
                )
                + $"(available: {string.Join(", ", MethodRegistry.All.Select(m => m.Name))})"
        );

    public static MergePlan Create(MergeRecipe recipe, ModelSet models, PlanOptions options, Diagnostics diagnostics) =>
        new Planner(recipe, models, options, diagnostics, FindMethod(recipe)).Build();

    /// <summary>
    /// <paramref name="plan"/> with the parameters of <paramref name="recipe"/>, a recipe that differs from the plan's
    /// only in parameter values (as an evolutionary search or a coefficient sweep changes them): no header is read and
    /// no shape, input or tokenizer decision is made again; every parameter is checked and resolved anew, each tensor
    /// validated by its method, and side outputs planned again.
    /// </summary>
    public static MergePlan Reparameterize(MergePlan plan, MergeRecipe recipe, ModelSet models, Diagnostics diagnostics)
    {
        if (
            RecipeWriter.Write(RecipeWriter.WithoutParameters(recipe))
            != RecipeWriter.Write(RecipeWriter.WithoutParameters(plan.Recipe))
        )
            throw new AlloyException(
                $"{recipe.MethodLocation}: only parameter values may change between re-merges of one plan; the models, "
                    + $"slices, method, dtypes or tokenizer settings differ"
            );
        var planner = new Planner(recipe, models, plan.Options, diagnostics, plan.Method);
        ParameterCheck.Check(recipe, plan.Method, diagnostics);
        var jobs = plan.Jobs.Select(job => job.Origin is { } origin ? planner.Resolve(job, origin) : job).ToList();
        return planner.WithSideOutputs(plan with { Recipe = recipe, Jobs = jobs, SideOutputs = null });
    }

    private MergePlan Build()
    {
        ParameterCheck.Check(_recipe, _method, _diagnostics);
        // A raw state-dict merge writes no tokenizer (as mergekit-pytorch), so its tokenizer settings have nothing to
        // act on.
        _tokenizer = _options.Raw is null ? TokenizerPlan.Create(_recipe, _models, _diagnostics) : null;
        if (_options.Raw is not null && (_recipe.Tokenizer is not null || _recipe.ChatTemplate is not null))
            _diagnostics.Warn(
                "tokenizer and chat_template settings are ignored by a raw state-dict merge, which writes no tokenizer"
            );
        if (
            _method.Declaration.BaseModel == BaseModelUse.Required
            && _recipe.BaseModel is null
            && (_recipe.Slices ?? []).All(s => s.BaseModel is null)
        )
            throw new AlloyException($"{_recipe.MethodLocation}: merge method '{_method.Name}' needs a base_model");

        var donor = _models[_recipe.BaseModel ?? _recipe.ReferencedModels()[0]];
        CheckArchitectures(donor);
        if (_options.Raw is { } policy)
        {
            PlanRaw(policy);
            return WithSideOutputs(
                new MergePlan(_recipe, _method, _jobs, donor, 0, false, _recipe.OutDType ?? _recipe.DType, false)
                {
                    Options = _options,
                }
            );
        }
        var slices = _slices;
        foreach (var slice in slices)
            CheckSlice(slice);

        int outputLayers = slices.Sum(s => s.Sources[0].Range.Count);
        foreach (var name in donor.Layout.PreWeights)
            PlanTensor(
                name,
                0,
                AllSources(0),
                slices[0].Sources.Select(_ => name).ToList(),
                t: 0,
                new TensorPosition(null, true, outputLayers)
            );

        int outputLayer = 0;
        for (int sliceIndex = 0; sliceIndex < slices.Count; sliceIndex++)
        {
            var slice = slices[sliceIndex];
            int count = slice.Sources[0].Range.Count;
            for (int k = 0; k < count; k++, outputLayer++)
            {
                double t = count > 1 ? k / (double)(count - 1) : 1;
                var lead = _models[slice.Sources[0].Model];
                var outputPrefixLayout = donor.Layout.LayerPrefix is not null ? donor.Layout : lead.Layout;
                foreach (var suffix in lead.Layout.LayerSuffixes(slice.Sources[0].Range.Start + k))
                {
                    var inputNames = slice
                        .Sources.Select(s => _models[s.Model].Layout.LayerTensorName(s.Range.Start + k, suffix))
                        .ToList();
                    PlanTensor(
                        outputPrefixLayout.LayerTensorName(outputLayer, suffix),
                        sliceIndex,
                        AllSources(sliceIndex),
                        inputNames,
                        t,
                        new TensorPosition(outputLayer, false, outputLayers)
                    );
                }
            }
        }

        var last = slices[^1];
        int lastIndex = slices.Count - 1;
        bool untiesHead = false;
        foreach (var name in donor.Layout.PostWeights)
        {
            // A tied head is written only if some input stores one (mergekit's rule); then the output can no longer tie
            // it.
            if (name == donor.Layout.HeadName && !last.Sources.Any(s => _models[s.Model].Checkpoint.Contains(name)))
                continue;
            untiesHead |= name == donor.Layout.HeadName && donor.Layout.HeadTied;
            PlanTensor(
                name,
                lastIndex,
                AllSources(lastIndex),
                last.Sources.Select(_ => name).ToList(),
                t: 0,
                new TensorPosition(null, false, outputLayers)
            );
        }

        int donorLayers = donor.Layout.LayerCount;
        return WithSideOutputs(
            new MergePlan(
                _recipe,
                _method,
                _jobs,
                donor,
                outputLayer,
                outputLayer != donorLayers,
                _recipe.OutDType ?? _recipe.DType,
                untiesHead
            )
            {
                Tokenizer = _tokenizer,
                Options = _options,
            }
        );
    }

    /// <summary>The indices of every source of slice <paramref name="slice"/>.</summary>
    private int[] AllSources(int slice) => [.. Enumerable.Range(0, _slices[slice].Sources.Count)];

    /// <summary>The recipe's slices, or its <c>models:</c> expanded into one slice as mergekit does.</summary>
    private static IReadOnlyList<OutputSlice> SlicesOf(MergeRecipe recipe, ModelSet models, MergeMethod method) =>
        recipe.Slices ?? [ExpandModels(recipe, models, method)];

    /// <summary>
    /// Asks the method, once for the whole plan, what it writes beside the model, and gives each job its part.
    /// </summary>
    private MergePlan WithSideOutputs(MergePlan plan)
    {
        var merged = plan.Jobs.Select((job, index) => (job, index)).Where(x => !x.job.IsCopy).ToList();
        if (_method.PlanSideOutputs(merged.Select(x => x.job.Info!).ToList()) is not { } side)
            return plan;
        if (side.Tensors.Count != merged.Count)
            throw new InvalidOperationException(
                $"{_method.Name} planned side outputs for {side.Tensors.Count} tensors, not {merged.Count}"
            );
        var jobs = plan.Jobs.ToArray();
        for (int k = 0; k < merged.Count; k++)
            jobs[merged[k].index] = merged[k].job with { Side = side.Tensors[k] };
        return plan with { Jobs = jobs, SideOutputs = side };
    }

    /// <summary>
    /// mergekit-pytorch: every tensor name of every model (first model's order, then names new in later models), merged
    /// by name with parameters evaluated at t = 0.
    /// </summary>
    private void PlanRaw(RawTensorPolicy policy)
    {
        if (_recipe.Models is null)
            throw new AlloyException(
                $"{_recipe.MethodLocation}: a raw state-dict merge takes 'models:' (there are no layers to slice)"
            );
        var all = _slices[0];
        var names = all
            .Sources.SelectMany(s => _models[s.Model].Checkpoint.Tensors.Select(t => t.Name))
            .Distinct(StringComparer.Ordinal)
            .ToList();
        foreach (var name in names)
        {
            int[] holders =
            [
                .. Enumerable
                    .Range(0, all.Sources.Count)
                    .Where(i => _models[all.Sources[i].Model].Checkpoint.Contains(name)),
            ];
            if (holders.Length < all.Sources.Count)
            {
                var missing = string.Join(
                    ", ",
                    all.Sources.Where((_, i) => !holders.Contains(i)).Select(s => $"'{s.Model}'")
                );
                if (policy == RawTensorPolicy.Strict)
                    throw new AlloyException(
                        $"tensor '{name}' is missing from {missing}; pass --tensor-union to merge it from the models "
                            + $"that have it, or --tensor-intersection to leave it out"
                    );
                if (policy == RawTensorPolicy.Intersection)
                {
                    _diagnostics.Info($"tensor '{name}' is missing from {missing}; left out (--tensor-intersection)");
                    continue;
                }
            }
            PlanTensor(name, 0, holders, holders.Select(_ => name).ToList(), t: 0, TensorPosition.Unknown);
        }
    }

    /// <summary>
    /// mergekit's normalisation of <c>models:</c>: one slice over every model's full layer range, plus the base if
    /// unlisted.
    /// </summary>
    private static OutputSlice ExpandModels(MergeRecipe recipe, ModelSet models, MergeMethod method)
    {
        var entries = recipe.Models!;
        var sources = entries
            .Select(e => new InputSlice(
                e.Model,
                new LayerRange(0, models[e.Model].Layout.LayerCount),
                e.Parameters,
                e.Location
            ))
            .ToList();
        // mergekit appends an unlisted base to every method's inputs; methods that do not use a base would then
        // average it in with no weight (a crash in mergekit), so Alloy adds it only where the method uses it.
        if (
            recipe.BaseModel is { } b
            && method.Declaration.BaseModel != BaseModelUse.NotUsed
            && sources.All(s => s.Model != b)
        )
            sources.Add(
                new InputSlice(
                    b,
                    new LayerRange(0, models[b].Layout.LayerCount),
                    ParameterSettings.Empty,
                    recipe.MethodLocation
                )
            );
        var location = entries.Count > 0 ? entries[0].Location : recipe.MethodLocation;
        if (sources.Count == 0)
            throw new AlloyException($"{location}: 'models:' is empty");
        return new OutputSlice(sources, null, ParameterSettings.Empty, location);
    }

    private void CheckSlice(OutputSlice slice)
    {
        if (slice.Sources.Count == 0)
            throw new AlloyException($"{slice.Location}: a slice needs at least one source");
        foreach (var source in slice.Sources)
        {
            var model = _models[source.Model];
            if (source.Range.End > model.Layout.LayerCount)
                throw new AlloyException(
                    $"{source.Location}: layer_range [{source.Range.Start}, {source.Range.End}] goes past the end of "
                        + $"'{model.Name}', which has {model.Layout.LayerCount} layers"
                );
        }
        if (slice.Sources.Select(s => s.Range.Count).Distinct().Count() > 1)
            throw new AlloyException(
                $"{slice.Location}: all inputs to a slice must contain the same number of layers "
                    + $"({string.Join(", ", slice.Sources.Select(s => $"{s.Model}: {s.Range.Count}"))})"
            );
        var baseModel = slice.BaseModel ?? _recipe.BaseModel;
        if (
            _method.Declaration.BaseModel != BaseModelUse.NotUsed
            && baseModel is not null
            && slice.Sources.All(s => s.Model != baseModel)
        )
            throw new AlloyException(
                $"{slice.Location}: base model '{baseModel}' is not among this slice's sources; with slices, list the "
                    + $"base as a source too"
            );
    }

    private void CheckArchitectures(InputModel donor)
    {
        foreach (var model in _models.All)
        {
            if (model.Architecture == donor.Architecture || model.Architecture is null || donor.Architecture is null)
                continue;
            var message = $"'{model.Name}' is {model.Architecture} but '{donor.Name}' is {donor.Architecture}";
            if (!_options.AllowCrimes)
                throw new AlloyException(
                    $"models have different architectures: {message}; pass --allow-crimes to merge them anyway"
                );
            _diagnostics.Warn($"--allow-crimes: {message}");
        }
    }

    /// <summary>
    /// Plans output tensor <paramref name="outputName"/> from <paramref name="sources"/> (indices into slice
    /// <paramref name="sliceIndex"/>'s sources), whose tensors are <paramref name="inputNames"/>.
    /// </summary>
    private void PlanTensor(
        string outputName,
        int sliceIndex,
        int[] sourceIndices,
        IReadOnlyList<string> inputNames,
        double t,
        TensorPosition position
    )
    {
        var slice = _slices[sliceIndex];
        if (!_outputNames.Add(outputName))
            throw new AlloyException($"{slice.Location}: output tensor '{outputName}' would be written twice");
        var baseReference = slice.BaseModel ?? _recipe.BaseModel;
        var sources = sourceIndices.Select(i => slice.Sources[i]).ToList();
        var inputs = new List<(InputSlice Source, PlannedInput Input, string InputName, int SourceIndex)>();
        for (int i = 0; i < sources.Count; i++)
        {
            var model = _models[sources[i].Model];
            var stored = model.Layout.StoredName(model.Checkpoint, inputNames[i]) is { } storedName
                ? model.Checkpoint.Find(storedName)
                : null;
            if (stored is null)
                throw new AlloyException(
                    $"tensor '{inputNames[i]}' is required but not present in model '{model.Name}' ({model.Location})"
                );
            // A model+lora reference: the adapter replaces whole tensors (modules_to_save) or adds its low-rank update.
            LoraDelta? lora = null;
            LoraBias? loraBias = null;
            if (model.Adapter is { } adapter)
            {
                if (adapter.Replacement(inputNames[i]) is { } replacement)
                    stored = replacement;
                else
                {
                    lora = adapter.DeltaFor(inputNames[i], stored.Info.Shape);
                    loraBias = adapter.BiasFor(inputNames[i], stored.Info.Shape);
                }
            }
            inputs.Add(
                (
                    sources[i],
                    new PlannedInput(
                        model,
                        stored,
                        stored.Info.Shape,
                        Lora: lora,
                        LoraBias: loraBias,
                        Gather: model.Alignment?.GetValueOrDefault(stored.Name)
                    ),
                    inputNames[i],
                    sourceIndices[i]
                )
            );
        }

        int BaseIndex() => baseReference is null ? -1 : inputs.FindIndex(x => x.Source.Model == baseReference);
        var reference = inputs[Math.Max(BaseIndex(), 0)];
        var storedType = reference.Input.Tensor.Info.DType;
        if (!storedType.IsFloat())
        {
            // Integer and boolean tensors (position ids, masks) are not merged: they come from the base or first model.
            _jobs.Add(
                new TensorJob(
                    new TensorInfo(outputName, storedType, reference.Input.Tensor.Info.Shape),
                    null,
                    [reference.Input],
                    null
                )
            );
            return;
        }

        bool isEmbedding = reference.Input.Model.Layout.IsEmbedding(
            reference.InputName,
            reference.Input.Tensor.Info.Shape
        );
        if (isEmbedding && _tokenizer?.Vocabulary is { } vocabulary)
        {
            if (inputs.FirstOrDefault(x => x.Input.Lora is not null) is { Input: not null } adapted)
                throw new AlloyException(
                    $"'{adapted.Input.Model.Name}': its LoRA adapter changes '{adapted.InputName}', and re-laying out "
                        + $"a LoRA-updated embedding for tokenizer settings is not supported; merge the adapter into "
                        + $"the model first or drop the tokenizer settings"
                );
            if (inputs.FirstOrDefault(x => x.Input.Gather is not null) is { Input: not null } aligned)
                throw new AlloyException(
                    $"'{aligned.Input.Model.Name}': it is aligned (align:), and re-laying out an aligned embedding for "
                        + "tokenizer settings is not supported; align it with 'alloy align' first, then merge"
                );
            // Tokenizer mode: every input becomes a [vocabulary, hidden] matrix over the output vocabulary first.
            var relaid = vocabulary.Relayout(
                outputName,
                inputs.Select(x => (x.Input, x.InputName)).ToList(),
                BaseIndex() >= 0 ? baseReference : null,
                _models,
                _diagnostics
            );
            for (int i = 0; i < inputs.Count; i++)
                inputs[i] = inputs[i] with { Input = relaid[i] };
        }
        var outputShape = ReconcileShapes(outputName, inputs, BaseIndex(), isEmbedding);
        int baseIndex = BaseIndex(); // again: reconciling may have dropped inputs
        if (_method.Declaration.BaseModel == BaseModelUse.Required && baseIndex < 0)
            throw new AlloyException(
                $"{slice.Location}: merge method '{_method.Name}' needs the base model among the inputs of "
                    + $"'{outputName}'"
            );

        var outputType = _recipe.OutDType ?? _recipe.DType ?? storedType;
        var origin = new TensorOrigin(
            sliceIndex,
            [.. inputs.Select(x => x.SourceIndex)],
            [.. inputs.Select(x => x.InputName)],
            t,
            position,
            baseIndex,
            outputType == storedType
        );
        var job = new TensorJob(
            new TensorInfo(outputName, outputType, outputShape),
            _method,
            inputs.Select(x => x.Input).ToList(),
            null
        )
        {
            Origin = origin,
        };
        _jobs.Add(Resolve(job, origin));
    }

    /// <summary>
    /// The job with its parameters resolved from the recipe (source → slice → global → default, gradients at t, filters
    /// on each input's own tensor name) and checked by the method; a copy when the method passes its input through.
    /// </summary>
    private TensorJob Resolve(TensorJob job, TensorOrigin origin)
    {
        var slice = _slices[origin.Slice];
        var sources = origin.Sources.Select(i => slice.Sources[i]).ToList();
        var parameters = ResolveParameters(job.Output.Name, slice, sources, job.Inputs, origin);
        var statistics = _method.Declaration.Statistics is { } use
            ? PlanStatistics(use, job, sources, parameters)
            : null;
        var info = new MergeInputsInfo(
            job.Output.Name,
            job.Inputs.Select(x => x.Model.Name).ToList(),
            origin.BaseIndex,
            parameters,
            _options.Seed,
            job.Inputs.Select(x => x.Model.Index).ToList(),
            origin.Position,
            statistics?.Select(x => x.File).ToList()
        );
        _method.Validate(info);
        bool copy =
            origin.KeepsDType
            && job.Inputs.Count == 1
            && job.Inputs[0].IsAsStored
            && statistics is null
            && _method.CopiesInput(info);
        return job with
        {
            Method = copy ? null : _method,
            Info = copy ? null : info,
            Side = null,
            Statistics = copy ? null : statistics,
        };
    }

    /// <summary>
    /// Each input's statistic for a data-aware method, found by the input's stored tensor name in its model's
    /// statistics file (opened, or computed from data, once per model); null when no input has one for this tensor and
    /// the method allows that (RegMean's tensors other than linear weights).
    /// </summary>
    private IReadOnlyList<PlannedStatistic>? PlanStatistics(
        StatisticsUse use,
        TensorJob job,
        IReadOnlyList<InputSlice> sources,
        ResolvedParameters parameters
    )
    {
        int samples = use.Samples is { } n ? n.Read(parameters.Global(n)!.Value) : 0;
        string? estimate = use.Estimate is { } e ? e.Read(parameters.Global(e)!.Value) : null;
        var found = new PlannedStatistic?[job.Inputs.Count];
        for (int i = 0; i < found.Length; i++)
        {
            var input = job.Inputs[i];
            string? path =
                use.File.Scope == ParameterScope.Global
                    ? parameters.Global(use.File)?.Text
                    : parameters.ForModel(i, use.File)?.Text;
            string? data = use.Data is { } d ? parameters.ForModel(i, d)?.Text : null;
            if (path is null && use.Data is null)
                return null; // nothing learnt yet: the method merges without
            var file = _models.Statistics.For(use, input.Model, path, data, samples, estimate);
            string name = input.Tensor.Info.Name;
            var tensor = file.Find(name);
            string where = $"{sources[i].Location}: '{file.Path}' (statistics of model '{input.Model.Name}')";
            long[]? expected = use.Shape switch
            {
                StatisticShape.SameAsTensor => input.Shape,
                _ when input.Shape.Length == 2 => [input.Shape[1], input.Shape[1]],
                _ => null,
            };
            if (tensor is null)
            {
                if (use.Shape == StatisticShape.SameAsTensor)
                    throw new AlloyException($"{where} has no tensor '{name}'");
                continue;
            }
            if (expected is null || !tensor.Info.Shape.AsSpan().SequenceEqual(expected))
                throw new AlloyException(
                    $"{where}: tensor '{name}' is [{string.Join(", ", tensor.Info.Shape)}], expected "
                        + (
                            expected is null
                                ? "none for a tensor that is not a matrix"
                                : $"[{string.Join(", ", expected)}]"
                        )
                );
            if (use.Shape == StatisticShape.SameAsTensor && !input.IsAsStored && input.Lora is null)
                throw new AlloyException(
                    $"{where}: tensor '{name}' is cropped or re-laid out for the merge, and its statistic cannot be; "
                        + "merge tensors of equal shapes"
                );
            found[i] = new PlannedStatistic(tensor, file);
        }
        if (found.All(x => x is null))
            return null;
        if (found.Any(x => x is null))
        {
            int missing = Array.FindIndex(found, x => x is null);
            throw new AlloyException(
                $"{sources[missing].Location}: model '{job.Inputs[missing].Model.Name}' has no statistic for "
                    + $"'{job.Inputs[missing].Tensor.Info.Name}', which the other models have"
            );
        }
        return found!;
    }

    /// <summary>Applies the method's rule for inputs whose shapes differ; returns the output shape.</summary>
    private long[] ReconcileShapes(
        string outputName,
        List<(InputSlice Source, PlannedInput Input, string InputName, int SourceIndex)> inputs,
        int baseIndex,
        bool isEmbedding
    )
    {
        var reference = inputs[baseIndex >= 0 ? baseIndex : 0].Input.Shape;
        if (inputs.All(x => x.Input.Shape.AsSpan().SequenceEqual(reference)))
            return reference;

        string Describe() =>
            string.Join(
                ", ",
                inputs.Select(x => $"'{x.Input.Model.Name}' has [{string.Join(", ", x.Input.Tensor.Info.Shape)}]")
            );
        var rule = _method.Declaration.EmbeddingShapes;
        if (isEmbedding && inputs.All(x => x.Input.Shape.Length == 2) && rule != EmbeddingShapeRule.Exact)
        {
            long[] target =
                rule == EmbeddingShapeRule.CommonSubmatrix
                    ? [inputs.Min(x => x.Input.Shape[0]), inputs.Min(x => x.Input.Shape[1])]
                    : reference;
            foreach (var x in inputs)
                if (x.Input.Shape[0] < target[0] || x.Input.Shape[1] < target[1])
                    throw new AlloyException(
                        $"embedding '{outputName}': {Describe()}; '{x.Input.Model.Name}' is smaller than the base "
                            + $"model's, so it cannot be truncated to it"
                    );
            _diagnostics.Warn(
                $"embedding '{outputName}': shapes differ ({Describe()}); using the leading [{target[0]}, {target[1]}] "
                    + $"sub-matrix of each, as mergekit does; if their vocabularies differ, "
                    + "set 'tokenizer_source: union' (or 'tokenizer: {source: union}') to merge the rows token by token"
            );
            for (int i = 0; i < inputs.Count; i++)
                inputs[i] = inputs[i] with { Input = inputs[i].Input with { Shape = target } };
            return target;
        }

        if (_method.Declaration.SkipsMismatchedInputs && baseIndex >= 0)
        {
            var dropped = inputs
                .Where((x, i) => i != baseIndex && !x.Input.Shape.AsSpan().SequenceEqual(reference))
                .ToList();
            foreach (var x in dropped)
            {
                _diagnostics.Warn(
                    $"tensor '{outputName}': '{x.Input.Model.Name}' has shape [{string.Join(", ", x.Input.Shape)}] "
                        + $"but the base has [{string.Join(", ", reference)}]; leaving that model out of this tensor"
                );
                inputs.Remove(x);
            }
            return reference;
        }
        throw new AlloyException($"tensor '{outputName}': shapes differ: {Describe()}");
    }

    private ResolvedParameters ResolveParameters(
        string outputName,
        OutputSlice slice,
        IReadOnlyList<InputSlice> sources,
        IReadOnlyList<PlannedInput> inputs,
        TensorOrigin origin
    )
    {
        var globals = new Dictionary<MethodParameter, SettingValue>();
        var perModel = inputs.Select(_ => new Dictionary<MethodParameter, SettingValue>()).ToList();
        foreach (var parameter in _method.Parameters)
        {
            if (parameter.Scope == ParameterScope.Global)
            {
                var value = Located(
                    parameter,
                    ParameterLookup.Find(parameter.Name, _recipe, slice, null, outputName, origin.T)
                ) ?? parameter.DefaultValue;
                if (value is { } v)
                    globals[parameter] = v;
                else if (parameter.Required)
                    throw new AlloyException(
                        $"missing required parameter '{parameter.Name}' for tensor '{outputName}' (merge method "
                            + $"'{_method.Name}'); set it under parameters:"
                    );
                continue;
            }
            for (int i = 0; i < inputs.Count; i++)
            {
                // Per-model filters match the model's own tensor name, which differs from the output name in sliced
                // merges.
                var value = Located(
                    parameter,
                    ParameterLookup.Find(parameter.Name, _recipe, slice, sources[i], origin.InputNames[i], origin.T)
                ) ?? parameter.DefaultValue;
                if (value is { } v)
                    perModel[i][parameter] = v;
                // The base is exempt only where the method treats it as the base (mergekit's rule); a method that
                // does not use one (linear) weighs a listed base like any other model.
                else if (
                    parameter.Required
                    && (i != origin.BaseIndex || _method.Declaration.BaseModel == BaseModelUse.NotUsed)
                )
                    throw new AlloyException(
                        $"{sources[i].Location}: missing required parameter '{parameter.Name}' for model "
                            + $"'{inputs[i].Model.Name}', tensor '{origin.InputNames[i]}' (merge method "
                            + $"'{_method.Name}')"
                    );
            }
        }
        return new ResolvedParameters(globals, perModel);
    }

    /// <summary>
    /// A path parameter's relative path is found as model paths are: from the current folder, else from the recipe's
    /// folder (mergekit's rule for models); other values pass unchanged.
    /// </summary>
    private SettingValue? Located(MethodParameter parameter, SettingValue? value) =>
        parameter is PathParameter && value is { IsText: true } v ? SettingValue.Of(_recipe.Locate(v.Text!)) : value;
}
