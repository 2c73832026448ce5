using System.Text.Json.Nodes;

namespace Alloy.Runtime.Models;

/// <summary>
/// The decoder families the runtime runs: one architecture, differing in biases, attention windows and the
/// feed-forward part (a dense MLP, or a sparse mixture of experts in Mixtral and Qwen2-MoE).
/// </summary>
public enum ArchitectureFamily
{
    Llama,
    Mistral,
    Qwen2,
    Mixtral,
    Qwen2Moe,
}

/// <summary>
/// A Llama-family model's shape and hyper-parameters, read from Hugging Face's config.json with transformers'
/// defaults for each family. Anything the runtime cannot run faithfully is refused here, with one line.
/// </summary>
public sealed record ModelConfig
{
    public required ArchitectureFamily Family { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KeyValueHeads { get; init; }
    public required int HeadDim { get; init; }
    public double RmsNormEpsilon { get; init; } = 1e-6;
    public RopeConfig Rope { get; init; } = new();

    /// <summary>Biases on q_proj, k_proj, v_proj (Qwen2 always; Llama with attention_bias).</summary>
    public bool QkvBias { get; init; }

    /// <summary>A bias on o_proj (Llama with attention_bias).</summary>
    public bool OutputBias { get; init; }

    /// <summary>Biases on gate_proj, up_proj, down_proj (Llama with mlp_bias).</summary>
    public bool MlpBias { get; init; }

    public bool TieWordEmbeddings { get; init; }

    /// <summary>
    /// Mistral's sliding window: a query at position p sees keys at positions &gt; p − window. Null: all earlier keys.
    /// </summary>
    public int? SlidingWindow { get; init; }

    /// <summary>config.json's eos_token_id (one or several), the default stop tokens of generation.</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    /// <summary>
    /// config.json's max_position_embeddings: the context the model was trained for (null when not given).
    /// </summary>
    public int? MaxPositions { get; init; }

    /// <summary>The mixture of experts of every layer (Mixtral, Qwen2-MoE); null for a dense model.</summary>
    public MoeConfig? Moe { get; init; }

    public int QueryDim => Heads * HeadDim;
    public int KeyValueDim => KeyValueHeads * HeadDim;

    /// <summary>Query heads per key/value head (grouped-query attention).</summary>
    public int GroupSize => Heads / KeyValueHeads;

    /// <summary>
    /// Every parameter tensor of the model as Hugging Face names and shapes it, in transformers' state_dict order
    /// (per layer: attention, MLP, then the two norms). A tied model has no lm_head.weight.
    /// </summary>
    public IReadOnlyList<(string Name, int[] Shape)> ParameterShapes()
    {
        var list = new List<(string, int[])> { ("model.embed_tokens.weight", [VocabSize, HiddenSize]) };
        for (int layer = 0; layer < Layers; layer++)
        {
            string p = $"model.layers.{layer}.";
            void Linear(string name, int outFeatures, int inFeatures, bool bias)
            {
                list.Add((p + name + ".weight", [outFeatures, inFeatures]));
                if (bias)
                    list.Add((p + name + ".bias", [outFeatures]));
            }
            Linear("self_attn.q_proj", QueryDim, HiddenSize, QkvBias);
            Linear("self_attn.k_proj", KeyValueDim, HiddenSize, QkvBias);
            Linear("self_attn.v_proj", KeyValueDim, HiddenSize, QkvBias);
            Linear("self_attn.o_proj", HiddenSize, QueryDim, OutputBias);
            if (Moe is not null)
                list.AddRange(Moe.Shapes(Family, p, HiddenSize));
            else
            {
                Linear("mlp.gate_proj", IntermediateSize, HiddenSize, MlpBias);
                Linear("mlp.up_proj", IntermediateSize, HiddenSize, MlpBias);
                Linear("mlp.down_proj", HiddenSize, IntermediateSize, MlpBias);
            }
            list.Add((p + "input_layernorm.weight", [HiddenSize]));
            list.Add((p + "post_attention_layernorm.weight", [HiddenSize]));
        }
        list.Add(("model.norm.weight", [HiddenSize]));
        if (!TieWordEmbeddings)
            list.Add(("lm_head.weight", [VocabSize, HiddenSize]));
        return list;
    }

    /// <summary>Reads config.json's keys; <paramref name="where"/> (the file's path) starts every message.</summary>
    public static ModelConfig FromJson(JsonObject json, string where)
    {
        var reader = new ConfigReader(json, where);
        string modelType = reader.String("model_type")
            ?? throw reader.Error(
                "has no \"model_type\"; Alloy.Runtime runs llama, mistral, qwen2, mixtral and qwen2_moe models"
            );
        var family = modelType switch
        {
            "llama" => ArchitectureFamily.Llama,
            "mistral" => ArchitectureFamily.Mistral,
            "qwen2" => ArchitectureFamily.Qwen2,
            "mixtral" => ArchitectureFamily.Mixtral,
            "qwen2_moe" => ArchitectureFamily.Qwen2Moe,
            _ => throw reader.Error(
                $"model_type '{modelType}' is not supported by Alloy.Runtime (supported: llama, mistral, qwen2, "
                    + "mixtral, qwen2_moe)"
            ),
        };

        int hidden = reader.PositiveInt("hidden_size");
        int heads = reader.PositiveInt("num_attention_heads");
        int kvHeads = reader.PositiveInt("num_key_value_heads", heads);
        if (heads % kvHeads != 0)
            throw reader.Error($"num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kvHeads})");
        int? givenHeadDim = reader.OptionalPositiveInt("head_dim");
        if (givenHeadDim is null && hidden % heads != 0)
            throw reader.Error(
                $"hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads}) and no head_dim is given"
            );
        int headDim = givenHeadDim ?? hidden / heads;
        if (headDim % 2 != 0)
            throw reader.Error($"head_dim {headDim} is odd; rotary embeddings rotate pairs of dimensions");

        string act = reader.String("hidden_act") ?? "silu";
        if (act is not "silu")
            throw reader.Error($"hidden_act '{act}' is not supported (Llama-family models use 'silu')");

        bool qkvBias,
            outputBias,
            mlpBias;
        int? window = null;
        if (family is ArchitectureFamily.Qwen2 or ArchitectureFamily.Qwen2Moe)
        {
            (qkvBias, outputBias, mlpBias) = (true, false, false);
            if (reader.Bool("use_sliding_window", false))
                throw reader.Error(
                    "use_sliding_window is true; Alloy.Runtime runs Qwen2 models with full attention only (set it to "
                        + "false)"
                );
        }
        else if (family == ArchitectureFamily.Mixtral)
        {
            (qkvBias, outputBias, mlpBias) = (false, false, false);
            window = reader.OptionalPositiveInt("sliding_window");
        }
        else
        {
            bool attentionBias = reader.Bool("attention_bias", false);
            (qkvBias, outputBias, mlpBias) = (attentionBias, attentionBias, reader.Bool("mlp_bias", false));
            if (family == ArchitectureFamily.Mistral)
                window = reader.OptionalPositiveInt("sliding_window");
        }
        var moe = MoeFromJson(reader, family);

        return new ModelConfig
        {
            Family = family,
            VocabSize = reader.PositiveInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = reader.PositiveInt("intermediate_size"),
            Layers = reader.PositiveInt("num_hidden_layers"),
            Heads = heads,
            KeyValueHeads = kvHeads,
            HeadDim = headDim,
            RmsNormEpsilon = reader.PositiveDouble("rms_norm_eps", 1e-6),
            Rope = RopeConfig.FromJson(reader),
            QkvBias = qkvBias,
            OutputBias = outputBias,
            MlpBias = mlpBias,
            TieWordEmbeddings = reader.Bool("tie_word_embeddings", false),
            SlidingWindow = window,
            EosTokenIds = reader.IntList("eos_token_id"),
            MaxPositions = reader.OptionalPositiveInt("max_position_embeddings"),
            Moe = moe,
        };
    }

    /// <summary>
    /// Mixtral's and Qwen2-MoE's experts, with transformers' defaults; what the runtime does not run is refused: router
    /// noise (Mixtral's router_jitter_noise, a training-time perturbation), and Qwen2-MoE's dense layers among sparse
    /// ones (decoder_sparse_step ≠ 1, mlp_only_layers).
    /// </summary>
    private static MoeConfig? MoeFromJson(ConfigReader reader, ArchitectureFamily family)
    {
        MoeConfig moe;
        if (family == ArchitectureFamily.Mixtral)
        {
            if (reader.OptionalDouble("router_jitter_noise") is double noise && noise != 0)
                throw reader.Error($"router_jitter_noise is {noise}; Alloy.Runtime routes without noise (set it to 0)");
            moe = new MoeConfig
            {
                Experts = reader.PositiveInt("num_local_experts", 8),
                TopK = reader.PositiveInt("num_experts_per_tok", 2),
                IntermediateSize = reader.PositiveInt("intermediate_size"),
                NormalizeTopK = true,
            };
        }
        else if (family == ArchitectureFamily.Qwen2Moe)
        {
            int step = reader.PositiveInt("decoder_sparse_step", 1);
            if (step != 1)
                throw reader.Error(
                    $"decoder_sparse_step is {step}; Alloy.Runtime runs Qwen2-MoE models whose every layer is sparse "
                        + "(decoder_sparse_step 1)"
                );
            if (reader.IntList("mlp_only_layers") is { Count: > 0 } dense)
                throw reader.Error(
                    $"mlp_only_layers lists [{string.Join(", ", dense)}]; Alloy.Runtime runs Qwen2-MoE models whose "
                        + "every layer is sparse (an empty list)"
                );
            moe = new MoeConfig
            {
                Experts = reader.PositiveInt("num_experts", 60),
                TopK = reader.PositiveInt("num_experts_per_tok", 4),
                IntermediateSize = reader.PositiveInt("moe_intermediate_size", 1408),
                NormalizeTopK = reader.Bool("norm_topk_prob", false),
                SharedIntermediateSize = reader.PositiveInt("shared_expert_intermediate_size", 5632),
            };
        }
        else
            return null;
        if (moe.TopK > moe.Experts)
            throw reader.Error($"num_experts_per_tok ({moe.TopK}) is more than the {moe.Experts} experts");
        return moe;
    }
}

/// <summary>Rotary position embedding: the base θ and an optional frequency scaling.</summary>
public sealed record RopeConfig
{
    public double Theta { get; init; } = 10000;

