using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Alloy.Checkpoints;
using Alloy.Execution;
using Alloy.Methods;
using Alloy.Planning;
using Alloy.Recipes;
using Alloy.Tensors;

namespace Alloy;

/// <summary>
/// What a merge will do, from its plan alone (headers read, no weights): the inputs, where config and tokenizer come
/// from, the output, the values every varying parameter takes layer by layer, the shards, the working memory, and the
/// time to expect. <c>alloy plan</c> and <c>alloy merge --dry-run</c> print it.
/// </summary>
public sealed record PlanSummary
{
    public required string Method { get; init; }
    public required IReadOnlyList<InputSummary> Inputs { get; init; }
    public required string ConfigFrom { get; init; }
    public required string TokenizerFrom { get; init; }
    public VocabularySummary? Vocabulary { get; init; }
    public required int Tensors { get; init; }
    public required int MergedTensors { get; init; }
    public required int Layers { get; init; }
    public required string OutputDType { get; init; }
    public required long OutputBytes { get; init; }
    public required int Shards { get; init; }
    public required IReadOnlyList<ParameterRow> Constant { get; init; }
    public required IReadOnlyList<ParameterTable> Varying { get; init; }
    public required long LargestItemBytes { get; init; }
    public required long MemoryLimitBytes { get; init; }
    public required IReadOnlyList<string> OverLimit { get; init; }
    public double? ExpectedSeconds { get; init; }
    public required string ExpectedBasis { get; init; }

    public sealed record InputSummary(string Model, string Location, int Tensors, long Bytes, string DTypes);

    public sealed record VocabularySummary(
        string Source,
        int Tokens,
        int Rows,
        IReadOnlyList<(string Model, int Has)> RowSources
    );

    /// <summary>A parameter with one value wherever it applies (per model: for that model).</summary>
    public sealed record ParameterRow(string Parameter, string? Model, string Value);

    /// <summary>
    /// A parameter whose value changes across tensors: per layer (and before/after the layers), its values by tensor
    /// kind.
    /// </summary>
    public sealed record ParameterTable(
        string Parameter,
        string? Model,
        IReadOnlyList<(string Where, string Values)> Rows
    );

    /// <summary>
    /// Measured merge rates (input + output bytes per second on two cores, docs/performance.md at 0.25B) by how a
    /// method feeds on a tensor; whole-tensor methods (the SVD family …) are not estimated, their cost grows with
    /// matrix size.
    /// </summary>
    private static readonly (string Class, double BytesPerSecond)[] Rates =
    [
        ("copy", 1.5e9),
        ("chunked", 1.2e9),
        ("streamed", 0.9e9),
        ("streamed with magnitude cuts", 0.55e9),
        ("streamed by ranked rows", 0.2e9),
    ];

    public static PlanSummary Create(MergeSession session)
    {
        var plan = session.Plan;
        var options = session.Options;
        var inputs = session
            .Models.All.Select(m => new InputSummary(
                m.Name,
                m.Location,
                m.Checkpoint.Tensors.Count,
                m.Checkpoint.TotalBytes,
                string.Join(", ", m.Checkpoint.Tensors.Select(t => t.Info.DType.TorchName()).Distinct())
            ))
            .ToList();
        var vocabulary = plan.Tokenizer?.Vocabulary is { } v
            ? new VocabularySummary(
                v.Settings.Kind switch
                {
                    TokenizerSourceKind.Union => "union of every model's",
                    TokenizerSourceKind.Base => "the base model's",
                    _ => $"'{v.Settings.Model}''s",
                } + (v.Settings.Tokens.Count > 0 ? $", with {v.Settings.Tokens.Count} configured token(s)" : ""),
                v.TokenRows,
                v.Rows,
                [.. session.Models.All.Select(m => (m.Name, v.Permutation(m.Reference).Count(id => id >= 0)))]
            )
            : null;
        var (constant, varying) = Parameters(plan);
        var shards = ShardPlan.Create(plan.Jobs.Select(j => j.Output).ToList(), options.OutShardSize);
        var (expected, basis) = Expected(plan);
        return new PlanSummary
        {
            Method = plan.Method.Name,
            Inputs = inputs,
            ConfigFrom = plan.Donor.Checkpoint.Config is null ? "none (the donor has no config.json)" : plan.Donor.Name,
            TokenizerFrom =
                vocabulary is not null ? "written new for the merged vocabulary"
                : options.CopyTokenizer ? plan.Donor.Name
                : "none (--no-copy-tokenizer)",
            Vocabulary = vocabulary,
            Tensors = plan.Jobs.Count,
            MergedTensors = plan.Jobs.Count(j => !j.IsCopy),
            Layers = plan.OutputLayerCount,
            OutputDType = string.Join(", ", plan.Jobs.Select(j => j.Output.DType.TorchName()).Distinct()),
            OutputBytes = plan.OutputBytes,
            Shards = shards.Shards.Count,
            Constant = constant,
            Varying = varying,
            LargestItemBytes = MergeExecutor.LargestWorkItem(plan, options.Execution),
            MemoryLimitBytes = options.Execution.MemoryLimitBytes,
            OverLimit = [.. MergeExecutor.OversizedWholeTensors(plan, options.Execution)],
            ExpectedSeconds = expected,
            ExpectedBasis = basis,
        };
    }

