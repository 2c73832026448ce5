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
                $"{where}: the {role} must be an object with a \"type\", not {AddedToken.Shorten(node)}"
            ),
        };

    public string Type(string role) =>
        String("type") ?? throw new AlloyException($"{Where}: a {role} has no \"type\": {AddedToken.Shorten(Node)}");

    public JsonNode? this[string key] => Node[key];

    public string? String(string key) => Node[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    public string RequiredString(string key, string role) =>
        String(key)
        ?? throw new AlloyException($"{Where}: the {role} needs a string \"{key}\": {AddedToken.Shorten(Node)}");

    public bool Bool(string key, bool fallback) => Node[key] is JsonValue v && v.TryGetValue(out bool b) ? b : fallback;

    public int Int(string key, int fallback) => Node[key] is JsonValue v && v.TryGetValue(out int n) ? n : fallback;

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
            throw new AlloyException($"{Where}: the {role} needs a list \"{key}\": {AddedToken.Shorten(Node)}");
        foreach (var item in list)
            yield return Of(item, role, Where)
                ?? throw new AlloyException($"{Where}: the {role}'s \"{key}\" holds a null");
    }

    /// <summary>A {"String": "…"} or {"Regex": "…"} pattern (Split, Replace) as a regex.</summary>
    public UnicodeRegex Pattern(string role)
    {
        var pattern = Node["pattern"] as JsonObject;
        if (pattern?["String"] is JsonValue literal && literal.TryGetValue(out string? text))
            return UnicodeRegex.Literal(text, Where);
        if (pattern?["Regex"] is JsonValue regex && regex.TryGetValue(out string? expression))
            return new UnicodeRegex(expression, Where);
        throw new AlloyException(
            $"{Where}: the {role} needs a \"pattern\" of {{\"String\": …}} or {{\"Regex\": …}}: "
                + $"{AddedToken.Shorten(Node)}"
        );
    }

    public AlloyException Unsupported(string role, string type, string supported) =>
        new($"{Where}: {role} '{type}' is not supported for encoding (supported: {supported})");
}
