using Alloy.Checkpoints;
using Alloy.Recipes.Yaml;

namespace Alloy.Recipes;

/// <summary>
/// Reads mergekit YAML configs into <see cref="MergeRecipe"/>s with mergekit's meaning for every key (PyYAML's YAML 1.1
/// scalars, pydantic's coercions), but unlike mergekit it warns about unknown keys and rejects values that would only
/// fail (or silently misbehave) later. Every error is an <see cref="AlloyException"/> whose one-line message starts
/// with <c>file:line:column:</c>.
/// </summary>
public static class RecipeParser
{
    /// <summary>
    /// The working/output dtype names accepted in <c>dtype:</c> and <c>out_dtype:</c> (optionally
    /// <c>torch.</c>-prefixed).
    /// </summary>
    public static IReadOnlyList<string> AcceptedDTypeNames { get; } = ["bfloat16", "float16", "float32"];

    /// <summary>Parses a single-document config (as mergekit-yaml does).</summary>
    public static MergeRecipe Parse(string text, string sourceName, Diagnostics diagnostics)
    {
        var docs = YamlLoader.Load(text, sourceName, diagnostics);
        if (docs.Count > 1)
        {
            throw new AlloyException(
                $"{docs[1].Location}: expected a single YAML document but found another one after '---' "
                    + "(multi-document configs are for mergekit-multi style runs)"
            );
        }
        if (docs.Count == 0 || docs[0].Root is null)
            throw new AlloyException(
                $"{new SourceLocation(sourceName, 1, 1)}: the config is empty (it needs at least 'merge_method' and "
                    + $"'models')"
            );
        return new RecipeReader(sourceName, diagnostics).Recipe(docs[0].Root!, text) with
        {
            Folder = FolderOf(sourceName),
        };
    }

    /// <summary>
    /// The folder of the config file (where mergekit also looks for relative model paths), when it is a file.
    /// </summary>
    private static string? FolderOf(string sourceName) =>
        File.Exists(sourceName) ? Path.GetDirectoryName(Path.GetFullPath(sourceName)) : null;

    /// <summary>
    /// Reads and parses a config file; a missing or unreadable file raises <see cref="AlloyException"/>.
    /// </summary>
    public static MergeRecipe ParseFile(string path, Diagnostics diagnostics) =>
        Parse(ReadConfig(path), path, diagnostics);

    /// <summary><see cref="ParseDocuments"/> on a file.</summary>
    public static IReadOnlyList<MergeRecipe> ParseDocumentsFile(string path, Diagnostics diagnostics) =>
        ParseDocuments(ReadConfig(path), path, diagnostics);

    /// <summary>
    /// A recipe is read from a regular file or from a pipe the user gave (<c>alloy merge &lt;(make-recipe)</c>); never
    /// from a device.
    /// </summary>
    /// <summary>Reads a config file's text (a regular file or a pipe) for the other readers (alloy moe).</summary>
    internal static string ReadConfigFile(string path) => ReadConfig(path);

    /// <summary>Parses a mergekit-moe config (single document).</summary>
    internal static Moe.MoeRecipe ParseMoe(string text, string sourceName, Diagnostics diagnostics)
    {
        var docs = YamlLoader.Load(text, sourceName, diagnostics);
        if (docs.Count > 1)
            throw new AlloyException($"{docs[1].Location}: expected a single YAML document but found another one");
        if (docs.Count == 0 || docs[0].Root is null)
            throw new AlloyException(
                $"{new SourceLocation(sourceName, 1, 1)}: the config is empty (it needs 'base_model' and 'experts')"
            );
        return new RecipeReader(sourceName, diagnostics).MoeRecipe(docs[0].Root!, text) with
        {
            Folder = FolderOf(sourceName),
        };
    }

    private static string ReadConfig(string path) =>
        InputFile.KindOf(path) == InputFile.FileKind.NamedPipe ? File.ReadAllText(path) : InputFile.ReadAllText(path);

    /// <summary>
    /// Parses a multi-document config (documents separated by <c>---</c>), as mergekit-multi does: each document is a
    /// config plus an optional <c>name</c>; names must be unique and at most one document may be unnamed (the final
    /// merge). Each recipe's <see cref="MergeRecipe.Text"/> is its own document's text. Empty documents are skipped.
    /// </summary>
    public static IReadOnlyList<MergeRecipe> ParseDocuments(string text, string sourceName, Diagnostics diagnostics)
    {
        var docs = YamlLoader.Load(text, sourceName, diagnostics);
        var reader = new RecipeReader(sourceName, diagnostics);
        var recipes = new List<MergeRecipe>();
        var names = new Dictionary<string, SourceLocation>(StringComparer.Ordinal);
        SourceLocation? unnamed = null;
        foreach (var doc in docs)
        {
            if (doc.Root is null)
            {
                // mergekit-multi crashes on an empty document; a stray '---' is harmless, so we only warn.
                if (docs.Count > 1)
                    diagnostics.Warn($"{doc.Location}: empty YAML document (ignored)");
                continue;
            }
            var recipe = reader.Recipe(doc.Root, doc.Text) with { Folder = FolderOf(sourceName) };
            var at = doc.Root.Location;
            if (recipe.Name is null)
            {
                if (unnamed is { } first)
                {
                    throw new AlloyException(
                        $"{at}: more than one document has no 'name' (first at line {first.Line}); "
                            + "only the final merge may be unnamed"
                    );
                }
                unnamed = at;
            }
            else if (!names.TryAdd(recipe.Name, at))
            {
                throw new AlloyException(
                    $"{at}: duplicate merge name '{recipe.Name}' (first at line {names[recipe.Name].Line})"
                );
            }
            recipes.Add(recipe);
        }
        if (recipes.Count == 0)
            throw new AlloyException(
                $"{new SourceLocation(sourceName, 1, 1)}: the config is empty (no YAML documents)"
            );
        return recipes;
    }
}
