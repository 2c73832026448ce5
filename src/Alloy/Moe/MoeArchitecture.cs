using System.Text.Json.Nodes;

namespace Alloy.Moe;

/// <summary>The output architectures of mergekit-moe that Alloy writes (Qwen3 MoE is not among them).</summary>
public enum MoeArchitectureKind
{
    Mixtral,
    DeepSeek,
    Qwen,
}

/// <summary>
/// Which output architecture a config gets and the config.json it is written with, as mergekit-moe decides
/// (mergekit/moe/mixtral.py, deepseek.py, qwen.py; the choice in scripts/moe.py).
/// </summary>
public static class MoeArchitecture
{
    /// <summary>mergekit's names, in its order of preference after Mixtral.</summary>
    private static readonly (MoeArchitectureKind Kind, string Name)[] All =
    [
        (MoeArchitectureKind.Mixtral, "Mixtral"),
        (MoeArchitectureKind.DeepSeek, "DeepSeek MoE"),
        (MoeArchitectureKind.Qwen, "Qwen MoE"),
    ];

    /// <summary>
    /// The candidates whose name starts with <c>architecture:</c> (any case) and that support the config; Mixtral
    /// when it is one of them, else the first. <paramref name="modelTypes"/>: each model's config model_type, base
    /// first, then experts, then shared experts.
    /// </summary>
    public static MoeArchitectureKind Select(MoeRecipe config, IReadOnlyList<string?> modelTypes)
    {
        var candidates = All.Where(a =>
                config.Architecture is not { } prefix || a.Name.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)
            )
            .ToList();
        string known = string.Join(", ", All.Select(a => a.Name));
        if (candidates.Count == 0)
            throw new AlloyException(
                $"{config.Location}: no output architecture matches 'architecture: {config.Architecture}'; the "
                    + $"architectures are {known}"
            );
        var reasons = new List<string>();
        foreach (var (kind, name) in candidates)
        {
            if (Unsupported(kind, config, modelTypes) is { } reason)
                reasons.Add($"{name}: {reason}");
            else
                return kind; // Mixtral is first, so it wins whenever it fits
        }
        throw new AlloyException(
            $"{config.Location}: no output architecture fits these models ({string.Join("; ", reasons)})"
        );
    }

    /// <summary>
    /// Why <paramref name="kind"/> cannot take the config, or null when it can (mergekit's supports_config).
    /// </summary>
    private static string? Unsupported(MoeArchitectureKind kind, MoeRecipe config, IReadOnlyList<string?> modelTypes)
    {
        var shared = config.SharedExperts ?? [];
        // Mixtral checks the base and the experts only; the others the shared experts too.
        var types =
            kind == MoeArchitectureKind.Mixtral
                ? modelTypes.Take(1 + config.Experts.Count).ToList()
                : modelTypes.ToList();
        string[] allowed = kind == MoeArchitectureKind.Qwen ? ["llama", "mistral", "qwen2"] : ["llama", "mistral"];
        switch (kind)
        {
            case MoeArchitectureKind.Mixtral when shared.Count > 0:
                return "no shared experts";
            case MoeArchitectureKind.DeepSeek when shared.Count > 1:
                return "at most one shared expert";
            case MoeArchitectureKind.DeepSeek
                when shared.Count == 1 && (Any(shared[0].PositivePrompts) || Any(shared[0].NegativePrompts)):
                return "a shared expert without a gate (no prompts)";
            case MoeArchitectureKind.Qwen when shared.Count != 1:
                return "exactly one shared expert";
            case MoeArchitectureKind.Qwen when config.GateMode != "random" && !Any(shared[0].PositivePrompts):
                return "prompts for the shared expert's gate";
        }
        if (types.Distinct().Count() != 1)
            return "every model of the same architecture (model_type)";
        if (!allowed.Contains(types[0]))
            return $"{string.Join("/", allowed)} models (these are {types[0] ?? "of no model_type"})";
        return null;
    }

    private static bool Any(IReadOnlyList<string>? prompts) => prompts is { Count: > 0 };

    /// <summary>
    /// config.json as mergekit writes it: the base's config with the fields mergekit sets and the MoE fields of the
    /// transformers config class it builds (MixtralConfig, Qwen2MoeConfig, or DeepSeek's remote-code config).
    /// </summary>
    public static JsonObject Config(
        MoeArchitectureKind kind,
        JsonObject baseConfig,
        MoeRecipe config,
        string? dtypeName,
        Diagnostics diagnostics
    )
    {
        var c = (JsonObject)baseConfig.DeepClone();
        int experts = config.Experts.Count;
        int shared = config.SharedExperts?.Count ?? 0;
        var intermediate = c["intermediate_size"]?.DeepClone();
        switch (kind)
        {
            case MoeArchitectureKind.Mixtral:
                c["model_type"] = "mixtral";
                c["architectures"] = new JsonArray("MixtralForCausalLM");
                c["num_local_experts"] = experts;
                c["num_experts_per_tok"] = config.ExpertsPerToken;
                c["sliding_window"] = null;
                Default(c, "output_router_logits", false);
                Default(c, "router_aux_loss_coef", 0.001);
                Default(c, "router_jitter_noise", 0.0);
                SetDType(c, dtypeName, always: true);
                break;
            case MoeArchitectureKind.Qwen:
                c["model_type"] = "qwen2_moe";
                c["architectures"] = new JsonArray("Qwen2MoeForCausalLM");
                c["num_experts"] = experts;
                c["num_experts_per_tok"] = config.ExpertsPerToken;
                c["decoder_sparse_step"] = 1;
                c["norm_topk_prob"] = true;
                c["sliding_window"] = null;
                c["use_sliding_window"] = false;
                c["shared_expert_intermediate_size"] = intermediate?.DeepClone();
                c["moe_intermediate_size"] = intermediate?.DeepClone();
                Default(c, "output_router_logits", false);
                Default(c, "router_aux_loss_coef", 0.001);
                Default(c, "mlp_only_layers", new JsonArray());
                SetDType(c, dtypeName, always: false);
                break;
            case MoeArchitectureKind.DeepSeek:
                c["architectures"] = new JsonArray("DeepseekForCausalLM");
                c["model_type"] = "deepseek";
                c["n_routed_experts"] = experts;
                c["n_shared_experts"] = shared == 0 ? null : shared;
                c["num_experts_per_tok"] = config.ExpertsPerToken;
                c["first_k_dense_replace"] = 0;
                c["moe_layer_freq"] = 1;
                c["scoring_func"] = "softmax";
                c["norm_topk_prob"] = true;
                c["moe_intermediate_size"] = intermediate?.DeepClone();
                const string repo = "deepseek-ai/deepseek-moe-16b-base--";
                c["auto_map"] = new JsonObject
                {
                    ["AutoConfig"] = repo + "configuration_deepseek.DeepseekConfig",
                    ["AutoModel"] = repo + "modeling_deepseek.DeepseekModel",
                    ["AutoModelForCausalLM"] = repo + "modeling_deepseek.DeepseekForCausalLM",
                };
                SetDType(c, dtypeName, always: false);
                break;
        }
        // llama.cpp needs a power of two; DeepSeek output does not warn in mergekit.
        if (kind != MoeArchitectureKind.DeepSeek && (experts & (experts - 1)) != 0)
            diagnostics.Warn($"{experts} experts is not a power of two: llama.cpp cannot run the model");
        return c;
    }

    private static void Default(JsonObject c, string key, JsonNode? value)
    {
        if (!c.ContainsKey(key))
            c[key] = value;
    }

    /// <summary>Keeps the base's key: transformers ≥ 4.56 writes "dtype", older versions "torch_dtype".</summary>
    private static void SetDType(JsonObject c, string? dtypeName, bool always)
    {
        if (dtypeName is null && !always)
            return;
        var key = c.ContainsKey("dtype") && !c.ContainsKey("torch_dtype") ? "dtype" : "torch_dtype";
        c[key] = dtypeName;
    }
}
