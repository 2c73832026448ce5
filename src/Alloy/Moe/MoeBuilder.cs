using System.Text.Json.Nodes;
using Alloy.Checkpoints;
using Alloy.Output;
using Alloy.Recipes;
using Alloy.Tensors;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Moe;

/// <summary>How the Mixtral experts are laid out in the output.</summary>
public enum MixtralLayout
{
    /// <summary>
    /// transformers' current layout: <c>mlp.experts.gate_up_proj</c> [E, 2I, H], <c>down_proj</c> [E, H, I].
    /// </summary>
    Fused,

    /// <summary>
    /// The older <c>block_sparse_moe.experts.N.w1/w2/w3</c> that llama.cpp and older transformers read.
    /// </summary>
    PerExpert,
}

/// <summary>The options of <c>alloy moe</c>.</summary>
public sealed record MoeOptions
{
    /// <summary>Seeds the random gates and the experts' noise.</summary>
    public ulong Seed { get; init; }

    public MixtralLayout MixtralLayout { get; init; } = MixtralLayout.Fused;

    /// <summary>
    /// mergekit's --i-understand-this-is-not-useful-without-training: allow experts that are all one model.
    /// </summary>
    public bool AllowAllSame { get; init; }

    /// <summary>Largest shard in bytes (0: one file); mergekit's default is 5 GB.</summary>
    public long MaxShardBytes { get; init; } = 5_000_000_000;

    /// <summary>
    /// Runs the base model for the <c>hidden*</c> gate modes: given the base's folder and tokenizer (Alloy.Runtime's
    /// PromptHiddenStates).
    /// </summary>
    public Func<string, TextTokenizer, IPromptHiddenStates>? HiddenStates { get; init; }
}

/// <summary>What <c>alloy moe</c> built.</summary>
public sealed record MoeResult(MoeArchitectureKind Architecture, int Experts, int Layers, int Tensors);

/// <summary>
/// mergekit-moe: a mixture of experts from dense models. Attention, norms and embeddings are the base's; each expert's
/// MLP is an expert model's, copied (or scaled by residual_scale, noised by noise_scale); the routers come from the
/// gate mode. Tensors stream from the memory-mapped checkpoints into the shards a chunk of rows at a time.
/// </summary>
public static class MoeBuilder
{
    private const int ChunkElements = 1 << 20;

    /// <summary>An open input model, with its LoRA if the reference names one.</summary>
    private sealed class Source(string folder, Checkpoint checkpoint, LoraAdapter? adapter) : IDisposable
    {
        public string Folder => folder;
        public Checkpoint Checkpoint => checkpoint;
        public LoraAdapter? Adapter => adapter;

        public void Dispose()
        {
            checkpoint.Dispose();
            adapter?.Dispose();
        }
    }

    /// <summary>One piece of an output tensor: a source tensor (with its expert's noise and scale) or values.</summary>
    private sealed record Piece(
        StoredTensor? Tensor,
        Source? From,
        MoeExpert? Expert = null,
        int ExpertIndex = 0,
        bool Residual = false,
        float[]? Values = null
    )
    {
        public long Elements => Values?.Length ?? Tensor!.Info.ElementCount;
    }

    private sealed record Output(TensorInfo Info, IReadOnlyList<Piece> Pieces);

