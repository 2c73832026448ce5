using System.Buffers;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Alloy.Tokenizers.Encoding;

/// <summary>
/// A regular expression that sees code points, as Hugging Face tokenizers' Oniguruma does. .NET's Regex works on UTF-16
/// units, so a letter outside the BMP (𝐀, CJK Extension B) would be two surrogates that match neither \p{L} nor
/// [^\s\p{L}\p{N}] as a whole. Text with surrogate pairs is therefore matched in a stand-in copy where each pair is one
/// BMP character of the same general category; match positions are mapped back to the original text.
/// </summary>
public sealed class UnicodeRegex
{
    private readonly Regex _regex;

    public UnicodeRegex(string pattern, string where)
    {
        try
        {
            _regex = new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
        }
        catch (ArgumentException e)
        {
            throw new AlloyException(
                $"{where}: the regular expression '{pattern}' does not compile in .NET ({e.Message})"
            );
        }
        Pattern = pattern;
    }

    public static UnicodeRegex Literal(string text, string where) => new(Regex.Escape(text), where);

    public string Pattern { get; }

    /// <summary>
    /// Appends the (start, length) of each match in <paramref name="text"/>, in UTF-16 positions of the text.
    /// </summary>
    public void Matches(ReadOnlySpan<char> text, ref PooledList<(int Start, int Length)> matches)
    {
        if (text.IndexOfAnyInRange('\uD800', '\uDFFF') < 0)
        {
            foreach (var m in _regex.EnumerateMatches(text))
                matches.Add((m.Index, m.Length));
            return;
        }
        // One stand-in char per code point; origin[i] is where stand-in i starts in the text.
        var standIn = ArrayPool<char>.Shared.Rent(text.Length);
        var origin = ArrayPool<int>.Shared.Rent(text.Length + 1);
        try
        {
            int n = 0;
            for (int i = 0; i < text.Length; n++)
            {
                origin[n] = i;
                if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                {
                    standIn[n] = StandIn(CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1])));
                    i += 2;
                }
                else
                    standIn[n] = text[i++];
            }
            origin[n] = text.Length;
            foreach (var m in _regex.EnumerateMatches(standIn.AsSpan(0, n)))
                matches.Add((origin[m.Index], origin[m.Index + m.Length] - origin[m.Index]));
        }
        finally
        {
            ArrayPool<char>.Shared.Return(standIn);
            ArrayPool<int>.Shared.Return(origin);
        }
    }

    /// <summary>Replaces every match with <paramref name="replacement"/>.</summary>
    public string Replace(string text, string replacement)
    {
        var matches = new PooledList<(int Start, int Length)>();
        try
        {
            Matches(text, ref matches);
            if (matches.Count == 0)
                return text;
            var result = new System.Text.StringBuilder(text.Length + matches.Count * replacement.Length);
            int last = 0;
            for (int i = 0; i < matches.Count; i++)
            {
                var (start, length) = matches[i];
                result.Append(text, last, start - last).Append(replacement);
                last = start + length;
            }
            return result.Append(text, last, text.Length - last).ToString();
        }
        finally
        {
            matches.Dispose();
        }
    }

    // A BMP character of each general category; none of them is ASCII, so patterns' literals rarely meet them.
    private static readonly char[] StandIns = BuildStandIns();

    internal static char StandIn(UnicodeCategory category) => StandIns[(int)category];

    private static char[] BuildStandIns()
    {
        var table = new char[30];
        void Set(UnicodeCategory category, char c)
        {
            if (CharUnicodeInfo.GetUnicodeCategory(c) != category)
                throw new InvalidOperationException($"U+{(int)c:X4} is not {category}");
            table[(int)category] = c;
        }
        Set(UnicodeCategory.UppercaseLetter, '\uFF21');
        Set(UnicodeCategory.LowercaseLetter, '\uFF41');
        Set(UnicodeCategory.TitlecaseLetter, '\u01C5');
        Set(UnicodeCategory.ModifierLetter, '\u02B0');
        Set(UnicodeCategory.OtherLetter, '\u4E00');
        Set(UnicodeCategory.NonSpacingMark, '\u0300');
        Set(UnicodeCategory.SpacingCombiningMark, '\u0903');
        Set(UnicodeCategory.EnclosingMark, '\u20DD');
        Set(UnicodeCategory.DecimalDigitNumber, '\uFF10');
        Set(UnicodeCategory.LetterNumber, '\u2160');
        Set(UnicodeCategory.OtherNumber, '\u00B2');
        Set(UnicodeCategory.SpaceSeparator, '\u3000');
        Set(UnicodeCategory.LineSeparator, '\u2028');
        Set(UnicodeCategory.ParagraphSeparator, '\u2029');
        Set(UnicodeCategory.Control, '\u0080');
        Set(UnicodeCategory.Format, '\u2060');
        Set(UnicodeCategory.Surrogate, '\uD800');
        Set(UnicodeCategory.PrivateUse, '\uE000');
        Set(UnicodeCategory.ConnectorPunctuation, '\u203F');
        Set(UnicodeCategory.DashPunctuation, '\u2010');
        Set(UnicodeCategory.OpenPunctuation, '\u2045');
        Set(UnicodeCategory.ClosePunctuation, '\u2046');
        Set(UnicodeCategory.InitialQuotePunctuation, '\u2039');
        Set(UnicodeCategory.FinalQuotePunctuation, '\u203A');
        Set(UnicodeCategory.OtherPunctuation, '\u2030');
        Set(UnicodeCategory.MathSymbol, '\u2211');
        Set(UnicodeCategory.CurrencySymbol, '\u20AC');
        Set(UnicodeCategory.ModifierSymbol, '\u02C2');
        Set(UnicodeCategory.OtherSymbol, '\u00A6');
        Set(UnicodeCategory.OtherNotAssigned, '\u0378');
        return table;
    }
}

/// <summary>
/// A growable list in pooled memory, for per-piece scratch lists that must not allocate; dispose it to return the
/// memory.
/// </summary>
public struct PooledList<T> : IDisposable
{
    private T[]? _items;

    public int Count { get; private set; }

    public readonly ref T this[int index] => ref _items![index];

    public readonly ReadOnlySpan<T> Span => _items.AsSpan(0, Count);

    public void Add(T item)
    {
        if (_items is null || Count == _items.Length)
        {
            var larger = ArrayPool<T>.Shared.Rent(Math.Max(16, 2 * Count));
            if (_items is not null)
            {
                _items.AsSpan(0, Count).CopyTo(larger);
                ArrayPool<T>.Shared.Return(_items);
            }
            _items = larger;
        }
        _items[Count++] = item;
    }

    public void Dispose()
    {
        if (_items is not null)
            ArrayPool<T>.Shared.Return(_items);
        _items = null;
        Count = 0;
    }
}
