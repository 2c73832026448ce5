using System.Buffers;
using System.Text;

namespace Alloy.Tokenizers.Encoding;

/// <summary>
/// Where a pre-tokenizer hands its pieces: the next pre-tokenizer, or finally the model, which appends ids.
/// </summary>
internal interface IPieceSink
{
    /// <summary>
    /// <paramref name="atStart"/>: the piece starts at offset 0 of the encoded text (Metaspace's "first").
    /// </summary>
    void Accept(ReadOnlySpan<char> piece, bool atStart, List<int> ids);
}

/// <summary>
/// A tokenizer.json <c>pre_tokenizer</c>: splits a piece of normalized text (and may rewrite it) and hands every
/// non-empty result to the next stage. Stages run depth first, one piece at a time, which gives Hugging Face's result
/// (each of its stages treats each split on its own) without building lists of strings.
/// </summary>
internal abstract class PreTokenizer : IPieceSink
{
    /// <summary>The stage after this one (set once, when the chain is built).</summary>
    protected IPieceSink Next { get; private set; } = null!;

    public abstract void Accept(ReadOnlySpan<char> piece, bool atStart, List<int> ids);

    public const string Supported = "Sequence, ByteLevel, Metaspace, Split, Digits, WhitespaceSplit";

    /// <summary>
    /// The stages of a pre_tokenizer setting (a Sequence flattened), chained in front of <paramref name="model"/>.
    /// </summary>
    public static IPieceSink Chain(Settings? settings, IPieceSink model)
    {
        var stages = new List<PreTokenizer>();
        if (settings is { } s)
            Collect(s, stages);
        IPieceSink sink = model;
        for (int i = stages.Count - 1; i >= 0; i--)
        {
            stages[i].Next = sink;
            sink = stages[i];
        }
        return sink;
    }

    private static void Collect(Settings s, List<PreTokenizer> stages)
    {
        var type = s.Type("pre-tokenizer");
        switch (type)
        {
            case "Sequence":
                foreach (var item in s.List("pretokenizers", "pre-tokenizer"))
                    Collect(item, stages);
                break;
            case "ByteLevel":
                stages.Add(
                    new ByteLevelPreTokenizer(s.Bool("add_prefix_space", true), s.Bool("use_regex", true), s.Where)
                );
                break;
            case "Metaspace":
                stages.Add(MetaspacePreTokenizer.Create(s));
                break;
            case "Split":
                stages.Add(
                    new SplitPreTokenizer(s.Pattern("Split pre-tokenizer"), Splits.Behavior(s), s.Bool("invert", false))
                );
                break;
            case "Digits":
                stages.Add(
                    new CharacterSplitPreTokenizer(
                        Unicode.IsNumeric,
                        s.Bool("individual_digits", false) ? SplitBehavior.Isolated : SplitBehavior.Contiguous
                    )
                );
                break;
            case "WhitespaceSplit":
                stages.Add(new CharacterSplitPreTokenizer(Unicode.IsWhiteSpace, SplitBehavior.Removed));
                break;
            default:
                throw s.Unsupported("pre-tokenizer", type, Supported);
        }
    }
}

/// <summary>What a split does with the matches of its pattern (tokenizers' SplitDelimiterBehavior).</summary>
internal enum SplitBehavior
{
    Removed,
    Isolated,
    MergedWithPrevious,
    MergedWithNext,
    Contiguous,
}

internal static class Splits
{
    public static SplitBehavior Behavior(Settings s)
    {
        var name = s.RequiredString("behavior", "Split pre-tokenizer");
        return Enum.TryParse<SplitBehavior>(name, ignoreCase: false, out var behavior) && Enum.IsDefined(behavior)
            ? behavior
            : throw new AlloyException(
                $"{s.Where}: Split behavior '{name}' is unknown (Removed, Isolated, MergedWithPrevious, "
                    + $"MergedWithNext, Contiguous)"
            );
    }

    /// <summary>
    /// Cuts <paramref name="piece"/> at <paramref name="matches"/> (ordered, not overlapping) the way
    /// <paramref name="behavior"/> says and hands each non-empty part to <paramref name="next"/>.
    /// </summary>
    public static void Emit(
        ReadOnlySpan<char> piece,
        bool atStart,
        ReadOnlySpan<(int Start, int Length)> matches,
        SplitBehavior behavior,
        bool invert,
        IPieceSink next,
        List<int> ids
    )
    {
        // Every part of the piece in order, flagged as match or not (tokenizers' find_matches).
        var parts = new PooledList<(int Start, int End, bool Match)>();
        var kept = new PooledList<(int Start, int End)>();
        try
        {
            int previous = 0;
            foreach (var (start, length) in matches)
            {
                if (start > previous)
                    parts.Add((previous, start, invert));
                parts.Add((start, start + length, !invert));
                previous = start + length;
            }
            if (previous < piece.Length || parts.Count == 0)
                parts.Add((previous, piece.Length, invert));
            Fold(parts.Span, behavior, ref kept);
            foreach (var (start, end) in kept.Span)
                if (end > start)
                    next.Accept(piece[start..end], atStart && start == 0, ids);
        }
        finally
        {
            parts.Dispose();
            kept.Dispose();
        }
    }

