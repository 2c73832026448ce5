using Alloy.Tensors;

namespace Alloy.Recipes;

/// <summary>
/// The rules every recipe obeys however it was made (read from YAML or built in code); each broken rule is an
/// <see cref="AlloyException"/> that starts with where it is. What depends on the method (its parameters' types and
/// ranges) or on the models (layer counts, shapes) is checked when the recipe is planned.
/// </summary>
public static class RecipeRules
{
    /// <summary>The chat templates mergekit ships (mergekit/_data/chat_templates/*.jinja).</summary>
    public static IReadOnlyList<string> BuiltInChatTemplates { get; } =
    ["alpaca", "chatml", "llama3", "mistral", "exaone"];

    /// <summary>The dtypes a merge may compute in or write.</summary>
    public static IReadOnlyList<DType> MergeDTypes { get; } =
    [Tensors.DType.BF16, Tensors.DType.F16, Tensors.DType.F32];

    public static void Check(MergeRecipe recipe)
    {
        var at = recipe.MethodLocation;
        if (recipe.Method.Length == 0)
            throw new AlloyException($"{at}: 'merge_method' is empty");
        if (recipe.Name is { Length: 0 })
            throw new AlloyException($"{at}: 'name' is empty");
        bool models = recipe.Models is { Count: > 0 },
            slices = recipe.Slices is { Count: > 0 };
        if (models == slices)
            throw new AlloyException(
                $"{at}: exactly one of 'models' or 'slices' must be present, and not empty "
                    + $"({(models ? "both are" : "neither is")})"
            );
        RefuseRepeats(recipe.Models?.Select(m => (m.Model, (LayerRange?)null, m.Location)) ?? []);
        foreach (var slice in recipe.Slices ?? [])
            CheckSlice(slice);
        foreach (var (key, dtype) in new[] { ("dtype", recipe.DType), ("out_dtype", recipe.OutDType) })
            if (dtype is { } d && !MergeDTypes.Contains(d))
                throw new AlloyException(
                    $"{at}: '{key}: {d.TorchName()}' is not supported; use one of bfloat16, float16, float32"
                );
        if (recipe.ChatTemplate is { } template)
            CheckChatTemplate(template, at);
        if (recipe.Tokenizer is { } tokenizer)
            CheckTokenizer(tokenizer);
    }

    /// <summary>A slice has sources, and each spans the same number of layers (mergekit's rule).</summary>
    public static void CheckSlice(OutputSlice slice)
    {
        if (slice.Sources.Count == 0)
            throw new AlloyException(
                $"{slice.Location}: a slice's 'sources' must be a non-empty list of '- model: NAME, layer_range: "
                    + $"[start, end]' entries"
            );
        foreach (var source in slice.Sources)
        {
            if (source.Range.Start < 0 || source.Range.End < source.Range.Start)
                throw new AlloyException(
                    $"{source.Location}: 'layer_range' must be [start, end] with whole numbers 0 <= start <= end; got "
                        + $"[{source.Range.Start}, {source.Range.End}]"
                );
            if (source.Range.Count != slice.Sources[0].Range.Count)
                throw new AlloyException(
                    $"{source.Location}: All inputs to a slice must contain the same number of layers: this source has "
                        + $"{source.Range.Count}, the first has {slice.Sources[0].Range.Count}"
                );
        }
        RefuseRepeats(slice.Sources.Select(s => (s.Model, (LayerRange?)s.Range, s.Location)));
    }

    /// <summary>
    /// A model listed twice among one merge's inputs (in a slice: with the same layers) is refused. mergekit merges it
    /// once with its last entry's parameters; taking each entry as an input would merge it twice; a repeat is most
    /// often a slip, so neither reading is applied silently. (The same model with other layers, as in a self-merge,
    /// is not a repeat.)
    /// </summary>
    private static void RefuseRepeats(IEnumerable<(ModelReference Model, LayerRange? Range, SourceLocation At)> inputs)
    {
        var repeated = inputs.GroupBy(i => (i.Model, i.Range)).FirstOrDefault(g => g.Count() > 1);
        if (repeated is null)
            return;
        var first = repeated.First();
        string layers = first.Range is { } r ? $" with layers [{r.Start}, {r.End}]" : "";
        string firstAt = first.At.Line > 0 ? $"line {first.At.Line}" : first.At.ToString();
        throw new AlloyException(
            $"{repeated.ElementAt(1).At}: model '{first.Model}'{layers} is listed {repeated.Count()} times (first at "
                + $"{firstAt}); list it once, with the weight you mean (mergekit would keep only its last entry)"
        );
    }

    /// <summary>
    /// <c>auto</c>, a built-in name, or a literal Jinja template; mergekit's check (in characters, i.e. code points): a
    /// literal template is at least 20 long and contains '{'.
    /// </summary>
    public static void CheckChatTemplate(string template, SourceLocation at)
    {
        if (template == "auto" || BuiltInChatTemplates.Contains(template))
            return;
        if (template.EnumerateRunes().Count() >= 20 && template.Contains('{'))
            return;
        var shown = template.Length > 40 ? template[..40] + "…" : template;
        throw new AlloyException(
            $"{at}: Invalid chat template '{shown.ReplaceLineEndings(" ")}': use 'auto', one of "
                + $"{string.Join(", ", BuiltInChatTemplates)}, or a Jinja template (at least 20 characters, with '{{')"
        );
    }

    private static void CheckTokenizer(TokenizerRecipe tokenizer)
    {
        if ((tokenizer.Kind == TokenizerSourceKind.Model) != (tokenizer.Model is not null))
            throw new AlloyException(
                $"{tokenizer.Location}: a tokenizer source names a model exactly when its kind is a model"
            );
        if (tokenizer.PadToMultipleOf is <= 0)
            throw new AlloyException(
                $"{tokenizer.Location}: 'pad_to_multiple_of' must be a positive whole number, not "
                    + $"{tokenizer.PadToMultipleOf}"
            );
        foreach (var (token, settings) in tokenizer.Tokens)
        {
            if (
                settings.Source is TokenSource.ModelToken { } source
                && ((source.Token is null) == (source.TokenId is null) || source.TokenId < 0)
            )
                throw new AlloyException(
                    $"{tokenizer.Location}: token '{token}': a 'model_token' source needs exactly one of 'token' or a "
                        + $"non-negative 'token_id'"
                );
        }
    }
}