    public static MoeResult Build(
        MoeRecipe config,
        string output,
        MoeOptions options,
        bool overwrite = false,
        Diagnostics? diagnostics = null,
        Action<int, int>? progress = null
    )
    {
        diagnostics ??= Diagnostics.Silent();
        config.Validate(options.AllowAllSame);
        var shared = config.SharedExperts ?? [];
        if (shared.Count > 0 && shared.Any(e => Any(e.PositivePrompts)) != shared.All(e => Any(e.PositivePrompts)))
            throw new AlloyException(
                $"{config.Location}: give prompts to every shared expert or to none, not to some of them"
            );
        var opened = new Dictionary<ModelReference, Source>();
        try
        {
            Source Open(ModelReference reference)
            {
                if (opened.TryGetValue(reference, out var known))
                    return known;
                string[] search = config.Folder is { } f ? [f] : [];
                var folder = ModelLocator.Resolve(reference.Path, reference.Revision, search);
                var checkpoint = Checkpoint.Open(folder);
                LoraAdapter? adapter = null;
                try
                {
                    if (reference.Lora is { } lora)
                        adapter = LoraAdapter.Open(ModelLocator.Resolve(lora.Path, lora.Revision, search));
                }
                catch
                {
                    checkpoint.Dispose();
                    throw;
                }
                return opened[reference] = new Source(folder, checkpoint, adapter);
            }
            var baseModel = Open(config.BaseModel);
            var experts = config.Experts.Select(e => Open(e.SourceModel)).ToList();
            var sharedSources = shared.Select(e => Open(e.SourceModel)).ToList();
            var baseConfig = baseModel.Checkpoint.Config
                ?? throw new AlloyException($"{baseModel.Folder}: no config.json in the base model");
            var kind = MoeArchitecture.Select(
                config,
                [.. new[] { baseModel }.Concat(experts).Concat(sharedSources).Select(s => ModelType(s))]
            );
            int layers = Int(baseConfig, "num_hidden_layers", baseModel);
            int hidden = Int(baseConfig, "hidden_size", baseModel);

            // Gates: the experts', then the shared experts' when they have prompts or the gates are random.
            bool gateShared =
                shared.Count > 0 && (Any(shared[0].PositivePrompts) || config.GateMode is "random" or "uniform_random");
            var gated = config.Experts.Concat(gateShared ? shared : []).ToList();
            TextTokenizer? tokenizer = null;
            TextTokenizer Tokenizer() => tokenizer ??= TextTokenizer.Load(baseModel.Folder);
            var gates = MoeGates.Compute(
                config.GateMode,
                gated,
                layers,
                hidden,
                options.Seed,
                Tokenizer,
                () => Find(baseModel, "model.embed_tokens.weight"),
                () =>
                    options.HiddenStates?.Invoke(baseModel.Folder, Tokenizer())
                    ?? throw new AlloyException(
                        $"gate_mode {config.GateMode} runs the base model, which needs Alloy.Runtime "
                            + "(MoeOptions.HiddenStates); the alloy command provides it"
                    )
            );
            MoeGates.WarnDegenerate(gates, diagnostics);

            DType? outDType = OutDType(config, baseConfig);
            var outputs = Plan(kind, config, options, baseModel, experts, sharedSources, gates, baseConfig, outDType);
            using var folder = OutputFolder.Prepare(
                output,
                overwrite,
                opened.Values.Select(s => s.Folder),
                diagnostics
            );
            var json = MoeArchitecture.Config(kind, baseConfig, config, outDType?.TorchName(), diagnostics);
            OutputConfig.Write(json, Path.Combine(folder.Temporary, Checkpoint.ConfigFileName));
            Write(outputs, folder.Temporary, options, progress);
            SaveTokenizer(baseModel.Folder, folder.Temporary);
            File.WriteAllText(Path.Combine(folder.Temporary, "mergekit_moe_config.yml"), config.Text);
            folder.Commit();
            return new MoeResult(kind, config.Experts.Count, layers, outputs.Count);
        }
        finally
        {
            foreach (var source in opened.Values)
                source.Dispose();
        }
    }

    private static bool Any(IReadOnlyList<string>? prompts) => prompts is { Count: > 0 };

    private static string? ModelType(Source source) => source.Checkpoint.Config?["model_type"]?.GetValue<string>();

    private static int Int(JsonObject config, string key, Source source) =>
        config[key]?.GetValue<int>() ?? throw new AlloyException($"{source.Folder}: config.json has no {key}");

    /// <summary>dtype: from the config, else the base's torch_dtype (or dtype); null keeps each tensor's own.</summary>
    private static DType? OutDType(MoeRecipe config, JsonObject baseConfig)
    {
        var name = config.DType ?? (baseConfig["torch_dtype"] ?? baseConfig["dtype"])?.GetValue<string>();
        return name is not null && DTypes.TryParseTorch(name, out var d) && TensorConvert.CanWrite(d) ? d : null;
    }

