using System.Text.Json.Nodes;

namespace Alloy.Tokenizers.Encoding;

/// <summary>
/// Reads the JSON objects that configure a tokenizer component, with one-line errors naming the file and component.
/// </summary>
internal readonly record struct Settings(JsonObject Node, string Where)
{
    /// <summary>The component in <paramref name="node"/> (an object with a "type"), or null for JSON null.</summary>
    public static Settings? Of(JsonNode? node, string role, string where) =>
        node switch
        {
            null => null,
            JsonObject o => new Settings(o, where),
            _ => throw new AlloyException(
                $"{where}: the {role} must be an object with a \"type\", not {StrictJson.Shorten(node)}"
            ),
        };

    public string Type(string role) =>
        String("type") ?? throw new AlloyException($"{Where}: a {role} has no \"type\": {StrictJson.Shorten(Node)}");

    public JsonNode? this[string key] => Node[key];

    public string? String(string key) => Node.StringField(key, Where);

    public string RequiredString(string key, string role) =>
        String(key)
        ?? throw new AlloyException($"{Where}: the {role} needs a string \"{key}\": {StrictJson.Shorten(Node)}");

    public bool Bool(string key, bool fallback) => Node.BoolField(key, Where) ?? fallback;

    public int Int(string key, int fallback) => Node.IntField(key, Where) ?? fallback;

    /// <summary>The single character of a string setting (Metaspace's replacement, Strip's content).</summary>
    public string Character(string key, string role)
    {
        var text = RequiredString(key, role);
        if (text.Length == 0 || text.Length > 2 || (text.Length == 2 && !char.IsSurrogatePair(text[0], text[1])))
            throw new AlloyException($"{Where}: the {role}'s \"{key}\" must be one character, not '{text}'");
        return text;
    }

    public IEnumerable<Settings> List(string key, string role)
    {
        if (Node[key] is not JsonArray list)
            throw new AlloyException($"{Where}: the {role} needs a list \"{key}\": {StrictJson.Shorten(Node)}");
        foreach (var item in list)
            yield return Of(item, role, Where)
                ?? throw new AlloyException($"{Where}: the {role}'s \"{key}\" holds a null");
    }

    /// <summary>A {"String": "…"} or {"Regex": "…"} pattern (Split, Replace) as a regex.</summary>
    public UnicodeRegex Pattern(string role)
    {
        var pattern = Node.ObjectField("pattern", Where);
        if (pattern?.StringField("String", $"{Where}: pattern") is { } text)
            return UnicodeRegex.Literal(text, Where);
        if (pattern?.StringField("Regex", $"{Where}: pattern") is { } expression)
            return new UnicodeRegex(expression, Where);
        throw new AlloyException(
            $"{Where}: the {role} needs a \"pattern\" of {{\"String\": …}} or {{\"Regex\": …}}: "
                + $"{StrictJson.Shorten(Node)}"
        );
    }

    public AlloyException Unsupported(string role, string type, string supported) =>
        new($"{Where}: {role} '{type}' is not supported for encoding (supported: {supported})");
}
