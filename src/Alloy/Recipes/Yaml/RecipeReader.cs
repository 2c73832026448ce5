using Alloy.Tensors;

namespace Alloy.Recipes.Yaml;

/// <summary>
/// Turns the YAML tree of one config file into <see cref="MergeRecipe"/>s with mergekit's meaning for every key
/// (PyYAML's YAML 1.1 scalars, pydantic's coercions), warning about keys mergekit would ignore; one instance per file.
/// The reading is split by concern: the top level and generic shapes here, scalars, models and slices, parameters,
/// and tokenizer settings in the files beside it.
/// </summary>
internal sealed partial class RecipeReader(string source, Diagnostics sink)
{
    private readonly HashSet<string> _warned = new(StringComparer.Ordinal);

    private void Warn(string message)
    {
        if (_warned.Add(message))
            sink.Warn(message);
    }

    private const string ParameterShape = "expected a number, a gradient list, or filter/value entries";

    internal static readonly string[] TopKeys =
    [
        "merge_method",
        "base_model",
        "models",
        "slices",
        "modules",
        "parameters",
        "dtype",
        "out_dtype",
        "tokenizer_source",
        "tokenizer",
        "chat_template",
        "name",
    ];

    private static AlloyException Error(YNode node, string message) => new($"{node.Location}: {message}");

    private static AlloyException Error(SourceLocation at, string message) => new($"{at}: {message}");

    // ---- generic shapes ----------------------------------------------------------------------------------

    /// <summary>
    /// A mapping's entries by key, warning about keys mergekit would silently ignore. Keys that YAML 1.1 reads as
    /// non-strings (e.g. <c>on:</c> → true) can never match a field, so they are unknown too.
    /// </summary>
    private Dictionary<string, YEntry> Fields(YNode node, string what, IReadOnlyList<string> known, bool hasParameters)
    {
        if (node is not YMapping map)
            throw Error(node, $"{what} must be a mapping of 'key: value' lines, not {Describe(node)}");
        var fields = new Dictionary<string, YEntry>(StringComparer.Ordinal);
        foreach (var entry in map.Entries)
        {
            if (entry.Key.Kind == ScalarKind.String && known.Contains(entry.Key.Text))
            {
                fields[entry.Key.Text] = entry;
                continue;
            }
            var hint =
                Suggestions.Closest(entry.Key.Text, known) is { } near ? $"; did you mean '{near}'?"
                : hasParameters ? "; merge parameters go under 'parameters:'"
                : "";
            var typed = entry.Key.Kind is ScalarKind.String ? "" : $" (YAML 1.1 reads it as {entry.Key.Describe()})";
            Warn($"{entry.Key.Location}: unknown key '{entry.Key.Text}'{typed} in {what} (ignored{hint})");
        }
        return fields;
    }

    private static YNode? Value(Dictionary<string, YEntry> fields, string key) =>
        fields.TryGetValue(key, out var e) && !(e.Value is YScalar { IsNull: true }) ? e.Value : null;

    private static string Describe(YNode node) =>
        node switch
        {
            YScalar s => s.Describe(),
            YSequence => "a list",
            _ => "a mapping",
        };

    // ---- the recipe ------------------------------------------------------------------------------------

    /// <summary>The recipe of one YAML document, checked by <see cref="RecipeRules"/>.</summary>
    public MergeRecipe Recipe(YNode root, string text)
    {
        if (root is not YMapping top)
            throw Error(
                root,
                $"a merge config must be a mapping with keys such as 'merge_method' and 'models', not {Describe(root)}"
            );
        var fields = Fields(top, "the config", TopKeys, hasParameters: true);

        var methodNode = Value(fields, "merge_method")
            ?? throw Error(root, "missing required key 'merge_method' (e.g. merge_method: linear)");
        var method = StringValue(methodNode, "'merge_method'");
        if (method.Length == 0)
            throw Error(methodNode, "'merge_method' is empty");

        var baseNode = Value(fields, "base_model");
        var baseModel = baseNode is null ? null : Model(baseNode, "'base_model'");

        var (models, slices) = Inputs(top, fields);

        var tokenizer = Tokenizer(fields);
        string? name = null;
        if (Value(fields, "name") is { } nameNode)
        {
            name = StringValue(nameNode, "'name'");
            if (name.Length == 0)
                throw Error(nameNode, "'name' is empty");
        }

        var recipe = new MergeRecipe
        {
            Method = method,
            MethodLocation = methodNode.Location,
            BaseModel = baseModel,
            BaseModelLocation = baseNode?.Location,
            Models = models,
            Slices = slices,
            Parameters = Parameters(Value(fields, "parameters")),
            DType = DTypeField(fields, "dtype"),
            OutDType = DTypeField(fields, "out_dtype"),
            Tokenizer = tokenizer,
            ChatTemplate = ChatTemplate(Value(fields, "chat_template")),
            Name = name,
            Text = text,
            SourceName = source,
        };
        RecipeRules.Check(recipe);
        return recipe;
    }

    /// <summary>Exactly one of models / slices / modules; like mergekit, an empty list counts as absent.</summary>
    private (IReadOnlyList<ModelEntry>?, IReadOnlyList<OutputSlice>?) Inputs(
        YMapping top,
        Dictionary<string, YEntry> fields
    )
    {
        // mergekit's per-module recipes (multi-module architectures such as vision-language models) are refused here,
        // the one place that knows of them.
        if (Value(fields, "modules") is not null)
            throw Error(
                fields["modules"].Key,
                "'modules:' (per-module recipes for multi-module architectures) is not supported; merge each module's "
                    + "weights with 'models:' or 'slices:'"
            );
        string[] keys = ["models", "slices"];
        var present = new List<YEntry>();
        foreach (var key in keys)
        {
            if (Value(fields, key) is not { } node)
                continue;
            var empty = node switch
            {
                YSequence s => s.Items.Count == 0,
                YMapping m => m.Entries.Count == 0,
                _ => false,
            };
            if (!empty)
                present.Add(fields[key]);
        }
        if (present.Count == 0)
        {
            throw Error(top, "exactly one of 'models' or 'slices' must be present (none is, or it is empty)");
        }
        if (present.Count > 1)
        {
            throw Error(
                present[1].Key,
                $"exactly one of 'models' or 'slices' must be present, but '{present[0].Key.Text}' (line "
                    + $"{present[0].Key.Location.Line}) and '{present[1].Key.Text}' both are"
            );
        }
        foreach (var key in keys)
        {
            if (fields.TryGetValue(key, out var e) && e != present[0] && Value(fields, key) is not null)
                Warn($"{e.Key.Location}: '{key}' is empty (ignored)");
        }

        var chosen = present[0];
        return chosen.Key.Text == "models"
            ? (ModelEntries(chosen.Value, "'models'"), null)
            : (null, Slices(chosen.Value, "'slices'"));
    }
}