    private static StoredTensor Find(Source source, string name) =>
        source.Adapter?.Replacement(name)
        ?? source.Checkpoint.Find(name)
        ?? throw new AlloyException($"{source.Folder}: no tensor {name}");

    /// <summary>Every output tensor in mergekit's write order, with where its elements come from.</summary>
    private static List<Output> Plan(
        MoeArchitectureKind kind,
        MoeRecipe config,
        MoeOptions options,
        Source baseModel,
        List<Source> experts,
        List<Source> shared,
        float[][][] gates,
        JsonObject baseConfig,
        DType? outDType
    )
    {
        var outputs = new List<Output>();
        DType Out(StoredTensor t) => outDType ?? t.Info.DType;
        Output Copy(string name, Piece piece) =>
            new(new TensorInfo(name, Out(piece.Tensor!), piece.Tensor!.Info.Shape), [piece]);
        Piece ExpertPiece(int index, string name)
        {
            bool isShared = index >= experts.Count;
            var source = isShared ? shared[index - experts.Count] : experts[index];
            var def = isShared ? config.SharedExperts![index - experts.Count] : config.Experts[index];
            return new Piece(Find(source, name), source, def, index, name.Contains("down_proj"));
        }
        string[] projections = ["gate_proj", "up_proj", "down_proj"];
        int layers = gates.Length;
        string Mlp(int l, string p) => $"model.layers.{l}.mlp.{p}.weight";

        // The base's tensors but the MLPs (and the rotary buffers some old checkpoints hold).
        var baseTensors = baseModel
            .Checkpoint.Tensors.Where(t => !t.Name.Contains(".mlp.") && !t.Name.EndsWith("rotary_emb.inv_freq"))
            .ToList();
        if (kind == MoeArchitectureKind.Mixtral)
        {
            outputs.AddRange(baseTensors.Select(t => Copy(t.Name, new Piece(Find(baseModel, t.Name), baseModel))));
            for (int l = 0; l < layers; l++)
            {
                var pieces = projections.ToDictionary(
                    p => p,
                    p => Enumerable.Range(0, experts.Count).Select(e => ExpertPiece(e, Mlp(l, p))).ToList()
                );
                CheckSameShapes(pieces.Values.SelectMany(x => x));
                if (options.MixtralLayout == MixtralLayout.PerExpert)
                {
                    for (int e = 0; e < experts.Count; e++)
                    {
                        string prefix = $"model.layers.{l}.block_sparse_moe.experts.{e}";
                        outputs.Add(Copy($"{prefix}.w1.weight", pieces["gate_proj"][e]));
                        outputs.Add(Copy($"{prefix}.w2.weight", pieces["down_proj"][e]));
                        outputs.Add(Copy($"{prefix}.w3.weight", pieces["up_proj"][e]));
                    }
                    continue;
                }
                // gate_up_proj[e] = cat(gate_proj, up_proj) along the rows; down_proj[e] = the expert's down_proj.
                var gate = pieces["gate_proj"][0].Tensor!;
                var down = pieces["down_proj"][0].Tensor!;
                var gateUp = Enumerable
                    .Range(0, experts.Count)
                    .SelectMany(e => new[] { pieces["gate_proj"][e], pieces["up_proj"][e] })
                    .ToList();
                long count = experts.Count;
                long[] gateUpShape = [count, 2 * gate.Info.Shape[0], gate.Info.Shape[1]];
                long[] downShape = [count, down.Info.Shape[0], down.Info.Shape[1]];
                string fused = $"model.layers.{l}.mlp.experts";
                outputs.Add(new(new($"{fused}.gate_up_proj", Out(gate), gateUpShape), gateUp));
                outputs.Add(new(new($"{fused}.down_proj", Out(down), downShape), pieces["down_proj"]));
            }
            string router = options.MixtralLayout == MixtralLayout.PerExpert ? "block_sparse_moe.gate" : "mlp.gate";
            for (int l = 0; l < layers; l++)
                outputs.Add(Gate($"model.layers.{l}.{router}.weight", gates[l][..experts.Count], outDType));
            return outputs;
        }

        // DeepSeek and Qwen: the MLPs become experts in place, in the base's tensor order.
        string sharedName = kind == MoeArchitectureKind.Qwen ? "shared_expert" : "shared_experts";
        foreach (var t in baseModel.Checkpoint.Tensors.Where(t => !t.Name.EndsWith("rotary_emb.inv_freq")))
        {
            if (!t.Name.Contains(".mlp."))
            {
                outputs.Add(Copy(t.Name, new Piece(Find(baseModel, t.Name), baseModel)));
                if (kind == MoeArchitectureKind.Qwen && ZeroBias(t.Name, baseModel, baseConfig, outDType) is { } bias)
                    outputs.Add(bias);
                continue;
            }
            for (int e = 0; e < experts.Count; e++)
                outputs.Add(Copy(t.Name.Replace(".mlp.", $".mlp.experts.{e}."), ExpertPiece(e, t.Name)));
            if (shared.Count == 1)
                outputs.Add(Copy(t.Name.Replace(".mlp.", $".mlp.{sharedName}."), ExpertPiece(experts.Count, t.Name)));
        }
        for (int l = 0; l < layers; l++)
        {
            outputs.Add(Gate($"model.layers.{l}.mlp.gate.weight", gates[l][..experts.Count], outDType));
            if (kind == MoeArchitectureKind.Qwen)
                outputs.Add(
                    Gate($"model.layers.{l}.mlp.shared_expert_gate.weight", gates[l][experts.Count..], outDType)
                );
        }
        return outputs;
    }