    private static void Fold(
        ReadOnlySpan<(int Start, int End, bool Match)> parts,
        SplitBehavior behavior,
        ref PooledList<(int Start, int End)> kept
    )
    {
        bool previousMatch = false;
        switch (behavior)
        {
            case SplitBehavior.Isolated:
                foreach (var p in parts)
                    kept.Add((p.Start, p.End));
                break;
            case SplitBehavior.Removed:
                foreach (var p in parts)
                    if (!p.Match)
                        kept.Add((p.Start, p.End));
                break;
            case SplitBehavior.Contiguous:
                foreach (var p in parts)
                {
                    if (p.Match == previousMatch && kept.Count > 0)
                        kept[kept.Count - 1].End = p.End;
                    else
                        kept.Add((p.Start, p.End));
                    previousMatch = p.Match;
                }
                break;
            case SplitBehavior.MergedWithPrevious:
                foreach (var p in parts)
                {
                    if (p.Match && !previousMatch && kept.Count > 0)
                        kept[kept.Count - 1].End = p.End;
                    else
                        kept.Add((p.Start, p.End));
                    previousMatch = p.Match;
                }
                break;
            case SplitBehavior.MergedWithNext:
                // Folded from the end, then put back in order.
                for (int i = parts.Length - 1; i >= 0; i--)
                {
                    var p = parts[i];
                    if (p.Match && !previousMatch && kept.Count > 0)
                        kept[kept.Count - 1].Start = p.Start;
                    else
                        kept.Add((p.Start, p.End));
                    previousMatch = p.Match;
                }
                for (int i = 0, j = kept.Count - 1; i < j; i++, j--)
                    (kept[i], kept[j]) = (kept[j], kept[i]);
                break;
        }
    }

    /// <summary>Each code point for which <paramref name="isMatch"/> holds is one match.</summary>
    public static void CharacterMatches(
        ReadOnlySpan<char> text,
        Func<Rune, bool> isMatch,
        ref PooledList<(int Start, int Length)> matches
    )
    {
        for (int i = 0; i < text.Length; )
        {
            Rune.DecodeFromUtf16(text[i..], out var rune, out int length);
            if (isMatch(rune))
                matches.Add((i, length));
            i += length;
        }
    }
}

internal sealed class SplitPreTokenizer(UnicodeRegex pattern, SplitBehavior behavior, bool invert) : PreTokenizer
{
    public override void Accept(ReadOnlySpan<char> piece, bool atStart, List<int> ids)
    {
        var matches = new PooledList<(int Start, int Length)>();
        try
        {
            pattern.Matches(piece, ref matches);
            Splits.Emit(piece, atStart, matches.Span, behavior, invert, Next, ids);
        }
        finally
        {
            matches.Dispose();
        }
    }
}

internal sealed class CharacterSplitPreTokenizer(Func<Rune, bool> isMatch, SplitBehavior behavior) : PreTokenizer
{
    public override void Accept(ReadOnlySpan<char> piece, bool atStart, List<int> ids)
    {
        var matches = new PooledList<(int Start, int Length)>();
        try
        {
            Splits.CharacterMatches(piece, isMatch, ref matches);
            Splits.Emit(piece, atStart, matches.Span, behavior, invert: false, Next, ids);
        }
        finally
        {
            matches.Dispose();
        }
    }
}

/// <summary>
/// GPT-2's byte-level pre-tokenizer: optionally a leading space, optionally GPT-2's own split regex, then every UTF-8
/// byte of each part replaced by its byte-level character.
/// </summary>
internal sealed class ByteLevelPreTokenizer : PreTokenizer
{
    /// <summary>GPT-2's split pattern (contractions, letters, numbers, other symbols, whitespace).</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly bool _addPrefixSpace;
    private readonly UnicodeRegex? _regex;
    private readonly ToBytes _toBytes;

