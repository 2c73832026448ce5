using System.Globalization;
using System.Text;

namespace Alloy.Tokenizers.Encoding;

/// <summary>
/// A tokenizer.json <c>normalizer</c>: rewrites the text between added tokens before it is pre-tokenized.
/// </summary>
internal abstract class Normalizer
{
    public abstract string Normalize(string text);

    public const string Supported =
        "Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, StripAccents, ByteLevel";

    public static Normalizer? Create(Settings? settings)
    {
        if (settings is not { } s)
            return null;
        var type = s.Type("normalizer");
        return type switch
        {
            "Sequence" => new SequenceNormalizer(s.List("normalizers", "normalizer").Select(n => Create(n)!).ToArray()),
            "NFC" => new FormNormalizer(NormalizationForm.FormC),
            "NFD" => new FormNormalizer(NormalizationForm.FormD),
            "NFKC" => new FormNormalizer(NormalizationForm.FormKC),
            "NFKD" => new FormNormalizer(NormalizationForm.FormKD),
            "Lowercase" => new LowercaseNormalizer(),
            "Prepend" => new PrependNormalizer(s.RequiredString("prepend", "Prepend normalizer")),
            "Replace" => new ReplaceNormalizer(
                s.Pattern("Replace normalizer"),
                s.RequiredString("content", "Replace normalizer")
            ),
            "Strip" => new StripNormalizer(s.Bool("strip_left", true), s.Bool("strip_right", true)),
            "StripAccents" => new StripAccentsNormalizer(),
            "ByteLevel" => new ByteLevelNormalizer(),
            _ => throw s.Unsupported("normalizer", type, Supported),
        };
    }
}

internal sealed class SequenceNormalizer(Normalizer[] steps) : Normalizer
{
    public override string Normalize(string text)
    {
        foreach (var step in steps)
            text = step.Normalize(text);
        return text;
    }
}

internal sealed class FormNormalizer(NormalizationForm form) : Normalizer
{
    public override string Normalize(string text) => UnicodeNormalization.Normalize(text, form);
}

/// <summary>
/// Lowercases each code point with its full mapping (İ becomes i + combining dot), as Rust's <c>char::to_lowercase</c>.
/// </summary>
internal sealed class LowercaseNormalizer : Normalizer
{
    public override string Normalize(string text)
    {
        var result = new StringBuilder(text.Length);
        foreach (var rune in text.EnumerateRunes())
        {
            if (rune.Value == 0x130)
                result.Append("i\u0307");
            else
                result.Append(Rune.ToLowerInvariant(rune).ToString());
        }
        return result.ToString();
    }
}

internal sealed class PrependNormalizer(string prefix) : Normalizer
{
    public override string Normalize(string text) => text.Length == 0 ? text : prefix + text;
}

internal sealed class ReplaceNormalizer(UnicodeRegex pattern, string content) : Normalizer
{
    public override string Normalize(string text) => pattern.Replace(text, content);
}

internal sealed class StripNormalizer(bool left, bool right) : Normalizer
{
    public override string Normalize(string text) => Unicode.Strip(text, left, right);
}

/// <summary>Removes combining marks (meant to follow NFD, which splits accents from their letters).</summary>
internal sealed class StripAccentsNormalizer : Normalizer
{
    public override string Normalize(string text)
    {
        var result = new StringBuilder(text.Length);
        foreach (var rune in text.EnumerateRunes())
            if (
                Rune.GetUnicodeCategory(rune)
                is not (
                    UnicodeCategory.NonSpacingMark
                    or UnicodeCategory.SpacingCombiningMark
                    or UnicodeCategory.EnclosingMark
                )
            )
                result.Append(rune.ToString());
        return result.ToString();
    }
}

/// <summary>Maps every UTF-8 byte of the text to its byte-level character.</summary>
internal sealed class ByteLevelNormalizer : Normalizer
{
    public override string Normalize(string text)
    {
        var mapped = new char[Unicode.MaxByteLevelLength(text.Length)];
        return new string(mapped, 0, Unicode.ToByteLevel(text, mapped));
    }
}