    private static Output Gate(string name, float[][] rows, DType? outDType) =>
        new(
            new TensorInfo(name, outDType ?? DType.F32, [rows.Length, rows.Length == 0 ? 0 : rows[0].Length]),
            [new Piece(null, null, Values: [.. rows.SelectMany(r => r)])]
        );

    /// <summary>
    /// Qwen2-MoE has q/k/v biases; a base without them gets zeros after each projection's weight (as mergekit does,
    /// head_dim = hidden / heads).
    /// </summary>
    private static Output? ZeroBias(string weightName, Source baseModel, JsonObject config, DType? outDType)
    {
        foreach (var p in new[] { "q_proj", "k_proj", "v_proj" })
        {
            if (!weightName.EndsWith($"self_attn.{p}.weight"))
                continue;
            var biasName = weightName[..^"weight".Length] + "bias";
            if (baseModel.Checkpoint.Contains(biasName))
                return null;
            int heads = Int(config, "num_attention_heads", baseModel);
            int headDim = Int(config, "hidden_size", baseModel) / heads;
            int count = p == "q_proj" ? heads : config["num_key_value_heads"]?.GetValue<int>() ?? heads;
            return new(
                new TensorInfo(biasName, outDType ?? DType.F32, [count * headDim]),
                [new Piece(null, null, Values: new float[count * headDim])]
            );
        }
        return null;
    }

    private static void CheckSameShapes(IEnumerable<Piece> pieces)
    {
        foreach (var group in pieces.GroupBy(p => p.Tensor!.Name))
        {
            var first = group.First().Tensor!;
            if (group.FirstOrDefault(p => !p.Tensor!.Info.Shape.SequenceEqual(first.Info.Shape)) is { } other)
                throw new AlloyException(
                    $"{other.From!.Folder}: {first.Name} is [{string.Join(", ", other.Tensor!.Info.Shape)}] but "
                        + $"[{string.Join(", ", first.Info.Shape)}] in {group.First().From!.Folder}; the experts of a "
                        + "Mixtral output must have the same MLP sizes"
                );
        }
    }