    /// <summary>
    /// Every parameter of the method, with one value or a table of values per layer and kind of tensor.
    /// </summary>
    private static (List<ParameterRow>, List<ParameterTable>) Parameters(MergePlan plan)
    {
        var constant = new List<ParameterRow>();
        var varying = new List<ParameterTable>();
        var merged = plan.Jobs.Where(j => j.Info is not null).ToList();
        // A base that task vectors are taken from has no per-model parameters of its own.
        var bases =
            plan.Method.Declaration.BaseModel == BaseModelUse.NotUsed
                ? []
                : merged
                    .Where(j => j.Info!.BaseIndex >= 0)
                    .Select(j => j.Info!.ModelNames[j.Info.BaseIndex])
                    .ToHashSet();
        var models = merged.SelectMany(j => j.Info!.ModelNames).Distinct().Where(m => !bases.Contains(m)).ToList();
        foreach (var parameter in plan.Method.Parameters)
        {
            foreach (
                var model in parameter.Scope == ParameterScope.Global ? [(string?)null] : models.Select(m => (string?)m)
            )
            {
                // Each tensor's value of this parameter (for this model), where it has one.
                var values = merged
                    .Select(j => (Job: j, Value: ValueOf(j.Info!, parameter, model)))
                    .Where(x => x.Value is not null)
                    .ToList();
                if (values.Count == 0)
                    continue;
                var distinct = values.Select(x => x.Value!).Distinct().ToList();
                if (distinct.Count == 1)
                {
                    constant.Add(new ParameterRow(parameter.Name, model, distinct[0]));
                    continue;
                }
                var rows = values
                    .GroupBy(x => Where(x.Job.Info!.Position))
                    .Select(layer =>
                    {
                        var byValue = layer.GroupBy(x => x.Value!).ToList();
                        string cell =
                            byValue.Count == 1
                                ? byValue[0].Key
                                : string.Join(
                                    ", ",
                                    byValue.Select(g =>
                                        $"{g.Key} "
                                        + $"({string.Join("/", g.Select(x => KindOf(x.Job.Output.Name)).Distinct())})"
                                    )
                                );
                        return (layer.Key, cell);
                    })
                    .ToList();
                varying.Add(new ParameterTable(parameter.Name, model, rows));
            }
        }
        return (constant, varying);
    }

    private static string? ValueOf(MergeInputsInfo info, MethodParameter parameter, string? model)
    {
        SettingValue? value =
            model is null ? info.Parameters.Global(parameter)
            : info.ModelNames.ToList().IndexOf(model) is var i and >= 0 ? info.Parameters.ForModel(i, parameter)
            : null;
        // Interpolated gradient values are shown to six significant digits (0.433333, not 0.43333333333333335).
        return value switch
        {
            null => null,
            { IsText: false } v when parameter is NumberParameter => v.Number.ToString(
                "G6",
                CultureInfo.InvariantCulture
            ),
            { } v => parameter.Format(v),
        };
    }

    private static string Where(TensorPosition position) =>
        position.Layer is { } layer ? $"layer {layer}"
        : position.BeforeLayers ? "before the layers"
        : "after the layers";

    /// <summary>A tensor's kind, to say which tensors of a layer take which value.</summary>
    private static string KindOf(string name) =>
        // Norms first: post_attention_layernorm is a norm, not attention.
        name.Contains("norm", StringComparison.Ordinal)
            ? "norms"
        : name.Contains("attn", StringComparison.Ordinal) || name.Contains("attention", StringComparison.Ordinal)
            ? "attention"
        : name.Contains("mlp", StringComparison.Ordinal) || name.Contains("feed_forward", StringComparison.Ordinal)
            ? "mlp"
        : name.Contains("embed", StringComparison.Ordinal) ? "embeddings"
        : name.Contains("head", StringComparison.Ordinal) ? "head"
        : "other";

