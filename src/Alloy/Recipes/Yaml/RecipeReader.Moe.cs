using Alloy.Moe;
using Alloy.Tensors;

namespace Alloy.Recipes.Yaml;

/// <summary>mergekit-moe's config (MoEMergeConfig and its Expert entries), with pydantic's coercions.</summary>
internal sealed partial class RecipeReader
{
    private static readonly string[] MoeKeys =
    [
        "base_model",
        "experts",
        "gate_mode",
        "dtype",
        "experts_per_token",
        "shared_experts",
        "architecture",
    ];

    private static readonly string[] ExpertKeys =
    [
        "source_model",
        "positive_prompts",
        "negative_prompts",
        "noise_scale",
        "residual_scale",
    ];

    public MoeRecipe MoeRecipe(YNode root, string text)
    {
        if (root is not YMapping top)
            throw Error(root, $"a MoE config must be a mapping with 'base_model' and 'experts', not {Describe(root)}");
        var fields = Fields(top, "the MoE config", MoeKeys, hasParameters: false);
        var baseNode = Value(fields, "base_model")
            ?? throw Error(root, "missing required key 'base_model' (the model that gives attention and embeddings)");
        var expertsNode = Value(fields, "experts")
            ?? throw Error(root, "missing required key 'experts' (a list of '- source_model: NAME' entries)");
        string gateMode = "hidden";
        if (Value(fields, "gate_mode") is { } gateNode)
        {
            gateMode = StringValue(gateNode, "'gate_mode'");
            if (!Moe.MoeRecipe.GateModes.Contains(gateMode))
                throw Error(
                    gateNode,
                    $"unknown gate_mode '{gateMode}'; use one of {string.Join(", ", Moe.MoeRecipe.GateModes)}"
                        + (
                            Suggestions.Closest(gateMode, Moe.MoeRecipe.GateModes) is { } near
                                ? $" (did you mean '{near}'?)"
                                : ""
                        )
                );
        }
        string? dtype = null;
        if (Value(fields, "dtype") is { } dtypeNode)
        {
            dtype = StringValue(dtypeNode, "'dtype'");
            if (!DTypes.TryParseTorch(dtype, out var parsed) || !TensorConvert.CanWrite(parsed))
                throw Error(dtypeNode, $"unknown dtype '{dtype}'; use bfloat16, float16 or float32");
        }
        int perToken = 2;
        if (Value(fields, "experts_per_token") is { } perTokenNode)
            perToken = (int)
                System.Numerics.BigInteger.Clamp(
                    Integer(perTokenNode, "'experts_per_token'"),
                    int.MinValue,
                    int.MaxValue
                );
        string? architecture = Value(fields, "architecture") is { } archNode
            ? StringValue(archNode, "'architecture'")
            : null;
        return new MoeRecipe
        {
            BaseModel = Model(baseNode, "'base_model'"),
            Experts = Experts(expertsNode, "'experts'"),
            GateMode = gateMode,
            DType = dtype,
            ExpertsPerToken = perToken,
            SharedExperts = Value(fields, "shared_experts") is { } shared ? Experts(shared, "'shared_experts'") : null,
            Architecture = architecture,
            Text = text,
            Location = root.Location,
        };
    }

    private List<MoeExpert> Experts(YNode node, string what)
    {
        if (node is not YSequence list)
            throw Error(node, $"{what} must be a list of '- source_model: NAME' entries, not {Describe(node)}");
        var result = new List<MoeExpert>(list.Items.Count);
        foreach (var item in list.Items)
        {
            var fields = Fields(item, $"an entry of {what}", ExpertKeys, hasParameters: false);
            var source = Value(fields, "source_model")
                ?? throw Error(item, $"an entry of {what} is missing its 'source_model' key");
            result.Add(
                new MoeExpert(
                    Model(source, "'source_model'"),
                    Prompts(Value(fields, "positive_prompts"), "'positive_prompts'"),
                    Prompts(Value(fields, "negative_prompts"), "'negative_prompts'"),
                    OptionalNumber(Value(fields, "noise_scale"), "'noise_scale'"),
                    OptionalNumber(Value(fields, "residual_scale"), "'residual_scale'")
                )
                {
                    Location = item.Location,
                }
            );
        }
        return result;
    }

    private static List<string>? Prompts(YNode? node, string what)
    {
        if (node is null)
            return null;
        if (node is not YSequence list)
            throw Error(node, $"{what} must be a list of strings (write '- \"...\"' lines), not {Describe(node)}");
        return [.. list.Items.Select(i => StringValue(i, $"each of {what}"))];
    }

    private static double? OptionalNumber(YNode? node, string what) =>
        node is null ? null
        : TryNumber(node, out double value) ? value
        : throw Error(node, $"{what} must be a number, not {Describe(node)}");
}