    /// <summary>Streams every output tensor into its shard, a chunk of rows at a time.</summary>
    private static void Write(List<Output> outputs, string folder, MoeOptions options, Action<int, int>? progress)
    {
        var plan = ShardPlan.Create([.. outputs.Select(o => o.Info)], options.MaxShardBytes);
        using var writer = new ShardedWriter(folder, plan);
        for (int i = 0; i < outputs.Count; i++)
        {
            var o = outputs[i];
            foreach (var piece in o.Pieces)
                WritePiece(writer, o.Info, piece, options.Seed);
            progress?.Invoke(i + 1, outputs.Count);
        }
        writer.Complete();
    }

    private static void WritePiece(ShardedWriter writer, TensorInfo info, Piece piece, ulong seed)
    {
        if (piece.Values is { } values)
        {
            Append(writer, info, values);
            return;
        }
        var tensor = piece.Tensor!;
        var shape = tensor.Info.Shape;
        var adapter = piece.From!.Adapter;
        var lora = adapter?.DeltaFor(tensor.Name, shape);
        var loraBias = adapter?.BiasFor(tensor.Name, shape);
        double? noise = piece.Expert?.NoiseScale;
        double? scale = piece.Residual ? piece.Expert?.ResidualScale : null;
        // Unchanged bytes are copied as they are: bit for bit whatever the dtype.
        if (tensor.Info.DType == info.DType && lora is null && loraBias is null && noise is null && scale is null)
        {
            for (long start = 0; start < tensor.Info.ByteLength; start += ChunkElements)
                writer.Append(
                    info.Name,
                    tensor.Bytes(start, (int)Math.Min(ChunkElements, tensor.Info.ByteLength - start))
                );
            return;
        }
        long cols = shape.Length == 2 ? shape[1] : tensor.Info.ElementCount;
        long rows = Math.Max(1, tensor.Info.ElementCount / Math.Max(1, cols));
        int rowsPerChunk = (int)Math.Max(1, ChunkElements / Math.Max(1, cols));
        // Noise is keyed by the source tensor's name and the expert's index (torch's global RNG in mergekit).
        var stream = RandomStream.For(seed, tensor.Name, piece.ExpertIndex);
        var buffer = new float[Math.Min(rows, rowsPerChunk) * cols];
        for (long row = 0; row < rows; row += rowsPerChunk)
        {
            int n = (int)Math.Min(rowsPerChunk, rows - row);
            var span = buffer.AsSpan(0, (int)(n * cols));
            long start = row * cols;
            tensor.ReadFloat32(start, span);
            lora?.AddRows(row, n, (int)cols, span);
            loraBias?.Add(start, span);
            if (noise is { } sigma)
                for (int k = 0; k < span.Length; k++)
                    span[k] += (float)(sigma * stream.Normal(start + k));
            if (scale is { } s)
                System.Numerics.Tensors.TensorPrimitives.Multiply(span, (float)s, span);
            Append(writer, info, span);
        }
    }

    private static void Append(ShardedWriter writer, TensorInfo info, ReadOnlySpan<float> values)
    {
        var bytes = new byte[values.Length * info.DType.Size()];
        TensorConvert.FromFloat32(values, info.DType, bytes);
        writer.Append(info.Name, bytes);
    }

    /// <summary>
    /// The base's tokenizer as mergekit saves it: padding on the left, padded with BOS (EOS when there is none).
    /// </summary>
    private static void SaveTokenizer(string baseFolder, string outFolder)
    {
        DonorFiles.Copy(baseFolder, outFolder, copyTokenizer: true);
        var configPath = Path.Combine(outFolder, "tokenizer_config.json");
        if (!File.Exists(configPath))
            return;
        var tokenizer = TextTokenizer.Load(outFolder);
        var pad = tokenizer.TokenContent(MoePrompts.PadId(tokenizer));
        var config = StrictJson.ReadObjectFileIfPresent(configPath)!;
        config["padding_side"] = "left";
        config["pad_token"] = pad;
        OutputConfig.Write(config, configPath);
        var mapPath = Path.Combine(outFolder, "special_tokens_map.json");
        if (StrictJson.ReadObjectFileIfPresent(mapPath) is { } map)
        {
            map["pad_token"] = pad;
            OutputConfig.Write(map, mapPath);
        }
    }
}
