using System.Text.Json.Nodes;
using Alloy.Planning;
using Alloy.Recipes;

namespace Alloy.Tokenizers;

/// <summary>
/// What a merge does with tokenizers, decided at plan time: the output vocabulary (<c>tokenizer_source</c> /
/// <c>tokenizer</c>; null copies the donor's tokenizer) and the chat template to store (null keeps the tokenizer's
/// own).
/// </summary>
public sealed record TokenizerPlan(MergedVocabulary? Vocabulary, string? ChatTemplate)
{
    /// <summary>Reads the tokenizers the recipe's settings need and decides; null when it sets neither.</summary>
    public static TokenizerPlan? Create(MergeRecipe recipe, ModelSet models, Diagnostics diagnostics)
    {
        if (recipe.Tokenizer is null && recipe.ChatTemplate is null)
            return null;
        bool needsVocabularies = recipe.Tokenizer is not null;
        var tokenizers =
            needsVocabularies || recipe.ChatTemplate == "auto"
                ? models
                    .All.Select(m =>
                        (
                            m.Reference,
                            Tokenizer: ModelTokenizer.Load(m.Name, FolderOf(m), m.Checkpoint.Config, needsVocabularies)
                        )
                    )
                    .ToList()
                : [];

        MergedVocabulary? vocabulary = null;
        if (recipe.Tokenizer is { } settings)
        {
            var external =
                settings.Model is { } source && models.TokenizerOnly.TryGetValue(source, out var folder)
                    ? ModelTokenizer.Load(source.ToString(), folder, ReadConfig(folder), readVocabulary: true)
                    : null;
            var baseModel = recipe.BaseModel ?? recipe.ReferencedModels()[0];
            vocabulary = MergedVocabulary.Build(settings, baseModel, tokenizers, external, diagnostics);
        }
        var template = ChatTemplates.Resolve(recipe.ChatTemplate, tokenizers.Select(t => t.Tokenizer), diagnostics);
        return new TokenizerPlan(vocabulary, template);
    }

    private static string FolderOf(InputModel model) =>
        model.Checkpoint.Folder ?? Path.GetDirectoryName(model.Checkpoint.Path)!;

    private static JsonObject? ReadConfig(string folder) =>
        StrictJson.ReadObjectFileIfPresent(Path.Combine(folder, "config.json"));
}