    /// <summary>"default", "linear" or "llama3".</summary>
    public string Type { get; init; } = "default";

    /// <summary>linear and llama3: frequencies are divided by this (llama3: the long wavelengths only).</summary>
    public double Factor { get; init; } = 1;

    public double LowFreqFactor { get; init; } = 1;
    public double HighFreqFactor { get; init; } = 4;
    public int OriginalMaxPositions { get; init; } = 8192;

    /// <summary>
    /// rope_theta and rope_scaling (transformers ≤ 4.x), or rope_parameters (transformers 5, which moved rope_theta
    /// inside it). "type" is the older spelling of "rope_type"; "default" means no scaling.
    /// </summary>
    internal static RopeConfig FromJson(ConfigReader reader)
    {
        string key = reader.Object("rope_parameters") is null ? "rope_scaling" : "rope_parameters";
        double theta = reader.PositiveDouble("rope_theta", 10000);
        if (reader.Object(key) is not { } scaling)
            return new RopeConfig { Theta = theta };

        var inner = reader.Nested(scaling, key);
        theta = inner.PositiveDouble("rope_theta", theta);
        string type = inner.String("rope_type") ?? inner.String("type") ?? "default";
        switch (type)
        {
            case "default":
                return new RopeConfig { Theta = theta };
            case "linear":
                return new RopeConfig
                {
                    Theta = theta,
                    Type = type,
                    Factor = inner.PositiveDouble("factor"),
                };
            case "llama3":
                var rope = new RopeConfig
                {
                    Theta = theta,
                    Type = type,
                    Factor = inner.PositiveDouble("factor"),
                    LowFreqFactor = inner.PositiveDouble("low_freq_factor"),
                    HighFreqFactor = inner.PositiveDouble("high_freq_factor"),
                    OriginalMaxPositions = inner.PositiveInt("original_max_position_embeddings"),
                };
                if (rope.HighFreqFactor <= rope.LowFreqFactor)
                    throw inner.Error(
                        $"high_freq_factor ({rope.HighFreqFactor}) must be larger than low_freq_factor "
                            + $"({rope.LowFreqFactor})"
                    );
                return rope;
            default:
                throw inner.Error(
                    $"type '{type}' is not supported by Alloy.Runtime (supported: linear, llama3, or none)"
                );
        }
    }
}

/// <summary>Typed reads of config.json keys with one-line messages naming the file and key.</summary>
internal sealed class ConfigReader(JsonObject json, string where, string prefix = "")
{
    public AlloyException Error(string problem) => new($"{where}: {prefix}{problem}");