    public ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex, string where)
    {
        _addPrefixSpace = addPrefixSpace;
        _regex = useRegex ? new UnicodeRegex(Gpt2Pattern, where) : null;
        _toBytes = new ToBytes(this);
    }

    public override void Accept(ReadOnlySpan<char> piece, bool atStart, List<int> ids)
    {
        char[]? prefixed = null;
        if (_addPrefixSpace && piece[0] != ' ')
        {
            prefixed = ArrayPool<char>.Shared.Rent(piece.Length + 1);
            prefixed[0] = ' ';
            piece.CopyTo(prefixed.AsSpan(1));
            piece = prefixed.AsSpan(0, piece.Length + 1);
        }
        try
        {
            if (_regex is null)
                _toBytes.Accept(piece, atStart, ids);
            else
            {
                var matches = new PooledList<(int Start, int Length)>();
                try
                {
                    _regex.Matches(piece, ref matches);
                    Splits.Emit(piece, atStart, matches.Span, SplitBehavior.Isolated, invert: false, _toBytes, ids);
                }
                finally
                {
                    matches.Dispose();
                }
            }
        }
        finally
        {
            if (prefixed is not null)
                ArrayPool<char>.Shared.Return(prefixed);
        }
    }

    /// <summary>Maps a part to byte-level characters and passes it on.</summary>
    private sealed class ToBytes(ByteLevelPreTokenizer owner) : IPieceSink
    {
        public void Accept(ReadOnlySpan<char> part, bool atStart, List<int> ids)
        {
            var mapped = ArrayPool<char>.Shared.Rent(Unicode.MaxByteLevelLength(part.Length));
            try
            {
                owner.Next.Accept(mapped.AsSpan(0, Unicode.ToByteLevel(part, mapped)), atStart, ids);
            }
            finally
            {
                ArrayPool<char>.Shared.Return(mapped);
            }
        }
    }
}

/// <summary>How Metaspace puts its replacement character in front of a piece.</summary>
internal enum PrependScheme
{
    Always,
    First,
    Never,
}

/// <summary>
/// SentencePiece's whitespace handling: spaces become the replacement character (▁), which is also put in front of the
/// piece (always, only at the start of the text, or never), and the piece is optionally split before each ▁.
/// </summary>
internal sealed class MetaspacePreTokenizer(string replacement, PrependScheme scheme, bool split) : PreTokenizer
{
    public static MetaspacePreTokenizer Create(Settings s)
    {
        var replacement = s.Character("replacement", "Metaspace pre-tokenizer");
        return new MetaspacePreTokenizer(replacement, Scheme(s, "Metaspace pre-tokenizer"), s.Bool("split", true));
    }

    /// <summary>prepend_scheme, or the older add_prefix_space (false means never).</summary>
    public static PrependScheme Scheme(Settings s, string role)
    {
        var name = s.String("prepend_scheme") ?? "always";
        var scheme = name switch
        {
            "always" => PrependScheme.Always,
            "first" => PrependScheme.First,
            "never" => PrependScheme.Never,
            _ => throw new AlloyException(
                $"{s.Where}: the {role}'s prepend_scheme '{name}' is unknown (always, first, never)"
            ),
        };
        if (!s.Bool("add_prefix_space", true))
        {
            if (scheme != PrependScheme.Never)
                throw new AlloyException(
                    $"{s.Where}: the {role}'s add_prefix_space false contradicts prepend_scheme '{name}'"
                );
            scheme = PrependScheme.Never;
        }
        return scheme;
    }

    public override void Accept(ReadOnlySpan<char> piece, bool atStart, List<int> ids)
    {
        var buffer = ArrayPool<char>.Shared.Rent((piece.Length + 1) * replacement.Length);
        try
        {
            int length = 0;
            bool prepend = scheme switch
            {
                PrependScheme.Always => !StartsWithReplacement(piece),
                PrependScheme.First => atStart && !StartsWithReplacement(piece),
                _ => false,
            };
            if (prepend)
                Append(buffer, ref length, replacement);
            foreach (char c in piece)
            {
                if (c == ' ')
                    Append(buffer, ref length, replacement);
                else
                    buffer[length++] = c;
            }
            var text = buffer.AsSpan(0, length);
            if (!split)
            {
                Next.Accept(text, atStart, ids);
                return;
            }
            var matches = new PooledList<(int Start, int Length)>();
            try
            {
                for (int at = text.IndexOf(replacement); at >= 0; )
                {
                    matches.Add((at, replacement.Length));
                    int following = text[(at + replacement.Length)..].IndexOf(replacement);
                    at = following < 0 ? -1 : at + replacement.Length + following;
                }
                Splits.Emit(text, atStart, matches.Span, SplitBehavior.MergedWithNext, invert: false, Next, ids);
            }
            finally
            {
                matches.Dispose();
            }
        }
        finally
        {
            ArrayPool<char>.Shared.Return(buffer);
        }
    }

    // A space in the piece would become the replacement first, so it counts as starting with it.
    private bool StartsWithReplacement(ReadOnlySpan<char> piece) => piece.StartsWith(replacement) || piece[0] == ' ';

    private static void Append(char[] buffer, ref int length, string text)
    {
        text.CopyTo(buffer.AsSpan(length));
        length += text.Length;
    }
}
