using System.Globalization;
using System.Numerics;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;

namespace Alloy.Recipes.Yaml;

/// <summary>A YAML node with its position; aliases share the anchored node object.</summary>
internal abstract class YNode(SourceLocation location)
{
    public SourceLocation Location { get; } = location;
}

internal sealed class YScalar(SourceLocation location, string text, ScalarKind kind, bool plain) : YNode(location)
{
    /// <summary>The scalar's text as written (after YAML unescaping/folding).</summary>
    public string Text { get; } = text;
    public ScalarKind Kind { get; } = kind;

    /// <summary>True for unquoted scalars (used to tell the user to add quotes).</summary>
    public bool Plain { get; } = plain;
    public bool BoolValue { get; init; }
    public BigInteger IntValue { get; init; }
    public double FloatValue { get; init; }

    /// <summary>Numeric value of an int or float scalar.</summary>
    public double Number => Kind == ScalarKind.Int ? (double)IntValue : FloatValue;

    public bool IsNull => Kind == ScalarKind.Null;

    /// <summary>How the scalar reads in an error message.</summary>
    public string Describe() =>
        Kind switch
        {
            ScalarKind.Null => "null",
            ScalarKind.Bool => $"the boolean '{Text}'",
            ScalarKind.Int or ScalarKind.Float => $"the number '{Text}'",
            ScalarKind.Timestamp => $"the date '{Text}'",
            _ => $"the string '{Text}'",
        };
}

internal sealed class YSequence(SourceLocation location, IReadOnlyList<YNode> items) : YNode(location)
{
    public IReadOnlyList<YNode> Items { get; } = items;
}

internal sealed record YEntry(YScalar Key, YNode Value);

internal sealed class YMapping(SourceLocation location, IReadOnlyList<YEntry> entries) : YNode(location)
{
    /// <summary>Entries after merge keys and duplicates were resolved, in Python dict order.</summary>
    public IReadOnlyList<YEntry> Entries { get; } = entries;
}

/// <summary>One YAML document of a stream: its root (null for an empty document) and its own text.</summary>
internal sealed record YDocument(YNode? Root, string Text, SourceLocation Location);

/// <summary>
/// Builds <see cref="YNode"/> trees from YamlDotNet's parser events. We do not use YamlStream because it rejects
/// duplicate keys, which PyYAML accepts (the last one wins), and because we need PyYAML's merge-key (<c>&lt;&lt;</c>)
/// and YAML 1.1 scalar rules.
/// </summary>
internal sealed class YamlLoader
{
    private const string TagPrefix = "tag:yaml.org,2002:";
    private readonly string _text;
    private readonly string _source;
    private readonly Diagnostics _diagnostics;
    private readonly Dictionary<string, YNode> _anchors = new(StringComparer.Ordinal);
    private readonly HashSet<string> _open = new(StringComparer.Ordinal);
    private IParser _parser = null!;
    private Scanner _scanner = null!;
    private int _depth;

    /// <summary>
    /// How deeply lists and mappings may nest. Reading is recursive, so without a limit a file of nested '[' would
    /// overflow the stack; PyYAML itself gives up near 500 levels, and recipes nest fewer than 10.
    /// </summary>
    public const int MaxDepth = 64;

    private YamlLoader(string text, string source, Diagnostics diagnostics)
    {
        _text = text;
        _source = source;
        _diagnostics = diagnostics;
    }

    public static IReadOnlyList<YDocument> Load(string text, string source, Diagnostics diagnostics) =>
        new YamlLoader(text, source, diagnostics).LoadAll();

    private SourceLocation Loc(Mark mark) => new(_source, (int)mark.Line, (int)mark.Column);

    private AlloyException Error(Mark mark, string message) => new($"{Loc(mark)}: {message}");

