using Alloy.Recipes;
using Alloy.Recipes.Yaml;

namespace Alloy.Moe;

/// <summary>One expert of a mergekit-moe config: a dense model whose MLP becomes an expert.</summary>
public sealed record MoeExpert(
    ModelReference SourceModel,
    IReadOnlyList<string>? PositivePrompts = null,
    IReadOnlyList<string>? NegativePrompts = null,
    double? NoiseScale = null,
    double? ResidualScale = null
)
{
    public SourceLocation Location { get; init; } = SourceLocation.Code;
}

/// <summary>
/// mergekit-moe's config (MoEMergeConfig): attention, norms and embeddings from <see cref="BaseModel"/>, each expert's
/// MLP from its source model, routers from <see cref="GateMode"/>.
/// </summary>
public sealed record MoeRecipe
{
    /// <summary>The gate modes mergekit knows.</summary>
    public static readonly string[] GateModes =
    [
        "hidden",
        "hidden_avg",
        "hidden_last",
        "cheap_embed",
        "random",
        "uniform_random",
    ];

    public required ModelReference BaseModel { get; init; }
    public required IReadOnlyList<MoeExpert> Experts { get; init; }
    public string GateMode { get; init; } = "hidden";

    /// <summary>The output dtype's torch name; null: the base's torch_dtype.</summary>
    public string? DType { get; init; }

    public int ExpertsPerToken { get; init; } = 2;
    public IReadOnlyList<MoeExpert>? SharedExperts { get; init; }

    /// <summary>Narrows the output architecture by name prefix (mixtral, deepseek, qwen).</summary>
    public string? Architecture { get; init; }

    /// <summary>The config's text, written beside the model as mergekit_moe_config.yml.</summary>
    public string Text { get; init; } = "";

    /// <summary>Where relative model paths are looked for besides the working folder (the config's folder).</summary>
    public string? Folder { get; init; }

    public SourceLocation Location { get; init; } = SourceLocation.Code;

    public static MoeRecipe ParseFile(string path, Diagnostics diagnostics) =>
        RecipeParser.ParseMoe(RecipeParser.ReadConfigFile(path), path, diagnostics);

    /// <summary>Whether the gates take hidden states of the base model (run by Alloy.Runtime).</summary>
    public bool NeedsHiddenStates => GateMode is "hidden" or "hidden_avg" or "hidden_last";

    /// <summary>
    /// mergekit's is_bad_config as one-line errors: experts per token at least 1 and at most the expert count; unless
    /// the gates are random, every expert has positive prompts, not all experts share the same prompts, and (without
    /// <paramref name="allowAllSame"/>) not all experts are the same model.
    /// </summary>
    public void Validate(bool allowAllSame)
    {
        if (ExpertsPerToken < 1)
            throw new AlloyException($"{Location}: experts_per_token must be at least 1 (got {ExpertsPerToken})");
        if (Experts.Count < ExpertsPerToken)
            throw new AlloyException(
                $"{Location}: {Experts.Count} expert(s) but experts_per_token is {ExpertsPerToken}; list at least as "
                    + "many experts as experts_per_token"
            );
        // mergekit skips the prompt checks for `random` only: uniform_random is not exempt.
        if (GateMode == "random")
            return;
        for (int i = 0; i < Experts.Count; i++)
            if (Experts[i].PositivePrompts is not { Count: > 0 })
                throw new AlloyException(
                    $"{Experts[i].Location}: expert {i} has no positive_prompts; gate_mode {GateMode} routes by them "
                        + "(give each expert prompts, or use gate_mode: random)"
                );
        static string Key(MoeExpert e) =>
            string.Join("\u0000", e.PositivePrompts!) + "\u0001" + string.Join("\u0000", e.NegativePrompts ?? []);
        if (Experts.Count > 1 && Experts.Skip(1).All(e => Key(e) == Key(Experts[0])))
            throw new AlloyException(
                $"{Location}: every expert has the same positive and negative prompts, so the router cannot tell them "
                    + "apart; give each expert prompts for what should go to it"
            );
        if (!allowAllSame && Experts.Count > 1 && Experts.Skip(1).All(e => e.SourceModel == Experts[0].SourceModel))
            throw new AlloyException(
                $"{Location}: every expert is the same model ({Experts[0].SourceModel}): more compute for the same "
                    + "output; if you will train the model after merging, pass "
                    + "--i-understand-this-is-not-useful-without-training"
            );
    }
}