    /// <summary>
    /// Seconds from each tensor's bytes at its class's measured rate; null when a whole-tensor method has no rate.
    /// </summary>
    private static (double?, string) Expected(MergePlan plan)
    {
        double seconds = 0;
        var classes = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var job in plan.Jobs)
        {
            long bytes = job.Output.ByteLength + job.Inputs.Sum(i => i.Tensor.Info.ByteLength);
            string kind = job.IsCopy
                ? "copy"
                : MergeExecutor.FeedOf(job) switch
                {
                    MergeExecutor.Feed.Chunked => "chunked",
                    MergeExecutor.Feed.Copy => "copy",
                    MergeExecutor.Feed.StreamedRows => "streamed by ranked rows",
                    MergeExecutor.Feed.StreamedCuts => "streamed with magnitude cuts",
                    MergeExecutor.Feed.Streamed => "streamed",
                    MergeExecutor.Feed.WholeTensor => "whole tensor",
                    _ => throw new InvalidOperationException("unknown feed"),
                };
            classes.Add(kind);
            if (kind == "whole tensor")
                return (
                    null,
                    $"not estimated: {plan.Method.Name} merges whole tensors (cost grows with their size; see "
                        + $"docs/performance.md)"
                );
            seconds += bytes / Rates.Single(r => r.Class == kind).BytesPerSecond;
        }
        return (
            seconds,
            $"for {string.Join(", ", classes)} tensors at two-core rates (docs/performance.md); more from a cold disk"
        );
    }

    private static string Bytes(long bytes) => ByteSize.Format(bytes);

    public string ToText()
    {
        var t = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        t.Append($"merge method: {Method}\n\ninputs:\n");
        foreach (var input in Inputs)
            t.Append(
                c,
                $"  {input.Model}: {input.Tensors} tensors, {Bytes(input.Bytes)} ({input.DTypes}) at {input.Location}\n"
            );
        t.Append($"\nconfig.json from: {ConfigFrom}\ntokenizer from: {TokenizerFrom}\n");
        if (Vocabulary is { } v)
        {
            t.Append(c, $"vocabulary: {v.Source}: {v.Tokens} tokens, embeddings of {v.Rows} rows\n");
            t.Append("  rows: each model's own row for the tokens it has (");
            t.Append(string.Join(", ", v.RowSources.Select(r => $"{r.Model}: {r.Has} of {v.Tokens}")));
            t.Append("); other tokens by the configured source or the default rule (docs/config.md)\n");
        }
        t.Append(
            c,
            $"\noutput: {Tensors} tensors ({MergedTensors} merged, {Tensors - MergedTensors} copied), {Layers} layers, "
                + $"{OutputDType}, "
        );
        t.Append(c, $"{Bytes(OutputBytes)} in {Shards} shard{(Shards == 1 ? "" : "s")}\n");
        t.Append("\nparameters:\n");
        foreach (var p in Constant)
            t.Append($"  {p.Parameter}{(p.Model is null ? "" : $" [{p.Model}]")} = {p.Value}\n");
        foreach (var table in Varying)
        {
            t.Append($"  {table.Parameter}{(table.Model is null ? "" : $" [{table.Model}]")} varies:\n");
            int width = table.Rows.Max(r => r.Where.Length);
            foreach (var (where, values) in table.Rows)
                t.Append($"    {where.PadRight(width)}  {values}\n");
        }
        t.Append(
            c,
            $"\nworking memory: the largest work item needs {Bytes(LargestItemBytes)}; the limit is "
                + $"{Bytes(MemoryLimitBytes)}\n"
        );
        foreach (var over in OverLimit)
            t.Append($"  {over}\n");
        t.Append(
            ExpectedSeconds switch
            {
                < 0.1 => $"expected time: under 0.1 s, {ExpectedBasis}\n",
                { } s => string.Create(c, $"expected time: about {s:F1} s, {ExpectedBasis}\n"),
                null => $"expected time: {ExpectedBasis}\n",
            }
        );
        return t.ToString();
    }

    public string ToJson() =>
        JsonSerializer.Serialize(
            new
            {
                method = Method,
                inputs = Inputs.Select(i => new
                {
                    model = i.Model,
                    location = i.Location,
                    tensors = i.Tensors,
                    bytes = i.Bytes,
                    dtypes = i.DTypes,
                }),
                config_from = ConfigFrom,
                tokenizer_from = TokenizerFrom,
                vocabulary = Vocabulary is { } v
                    ? new
                    {
                        source = v.Source,
                        tokens = v.Tokens,
                        rows = v.Rows,
                        rows_of_each_model = v.RowSources.ToDictionary(r => r.Model, r => r.Has),
                    }
                    : null,
                output = new
                {
                    tensors = Tensors,
                    merged = MergedTensors,
                    layers = Layers,
                    dtype = OutputDType,
                    bytes = OutputBytes,
                    shards = Shards,
                },
                parameters = Constant.Select(p => new
                {
                    name = p.Parameter,
                    model = p.Model,
                    value = p.Value,
                }),
                varying_parameters = Varying.Select(p => new
                {
                    name = p.Parameter,
                    model = p.Model,
                    values = p.Rows.Select(r => new { where = r.Where, values = r.Values }),
                }),
                memory = new
                {
                    largest_item_bytes = LargestItemBytes,
                    limit_bytes = MemoryLimitBytes,
                    over_limit = OverLimit,
                },
                expected_seconds = ExpectedSeconds,
                expected_basis = ExpectedBasis,
            },
            new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }
        );
}