    private IReadOnlyList<YDocument> LoadAll()
    {
        _scanner = new Scanner(new StringReader(_text));
        _parser = new Parser(_scanner);
        var raw = new List<(YNode? Root, int Start, int ContentStart, int? End, Mark Mark)>();
        try
        {
            Expect<StreamStart>();
            while (!Accept<StreamEnd>())
            {
                var start = Expect<DocumentStart>();
                _anchors.Clear(); // anchors do not cross documents
                var root = ReadNode();
                var end = Expect<DocumentEnd>();
                raw.Add(
                    (
                        root,
                        (int)start.Start.Index,
                        ContentStart(start),
                        end.IsImplicit ? null : (int)end.Start.Index,
                        start.Start
                    )
                );
            }
        }
        catch (YamlException ex)
        {
            var what = ex.Message.ReplaceLineEndings(" ").Trim();
            // YamlDotNet places a tab in the indentation at the start of the enclosing mapping; point at the tab.
            if (what.Contains("tab", StringComparison.OrdinalIgnoreCase) && FirstIndentingTab() is { } tab)
                throw new AlloyException(
                    $"{tab}: YAML syntax error: a tab in the indentation (YAML indents with spaces only)",
                    ex
                );
            throw new AlloyException($"{Loc(ex.Start)}: YAML syntax error: {what}", ex);
        }

        var docs = new List<YDocument>(raw.Count);
        for (var i = 0; i < raw.Count; i++)
        {
            // A document's text runs to the next document's '---' (or an explicit '...'), so comments stay with it.
            var from = i == 0 ? 0 : raw[i].ContentStart;
            var to = raw[i].End ?? (i + 1 < raw.Count ? raw[i + 1].Start : _text.Length);
            if (i == 0 && raw[0].ContentStart > raw[0].Start)
                from = raw[0].ContentStart; // skip a leading '---'
            var docText = _text[from..Math.Max(from, to)];
            var root =
                raw[i].Root is YScalar { IsNull: true, Plain: true } s && s.Text.Length == 0 ? null : raw[i].Root;
            docs.Add(new YDocument(root, docText, Loc(raw[i].Mark)));
        }
        return docs;
    }

