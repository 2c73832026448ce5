using System.Globalization;
using System.Text;

namespace Alloy.Tokenizers.Encoding;

/// <summary>
/// The character classes and conversions the tokenizer shares, defined as Hugging Face tokenizers (Rust) defines them.
/// </summary>
internal static class Unicode
{
    /// <summary>
    /// Rust's <c>char::is_whitespace</c> (the White_Space property), which .NET's definition matches.
    /// </summary>
    public static bool IsWhiteSpace(Rune rune) => Rune.IsWhiteSpace(rune);

    /// <summary>
    /// Rust regex's <c>\w</c>: Alphabetic, marks, decimal digits, connector punctuation and the joiners (used to decide
    /// whether a single-word added token stands alone). Letters and letter numbers stand for Alphabetic.
    /// </summary>
    public static bool IsWordCharacter(Rune rune) =>
        rune.Value is 0x200C or 0x200D
        || Rune.GetUnicodeCategory(rune) switch
        {
            UnicodeCategory.UppercaseLetter
            or UnicodeCategory.LowercaseLetter
            or UnicodeCategory.TitlecaseLetter
            or UnicodeCategory.ModifierLetter
            or UnicodeCategory.OtherLetter
            or UnicodeCategory.LetterNumber
            or UnicodeCategory.NonSpacingMark
            or UnicodeCategory.SpacingCombiningMark
            or UnicodeCategory.EnclosingMark
            or UnicodeCategory.DecimalDigitNumber
            or UnicodeCategory.ConnectorPunctuation => true,
            _ => false,
        };

    /// <summary>Rust's <c>char::is_numeric</c>: any number category.</summary>
    public static bool IsNumeric(Rune rune) =>
        Rune.GetUnicodeCategory(rune)
            is UnicodeCategory.DecimalDigitNumber
                or UnicodeCategory.LetterNumber
                or UnicodeCategory.OtherNumber;

    /// <summary>The text with leading and/or trailing whitespace removed.</summary>
    public static string Strip(string text, bool left, bool right)
    {
        int start = 0,
            end = text.Length;
        if (left)
            while (
                start < end
                && Rune.DecodeFromUtf16(text.AsSpan(start), out var r, out int n) == System.Buffers.OperationStatus.Done
                && IsWhiteSpace(r)
            )
                start += n;
        if (right)
            while (
                end > start
                && Rune.DecodeLastFromUtf16(text.AsSpan(start, end - start), out var r, out int n)
                    == System.Buffers.OperationStatus.Done
                && IsWhiteSpace(r)
            )
                end -= n;
        return start == 0 && end == text.Length ? text : text[start..end];
    }

    /// <summary>
    /// Replaces unpaired surrogates with U+FFFD: Hugging Face tokenizers receive UTF-8, which cannot hold them (Node
    /// and Python replace them the same way on the way in).
    /// </summary>
    public static string Sanitize(string text)
    {
        int bad = -1;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (!char.IsSurrogate(c))
                continue;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
                continue;
            }
            bad = i;
            break;
        }
        if (bad < 0)
            return text;
        var result = new StringBuilder(text.Length);
        foreach (var rune in text.EnumerateRunes())
            result.Append(rune.ToString()); // EnumerateRunes yields U+FFFD for them
        return result.ToString();
    }

    /// <summary>Room <see cref="ToByteLevel"/> needs: a UTF-16 unit is at most three UTF-8 bytes.</summary>
    public static int MaxByteLevelLength(int utf16Length) => 3 * utf16Length;

    /// <summary>Writes the byte-level characters of <paramref name="text"/>'s UTF-8 bytes; returns how many.</summary>
    public static int ToByteLevel(ReadOnlySpan<char> text, Span<char> destination)
    {
        Span<byte> bytes = stackalloc byte[256];
        int written = 0;
        while (!text.IsEmpty)
        {
            // Convert in slices so the byte buffer stays on the stack; a slice never ends inside a surrogate pair.
            int take = Math.Min(text.Length, 84);
            if (take < text.Length && char.IsHighSurrogate(text[take - 1]))
                take--;
            System.Text.Unicode.Utf8.FromUtf16(text[..take], bytes, out _, out int count);
            for (int i = 0; i < count; i++)
                destination[written++] = ByteLevelAlphabet.ToChar(bytes[i]);
            text = text[take..];
        }
        return written;
    }
}
