using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Alloy;

/// <summary>
/// The one way Alloy reads JSON that comes from outside (checkpoint headers, indexes, config.json, adapter and
/// tokenizer files, task and training files): valid UTF-8, at most <see cref="MaxDepth"/> levels of nesting, no
/// duplicate keys, no string or key that is not valid Unicode (a lone surrogate escape such as <c>"\ud800"</c>). Any
/// other JSON is refused with one line naming the file; what passes can be read and written back without
/// System.Text.Json throwing later. The typed field readers give one-line errors for values of the wrong type.
/// </summary>
internal static partial class StrictJson
{
    /// <summary>
    /// System.Text.Json's own default, so whatever is read can be written back with default options; real files
    /// nest fewer than 10 levels.
    /// </summary>
    public const int MaxDepth = 64;

    private static readonly JsonDocumentOptions Options = new() { MaxDepth = MaxDepth };

    /// <summary>Parses and checks JSON text; <paramref name="where"/> starts every error message (a path).</summary>
    public static JsonDocument Parse(ReadOnlyMemory<byte> utf8, string where)
    {
        CheckUtf8(utf8.Span, where);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(utf8, Options);
        }
        catch (JsonException e)
        {
            throw new AlloyException($"{where}: {Problem(e)}", e);
        }
        try
        {
            Check(document.RootElement, where, []);
            return document;
        }
        catch
        {
            document.Dispose();
            throw;
        }
    }

    /// <summary><see cref="Parse"/> into a mutable node tree (null for the JSON text <c>null</c>).</summary>
    public static JsonNode? ParseNode(ReadOnlyMemory<byte> utf8, string where)
    {
        using (Parse(utf8, where)) { }
        return JsonNode.Parse(utf8.Span, documentOptions: Options);
    }

    /// <summary>A mutable copy of part of a checked document.</summary>
    public static JsonNode? ToNode(JsonElement element) =>
        JsonNode.Parse(element.GetRawText(), documentOptions: Options);

    /// <summary>A file's bytes without a UTF-8 byte order mark; an unreadable file is a one-line error.</summary>
    public static byte[] ReadFile(string path)
    {
        var bytes = Checkpoints.InputFile.ReadAllBytes(path);
        // Editors on Windows write one; System.Text.Json does not skip it.
        return bytes.AsSpan().StartsWith(Encoding.UTF8.Preamble) ? bytes[3..] : bytes;
    }

    /// <summary>A JSON file parsed and checked.</summary>
    public static JsonDocument ParseFile(string path) => Parse(ReadFile(path), path);

    /// <summary>A JSON file that must hold an object.</summary>
    public static JsonObject ReadObjectFile(string path) =>
        ParseNode(ReadFile(path), path) switch
        {
            JsonObject o => o,
            var other => throw new AlloyException($"{path}: expected a JSON object, not {Shorten(other)}"),
        };

    /// <summary><see cref="ReadObjectFile"/>, or null when the file does not exist.</summary>
    public static JsonObject? ReadObjectFileIfPresent(string path) => File.Exists(path) ? ReadObjectFile(path) : null;

    private static void CheckUtf8(ReadOnlySpan<byte> utf8, string where)
    {
        if (System.Text.Unicode.Utf8.IsValid(utf8))
            return;
        int index = 0;
        try
        {
            new UTF8Encoding(false, throwOnInvalidBytes: true).GetCharCount(utf8);
        }
        catch (DecoderFallbackException e)
        {
            index = Math.Max(0, e.Index);
        }
        int line = utf8[..Math.Min(index, utf8.Length)].Count((byte)'\n') + 1;
        throw new AlloyException($"{where}: not valid UTF-8 (line {line}, byte {index})");
    }

    /// <summary>A reader error as "invalid JSON at line L, column C: what", 1-based.</summary>
    private static string Problem(JsonException e)
    {
        string what = PositionSuffix().Replace(e.Message.ReplaceLineEndings(" ").Trim(), "");
        if (what.StartsWith("The maximum configured depth", StringComparison.Ordinal))
            what = $"nested more than {MaxDepth} levels deep";
        return e.LineNumber is { } line && e.BytePositionInLine is { } column
            ? $"invalid JSON at line {line + 1}, column {column + 1}: {what}"
            : $"invalid JSON: {what}";
    }

    [GeneratedRegex(@"\s*(Path: \S+ \| )?LineNumber: \d+ \| BytePositionInLine: \d+\.?$")]
    private static partial Regex PositionSuffix();

    // Depth is bounded by MaxDepth, so the recursion is too. The path (keys and indexes) is kept as a stack and only
    // spelled out for a message.
    private static void Check(JsonElement element, string where, List<object> path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var keys = new HashSet<string>(StringComparer.Ordinal);
                foreach (var property in element.EnumerateObject())
                {
                    string key;
                    try
                    {
                        key = property.Name;
                    }
                    catch (InvalidOperationException)
                    {
                        throw new AlloyException($"{where}: a key in {Describe(path)} is not valid Unicode " + Lone);
                    }
                    if (!keys.Add(key))
                        throw new AlloyException(
                            $"{where}: key '{key}' appears twice"
                                + (path.Count == 0 ? "" : $" in {Describe(path)}")
                                + " (Alloy does not guess which one is meant)"
                        );
                    path.Add(key);
                    Check(property.Value, where, path);
                    path.RemoveAt(path.Count - 1);
                }
                break;
            case JsonValueKind.Array:
                int index = 0;
                foreach (var item in element.EnumerateArray())
                {
                    path.Add(index++);
                    Check(item, where, path);
                    path.RemoveAt(path.Count - 1);
                }
                break;
            case JsonValueKind.String:
                try
                {
                    element.GetString();
                }
                catch (InvalidOperationException)
                {
                    throw new AlloyException($"{where}: the string at {Describe(path)} is not valid Unicode " + Lone);
                }
                break;
        }
    }

    private const string Lone = "(a lone surrogate escape such as \\ud800)";

    /// <summary>A path such as 'added_tokens[3].content', or 'the top level'.</summary>
    private static string Describe(List<object> path)
    {
        if (path.Count == 0)
            return "the top level";
        var text = new StringBuilder();
        foreach (var part in path)
        {
            if (part is int i)
                text.Append('[').Append(i).Append(']');
            else
                text.Append(text.Length == 0 ? "" : ".").Append(part);
        }
        return $"'{text}'";
    }

    // ---- typed values: missing or null is null (the caller's default); another type is a one-line error ----------
    // `what` names the value in that error, e.g. "config.json: 'use_rslora'".

    public static string? AsString(JsonNode? node, string what) =>
        node switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out string? s) => s,
            _ => throw WrongType(what, "a string", node),
        };

    public static bool? AsBool(JsonNode? node, string what) =>
        node switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out bool b) => b,
            _ => throw WrongType(what, "true or false", node),
        };

    public static long? AsLong(JsonNode? node, string what) =>
        node switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out long n) => n,
            _ => throw WrongType(what, "a whole number", node),
        };

    public static int? AsInt(JsonNode? node, string what) =>
        node switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out int n) => n,
            _ => throw WrongType(what, "a whole number below 2^31", node),
        };

    public static double? AsNumber(JsonNode? node, string what) =>
        node switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out double d) && double.IsFinite(d) => d,
            _ => throw WrongType(what, "a finite number", node),
        };

    public static JsonObject? AsObject(JsonNode? node, string what) =>
        node switch
        {
            null => null,
            JsonObject o => o,
            _ => throw WrongType(what, "an object", node),
        };

    public static JsonArray? AsArray(JsonNode? node, string what) =>
        node switch
        {
            null => null,
            JsonArray a => a,
            _ => throw WrongType(what, "a list", node),
        };

    public static string? StringField(this JsonObject o, string key, string where) =>
        AsString(o[key], Name(where, key));

    public static bool? BoolField(this JsonObject o, string key, string where) => AsBool(o[key], Name(where, key));

    public static long? LongField(this JsonObject o, string key, string where) => AsLong(o[key], Name(where, key));

    public static int? IntField(this JsonObject o, string key, string where) => AsInt(o[key], Name(where, key));

    public static double? NumberField(this JsonObject o, string key, string where) =>
        AsNumber(o[key], Name(where, key));

    public static JsonObject? ObjectField(this JsonObject o, string key, string where) =>
        AsObject(o[key], Name(where, key));

    public static JsonArray? ArrayField(this JsonObject o, string key, string where) =>
        AsArray(o[key], Name(where, key));

    private static string Name(string where, string key) => $"{where}: '{key}'";

    private static AlloyException WrongType(string what, string expected, JsonNode? value) =>
        new($"{what} must be {expected}, not {Shorten(value)}");

    /// <summary>A JSON value for a message, cut at 60 characters.</summary>
    public static string Shorten(JsonNode? node) => Shorten(node?.ToJsonString() ?? "null");

    public static string Shorten(JsonElement element) => Shorten(element.GetRawText());

    private static string Shorten(string text) => text.Length > 60 ? text[..60] + "…" : text;
}