    /// <summary>Where the first tab in a line's leading whitespace is, or null.</summary>
    private SourceLocation? FirstIndentingTab()
    {
        var lines = _text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            int column = 0;
            while (column < lines[i].Length && lines[i][column] is ' ' or '\t')
            {
                if (lines[i][column] == '\t')
                    return new SourceLocation(_source, i + 1, column + 1);
                column++;
            }
        }
        return null;
    }

    // For an explicit document, its text starts after the '---' line (when nothing else is on that line).
    private int ContentStart(DocumentStart start)
    {
        if (start.IsImplicit)
            return (int)start.Start.Index;
        var i = (int)start.End.Index;
        var j = i;
        while (j < _text.Length && _text[j] is ' ' or '\t')
            j++;
        if (j < _text.Length && _text[j] == '\r')
            j++;
        if (j < _text.Length && _text[j] == '\n')
            return j + 1;
        return j >= _text.Length ? j : i;
    }

    private T Expect<T>()
        where T : ParsingEvent
    {
        var ev = Next();
        return ev as T ?? throw new YamlException(ev.Start, ev.End, $"unexpected {ev.GetType().Name}");
    }

    private bool Accept<T>()
        where T : ParsingEvent => Peek() is T;

    private ParsingEvent? _pending;

    private ParsingEvent? Peek()
    {
        if (_pending is null && MoveNext())
            _pending = _parser.Current;
        return _pending;
    }

    private ParsingEvent Next()
    {
        if (_pending is not null)
        {
            var p = _pending;
            _pending = null;
            return p;
        }
        if (!MoveNext())
            throw new YamlException("unexpected end of the YAML stream");
        return _parser.Current!;
    }

    private bool MoveNext()
    {
        try
        {
            return _parser.MoveNext();
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            // YamlDotNet throws this, with no position, for a plain value inside '[...]' or '{...}' on a line indented
            // no more than the block holding the list, which YAML 1.2 forbids (PyYAML reads on and would join
            // `[1` and `0]` on the next line into the string '1 0'). A tag that is not a URI (`!<+>`) is an
            // ArgumentException.
            var what =
                e.TargetSite?.Name == "ScanPlainScalar"
                    ? "a line inside '[...]' or '{...}' must be indented more than the line where the bracket opens"
                    : e.Message;
            throw new AlloyException($"{Loc(_scanner.CurrentPosition)}: YAML syntax error: {what}", e);
        }
    }

    private AlloyException TooDeep(Mark mark) =>
        Error(mark, $"lists and mappings are nested more than {MaxDepth} levels deep");

    private YNode ReadNode()
    {
        var ev = Next();
        switch (ev)
        {
            case AnchorAlias alias:
            {
                var name = alias.Value.Value;
                if (_anchors.TryGetValue(name, out var target))
                    return target;
                if (_open.Contains(name))
                    throw Error(
                        alias.Start,
                        $"alias '*{name}' refers to the node that contains it (recursive aliases are not supported)"
                    );
                throw Error(alias.Start, $"unknown alias '*{name}' (no '&{name}' anchor before it)");
            }
            case Scalar scalar:
            {
                var node = MakeScalar(scalar);
                Register(scalar.Anchor, node);
                return node;
            }
            case SequenceStart seq:
            {
                CheckCollectionTag(seq, "seq");
                if (++_depth > MaxDepth)
                    throw TooDeep(seq.Start);
                var anchor = Open(seq.Anchor);
                var items = new List<YNode>();
                while (Peek() is not SequenceEnd)
                    items.Add(ReadNode());
                Next();
                _depth--;
                var node = new YSequence(Loc(seq.Start), items);
                Close(anchor, node);
                return node;
            }
            case MappingStart map:
            {
                CheckCollectionTag(map, "map");
                if (++_depth > MaxDepth)
                    throw TooDeep(map.Start);
                var anchor = Open(map.Anchor);
                var node = ReadMapping(map);
                _depth--;
                Close(anchor, node);
                return node;
            }
            default:
                throw new YamlException(ev.Start, ev.End, $"unexpected {ev.GetType().Name}");
        }
    }

    private string? Open(AnchorName anchor)
    {
        if (anchor.IsEmpty)
            return null;
        _open.Add(anchor.Value);
        _anchors.Remove(anchor.Value); // a redefined anchor refers to the new node from here on (as in PyYAML)
        return anchor.Value;
    }

    private void Close(string? anchor, YNode node)
    {
        if (anchor is null)
            return;
        _open.Remove(anchor);
        _anchors[anchor] = node;
    }

    private void Register(AnchorName anchor, YNode node)
    {
        if (!anchor.IsEmpty)
            _anchors[anchor.Value] = node;
    }

    private void CheckCollectionTag(NodeEvent ev, string kind)
    {
        if (ev.Tag.IsEmpty || ev.Tag.IsNonSpecific || ev.Tag.Value == TagPrefix + kind)
            return;
        throw Error(ev.Start, $"unsupported YAML tag '{ev.Tag.Value}'");
    }

    private YScalar MakeScalar(Scalar s)
    {
        var loc = Loc(s.Start);
        var plain = s.Style == ScalarStyle.Plain;
        string? tag = s.Tag.IsEmpty ? null : s.Tag.Value;
        ScalarKind kind;
        if (tag is null)
            kind = plain ? Yaml11.ResolvePlain(s.Value) : ScalarKind.String;
        else if (s.Tag.IsNonSpecific || tag == TagPrefix + "str")
            kind = ScalarKind.String;
        else
        {
            kind = tag[(tag.StartsWith(TagPrefix, StringComparison.Ordinal) ? TagPrefix.Length : 0)..] switch
            {
                "null" => ScalarKind.Null,
                "bool" => ScalarKind.Bool,
                "int" => ScalarKind.Int,
                "float" => ScalarKind.Float,
                "timestamp" => ScalarKind.Timestamp,
                _ => throw Error(s.Start, $"unsupported YAML tag '{tag}'"),
            };
        }

        switch (kind)
        {
            case ScalarKind.Bool:
                if (!Yaml11.IsBoolText(s.Value))
                    throw Error(s.Start, $"'{s.Value}' is not a YAML boolean");
                return new YScalar(loc, s.Value, kind, plain) { BoolValue = Yaml11.ConstructBool(s.Value) };
            case ScalarKind.Int:
                if (!Yaml11.TryConstructInt(s.Value, out var i))
                    throw Error(s.Start, $"'{s.Value}' is not a valid YAML integer");
                return new YScalar(loc, s.Value, kind, plain) { IntValue = i };
            case ScalarKind.Float:
                if (!Yaml11.TryConstructFloat(s.Value, out var f))
                {
                    // An explicit !!float also accepts integer text such as 0x10, as PyYAML's float() of the int does.
                    if (!Yaml11.TryConstructInt(s.Value, out var asInt))
                        throw Error(s.Start, $"'{s.Value}' is not a valid YAML float");
                    f = (double)asInt;
                }
                return new YScalar(loc, s.Value, kind, plain) { FloatValue = f };
            default:
                return new YScalar(loc, s.Value, kind, plain);
        }
    }

    private YMapping ReadMapping(MappingStart start)
    {
        // PyYAML builds a dict: a repeated key keeps its first position and takes the last value.
        // Merge keys ("<<") contribute entries first; the mapping's own keys override them silently.
        var own = new List<YEntry>();
        var ownIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        var merged = new List<YEntry>();
        var mergedIndex = new Dictionary<string, int>(StringComparer.Ordinal);

        while (Peek() is not MappingEnd)
        {
            var keyNode = ReadNode();
            var value = ReadNode();
            if (keyNode is not YScalar key)
                throw new AlloyException(
                    $"{keyNode.Location}: a mapping key must be a plain value, not a list or mapping"
                );

            if (key.Plain && key.Text == "<<" && key.Kind == ScalarKind.String)
            {
                var sources = value switch
                {
                    YMapping m => [m],
                    YSequence seq when seq.Items.All(x => x is YMapping) => seq.Items.Cast<YMapping>().ToList(),
                    _ => throw new AlloyException(
                        $"{value.Location}: a merge key '<<' needs a mapping or a list of mappings"
                    ),
                };
                foreach (var source in sources)
                {
                    foreach (var entry in source.Entries)
                    {
                        // Within '<<: [*a, *b]' the earlier mapping wins.
                        if (mergedIndex.TryAdd(KeyIdentity(entry.Key), merged.Count))
                            merged.Add(entry);
                    }
                }
                continue;
            }

            var id = KeyIdentity(key);
            if (ownIndex.TryGetValue(id, out var at))
            {
                _diagnostics.Warn(
                    $"{key.Location}: duplicate key '{key.Text}' (first at line {own[at].Key.Location.Line}); "
                        + "the last value wins, as in mergekit"
                );
                own[at] = new YEntry(own[at].Key, value);
            }
            else
            {
                ownIndex[id] = own.Count;
                own.Add(new YEntry(key, value));
            }
        }
        Next(); // MappingEnd

        if (merged.Count == 0)
            return new YMapping(Loc(start.Start), own);
        var result = new List<YEntry>(merged);
        foreach (var entry in own)
        {
            if (mergedIndex.TryGetValue(KeyIdentity(entry.Key), out var at))
                result[at] = entry;
            else
                result.Add(entry);
        }
        return new YMapping(Loc(start.Start), result);
    }

    // Python dict key equality: True == 1 == 1.0, so keys compare by resolved value, strings by text.
    private static string KeyIdentity(YScalar key) =>
        key.Kind switch
        {
            ScalarKind.String => "s:" + key.Text,
            ScalarKind.Null => "null",
            ScalarKind.Bool => "n:" + (key.BoolValue ? "1" : "0"),
            ScalarKind.Int or ScalarKind.Float => "n:" + key.Number.ToString("R", CultureInfo.InvariantCulture),
            _ => "t:" + key.Text,
        };
}