    public ConfigReader Nested(JsonObject inner, string key) => new(inner, where, $"{prefix}{key}: ");

    // Where StrictJson's typed readers say which key: the file, and the enclosing key of a nested object.
    private string Where => prefix.Length == 0 ? where : $"{where}: {prefix.TrimEnd(' ', ':')}";

    public string? String(string key) => json.StringField(key, Where);

    public JsonObject? Object(string key) => json.ObjectField(key, Where);

    public bool Bool(string key, bool fallback) => json.BoolField(key, Where) ?? fallback;

    public int PositiveInt(string key, int? fallback = null) =>
        OptionalPositiveInt(key) ?? fallback ?? throw Error($"\"{key}\" is missing");

    public int? OptionalPositiveInt(string key) =>
        json[key] switch
        {
            null => null,
            JsonValue v when v.TryGetValue<int>(out var i) && i > 0 => i,
            var other => throw Error($"'{key}' must be a positive whole number, not {StrictJson.Shorten(other)}"),
        };

    public double? OptionalDouble(string key) =>
        json[key] switch
        {
            null => null,
            JsonValue v when v.TryGetValue<double>(out var d) && double.IsFinite(d) => d,
            var other => throw Error($"'{key}' must be a number, not {StrictJson.Shorten(other)}"),
        };

    public double PositiveDouble(string key, double? fallback = null) =>
        json[key] switch
        {
            null => fallback ?? throw Error($"\"{key}\" is missing"),
            JsonValue v when v.TryGetValue<double>(out var d) && d > 0 && double.IsFinite(d) => d,
            var other => throw Error($"'{key}' must be a positive number, not {StrictJson.Shorten(other)}"),
        };

    public IReadOnlyList<int> IntList(string key) =>
        json[key] switch
        {
            null => [],
            JsonValue v when v.TryGetValue<int>(out var i) => [i],
            JsonArray a when a.All(e => e is JsonValue ev && ev.TryGetValue<int>(out _)) =>
            [
                .. a.Select(e => e!.GetValue<int>()),
            ],
            var other => throw Error($"'{key}' must be a token id or a list of them, not {StrictJson.Shorten(other)}"),
        };
}
