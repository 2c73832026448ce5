using System.Globalization;
using System.Text;

namespace Alloy.Checkpoints;

/// <summary>Sizes as mergekit's --out-shard-size accepts them.</summary>
public static class ByteSize
{
    /// <summary>
    /// Parses a memory size: a positive number with an optional binary suffix K, M, G or T (×2^10 … ×2^40), optionally
    /// followed by "iB" or "B" ("1G", "1.5GiB", "512M", "1073741824"). Used for --memory-limit, where RAM is counted in
    /// binary units (unlike mergekit's decimal shard sizes above).
    /// </summary>
    public static long ParseMemory(string text, string option)
    {
        var trimmed = text.Trim();
        foreach (var unit in new[] { "iB", "B" })
            if (
                trimmed.Length > 1
                && trimmed.EndsWith(unit, StringComparison.OrdinalIgnoreCase)
                && char.IsLetter(trimmed[^(unit.Length + 1)])
            )
            {
                trimmed = trimmed[..^unit.Length];
                break;
            }
        int shift =
            trimmed.Length == 0
                ? 0
                : char.ToUpperInvariant(trimmed[^1]) switch
                {
                    'K' => 10,
                    'M' => 20,
                    'G' => 30,
                    'T' => 40,
                    _ => 0,
                };
        var number = shift == 0 ? trimmed : trimmed[..^1];
        if (
            !double.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double value)
            || value <= 0
            || value * Math.Pow(2, shift) >= long.MaxValue
        )
            throw new AlloyException(
                $"{option}: '{text}' is not a memory size; use a positive number with an optional K, M, G or T suffix "
                    + $"(e.g. 2G)"
            );
        return (long)(value * Math.Pow(2, shift));
    }

    /// <summary>
    /// Parses mergekit's size syntax (its <c>parse_kmb</c>): a plain run of decimal digits ("5000000"), or an integer
    /// followed by K, M or B in either case, meaning ×10^3, ×10^6, ×10^9 ("500M", "5b"). mergekit turns the part
    /// before the suffix into a number with Python's <c>int()</c>, so that part may also carry surrounding
    /// whitespace, a sign and digit-separating underscores ("-1K", " 2_000M"); a plain number may not. "0" is
    /// accepted; zero or negative sizes disable sharding. Anything else is an <see cref="AlloyException"/>.
    /// </summary>
    /// <summary>A byte count in binary units, as people read it: "512 B", "3.4 MiB", "1.8 GiB".</summary>
    public static string Format(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double value = bytes;
        int unit = 0;
        while (value >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }
        return unit == 0
            ? $"{bytes} B"
            : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{value:F1} {units[unit]}");
    }

    public static long Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        long? value = null;
        if (text.Length > 0 && IsAllDecimalDigits(text))
        {
            value = ParsePythonInt(text, text);
        }
        else if (text.Length > 0)
        {
            long multiplier = char.ToLowerInvariant(text[^1]) switch
            {
                'k' => 1_000L,
                'm' => 1_000_000L,
                'b' => 1_000_000_000L,
                _ => 0,
            };
            if (multiplier != 0 && ParsePythonInt(text[..^1], text) is { } number)
            {
                value =
                    number > long.MaxValue / multiplier || number < long.MinValue / multiplier
                        ? null
                        : number * multiplier;
                if (value is null)
                    throw new AlloyException($"--out-shard-size: '{text}' is too large");
            }
        }
        return value
            ?? throw new AlloyException(
                $"--out-shard-size: '{text}' is not a size; use an integer with an optional K, M or B suffix (e.g. 5B)"
            );
    }

    /// <summary>Python's str.isnumeric restricted to what int() then accepts: Unicode decimal digits only.</summary>
    private static bool IsAllDecimalDigits(string text)
    {
        foreach (var rune in text.EnumerateRunes())
        {
            if (Rune.GetUnicodeCategory(rune) != UnicodeCategory.DecimalDigitNumber)
                return false;
        }
        return true;
    }

    /// <summary>
    /// Python int(str): optional whitespace around (the same set as .NET's Rune.IsWhiteSpace), an optional sign,
    /// decimal digits (any script) with single underscores between digits. Null when the text is not such an integer;
    /// too large for a long is an error (Python's integers are unbounded, so the syntax is right but Alloy cannot hold
    /// the value).
    /// </summary>
    private static long? ParsePythonInt(string text, string whole)
    {
        var runes = text.EnumerateRunes().ToList();
        int start = 0,
            end = runes.Count;
        while (start < end && Rune.IsWhiteSpace(runes[start]))
            start++;
        while (end > start && Rune.IsWhiteSpace(runes[end - 1]))
            end--;
        bool negative = false;
        if (start < end && (runes[start].Value == '+' || runes[start].Value == '-'))
        {
            negative = runes[start].Value == '-';
            start++;
        }
        if (start == end)
            return null;

        Int128 magnitude = 0;
        bool previousWasDigit = false,
            overflow = false;
        for (int i = start; i < end; i++)
        {
            var rune = runes[i];
            if (rune.Value == '_')
            {
                if (!previousWasDigit || i == end - 1)
                    return null;
                previousWasDigit = false;
                continue;
            }
            if (Rune.GetUnicodeCategory(rune) != UnicodeCategory.DecimalDigitNumber)
                return null;
            if (!overflow)
                magnitude = magnitude * 10 + (int)Rune.GetNumericValue(rune);
            overflow |= magnitude > (Int128)long.MaxValue + 1;
            previousWasDigit = true;
        }
        Int128 signed = negative ? -magnitude : magnitude;
        if (overflow || signed < long.MinValue || signed > long.MaxValue)
        {
            throw new AlloyException($"--out-shard-size: '{whole}' is too large");
        }
        return (long)signed;
    }
}
