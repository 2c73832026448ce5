using System.Buffers;
using System.Text;

namespace Alloy.Tokenizers.Encoding;

/// <summary>
/// Finds added tokens in text as Hugging Face tokenizers does: leftmost-longest matches, not overlapping, scanned left
/// to right; a <c>single_word</c> token only where no word character touches it, and <c>lstrip</c>/<c>rstrip</c> tokens
/// take the whitespace beside them with them.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly List<Dictionary<char, int>> _children =
    [
        [],
    ]; // trie nodes; 0 is the root
    private readonly List<int> _terminal = [-1]; // entry that ends at a node, or -1
    private readonly List<(int Id, AddedToken Token)> _entries = [];
    private readonly SearchValues<char> _firstChars;

    private AddedTokenMatcher(IEnumerable<(string Pattern, int Id, AddedToken Token)> entries)
    {
        foreach (var (pattern, id, token) in entries)
        {
            int node = 0;
            foreach (char c in pattern)
            {
                if (!_children[node].TryGetValue(c, out int child))
                {
                    child = _children.Count;
                    _children[node][c] = child;
                    _children.Add([]);
                    _terminal.Add(-1);
                }
                node = child;
            }
            _terminal[node] = _entries.Count;
            _entries.Add((id, token));
        }
        _firstChars = SearchValues.Create(_children[0].Keys.ToArray());
    }

    /// <summary>A matcher for the non-empty patterns, or null when there are none.</summary>
    public static AddedTokenMatcher? Create(IEnumerable<(string Pattern, int Id, AddedToken Token)> entries)
    {
        var list = entries.Where(e => e.Pattern.Length > 0).ToList();
        return list.Count == 0 ? null : new AddedTokenMatcher(list);
    }

    /// <summary>
    /// Cuts <paramref name="text"/> into parts that cover it in order: added tokens (their id) and the text between
    /// them (id -1). Empty parts are left out.
    /// </summary>
    public void Split(string text, List<(int Start, int End, int Id)> parts)
    {
        int covered = 0;
        for (int at = 0; at < text.Length; )
        {
            int next = text.AsSpan(at).IndexOfAny(_firstChars);
            if (next < 0)
                break;
            at += next;
            var (end, entry) = Longest(text, at);
            if (entry < 0)
            {
                at++;
                continue;
            }
            int start = at,
                stop = end;
            at = end;
            var (id, token) = _entries[entry];
            if (token.SingleWord && !(IsWordBoundaryBefore(text, start) && IsWordBoundaryAfter(text, stop)))
                continue;
            if (token.LStrip)
                start = Math.Max(WhitespaceStartBefore(text, start), covered);
            if (token.RStrip)
                stop = WhitespaceEndAfter(text, stop);
            if (covered < start)
                parts.Add((covered, start, -1));
            parts.Add((start, stop, id));
            covered = stop;
        }
        if (covered < text.Length)
            parts.Add((covered, text.Length, -1));
    }

    private (int End, int Entry) Longest(string text, int start)
    {
        int node = 0,
            end = -1,
            entry = -1;
        for (int i = start; i < text.Length && _children[node].TryGetValue(text[i], out node); i++)
            if (_terminal[node] >= 0)
                (end, entry) = (i + 1, _terminal[node]);
        return (end, entry);
    }

    private static bool IsWordBoundaryBefore(string text, int at) =>
        at == 0
        || Rune.DecodeLastFromUtf16(text.AsSpan(0, at), out var r, out _) != OperationStatus.Done
        || !Unicode.IsWordCharacter(r);

    private static bool IsWordBoundaryAfter(string text, int at) =>
        at == text.Length
        || Rune.DecodeFromUtf16(text.AsSpan(at), out var r, out _) != OperationStatus.Done
        || !Unicode.IsWordCharacter(r);

    private static int WhitespaceStartBefore(string text, int at)
    {
        while (
            at > 0
            && Rune.DecodeLastFromUtf16(text.AsSpan(0, at), out var r, out int n) == OperationStatus.Done
            && Unicode.IsWhiteSpace(r)
        )
            at -= n;
        return at;
    }

    private static int WhitespaceEndAfter(string text, int at)
    {
        while (
            at < text.Length
            && Rune.DecodeFromUtf16(text.AsSpan(at), out var r, out int n) == OperationStatus.Done
            && Unicode.IsWhiteSpace(r)
        )
            at += n;
        return at;
    }
}
