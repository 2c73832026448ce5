using System.Globalization;
using System.Numerics;
using System.Text.RegularExpressions;

namespace Alloy.Recipes.Yaml;

/// <summary>What a scalar means after YAML 1.1 resolution (as PyYAML's safe_load sees it).</summary>
internal enum ScalarKind
{
    Null,
    Bool,
    Int,
    Float,
    String,
    Timestamp,
}

/// <summary>
/// PyYAML's implicit resolvers and safe constructors for plain scalars. mergekit reads configs with
/// <c>yaml.safe_load</c>, so a plain <c>yes</c> is a boolean, <c>1e-5</c> is a string and <c>0x10</c> is 16;
/// YamlDotNet follows YAML 1.2 and would disagree, so we resolve scalars here ourselves.
/// </summary>
internal static partial class Yaml11
{
    // The patterns are PyYAML's resolver table (lib/yaml/resolver.py); PyYAML only tries a pattern when the
    // scalar's first character is in that pattern's start set, which the patterns below already imply.
    [GeneratedRegex("^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$")]
    private static partial Regex BoolPattern();

    [GeneratedRegex(
        @"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    )]
    private static partial Regex FloatPattern();

    [GeneratedRegex(
        "^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+"
            + "|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$"
    )]
    private static partial Regex IntPattern();

    [GeneratedRegex("^(?:~|null|Null|NULL|)$")]
    private static partial Regex NullPattern();

    [GeneratedRegex(
        @"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$"
    )]
    private static partial Regex TimestampPattern();

    // What pydantic (lax mode) accepts when it turns a string into a float: Rust's f64 grammar, surrounding
    // whitespace allowed. This is how a YAML 1.1 string such as "1e-5" still becomes a number in mergekit.
    [GeneratedRegex(@"^\s*[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|(?i:inf|infinity|nan))\s*$")]
    private static partial Regex NumericStringPattern();

    /// <summary>The type PyYAML gives a plain (unquoted, untagged) scalar.</summary>
    public static ScalarKind ResolvePlain(string text)
    {
        // Order matters only where start sets overlap: PyYAML tries float before int for digits.
        if (text.Length == 0 || NullPattern().IsMatch(text))
            return ScalarKind.Null;
        if (BoolPattern().IsMatch(text))
            return ScalarKind.Bool;
        if (FloatPattern().IsMatch(text))
            return ScalarKind.Float;
        if (IntPattern().IsMatch(text))
            return ScalarKind.Int;
        if (TimestampPattern().IsMatch(text))
            return ScalarKind.Timestamp;
        return ScalarKind.String;
    }

    public static bool IsBoolText(string text) => BoolPattern().IsMatch(text);

    public static bool ConstructBool(string text) => text.ToLowerInvariant() is "yes" or "true" or "on";

    /// <summary>
    /// PyYAML's int constructor: underscores dropped; 0b binary, 0x hex, leading 0 octal, a:b sexagesimal.
    /// </summary>
    public static bool TryConstructInt(string text, out BigInteger value)
    {
        value = BigInteger.Zero;
        var s = text.Replace("_", "", StringComparison.Ordinal);
        var sign = 1;
        if (s.StartsWith('-'))
        {
            sign = -1;
            s = s[1..];
        }
        else if (s.StartsWith('+'))
            s = s[1..];
        if (s.Length == 0)
            return false;
        BigInteger result;
        if (s == "0")
            result = BigInteger.Zero;
        else if (s.StartsWith("0b", StringComparison.Ordinal))
        {
            if (!TryDigits(s[2..], 2, out result))
                return false;
        }
        else if (s.StartsWith("0x", StringComparison.Ordinal))
        {
            if (!TryDigits(s[2..], 16, out result))
                return false;
        }
        else if (s[0] == '0')
        {
            if (!TryDigits(s, 8, out result))
                return false;
        }
        else if (s.Contains(':'))
        {
            result = BigInteger.Zero;
            foreach (var part in s.Split(':'))
            {
                if (!TryDigits(part, 10, out var digit))
                    return false;
                result = result * 60 + digit;
            }
        }
        else if (!TryDigits(s, 10, out result))
            return false;
        value = sign * result;
        return true;
    }

    private static bool TryDigits(string digits, int radix, out BigInteger value)
    {
        value = BigInteger.Zero;
        if (digits.Length == 0)
            return false;
        foreach (var c in digits)
        {
            var d =
                c is >= '0' and <= '9' ? c - '0'
                : c is >= 'a' and <= 'f' ? c - 'a' + 10
                : c is >= 'A' and <= 'F' ? c - 'A' + 10
                : 99;
            if (d >= radix)
                return false;
            value = value * radix + d;
        }
        return true;
    }

    /// <summary>
    /// PyYAML's float constructor: underscores dropped, .inf/.nan, a:b:c.d sexagesimal, else decimal.
    /// </summary>
    public static bool TryConstructFloat(string text, out double value)
    {
        value = 0;
        var s = text.Replace("_", "", StringComparison.Ordinal).ToLowerInvariant();
        var sign = 1.0;
        if (s.StartsWith('-'))
        {
            sign = -1;
            s = s[1..];
        }
        else if (s.StartsWith('+'))
            s = s[1..];
        if (s == ".inf")
        {
            value = sign * double.PositiveInfinity;
            return true;
        }
        if (s == ".nan")
        {
            value = double.NaN;
            return true;
        }
        if (s.Contains(':'))
        {
            var result = 0.0;
            foreach (var part in s.Split(':'))
            {
                if (!double.TryParse(part, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var d))
                    return false;
                result = result * 60 + d;
            }
            value = sign * result;
            return true;
        }
        if (
            !double.TryParse(
                s,
                NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent,
                CultureInfo.InvariantCulture,
                out var v
            )
        )
            return false;
        value = sign * v;
        return true;
    }

    /// <summary>pydantic's lax str → float coercion (e.g. "1e-5", " 0.5 ", "inf").</summary>
    public static bool TryParseNumericString(string text, out double value)
    {
        value = 0;
        if (!NumericStringPattern().IsMatch(text))
            return false;
        var s = text.Trim().ToLowerInvariant();
        var sign = 1.0;
        if (s.StartsWith('-'))
        {
            sign = -1;
            s = s[1..];
        }
        else if (s.StartsWith('+'))
            s = s[1..];
        if (s is "inf" or "infinity")
        {
            value = sign * double.PositiveInfinity;
            return true;
        }
        if (s == "nan")
        {
            value = double.NaN;
            return true;
        }
        if (
            !double.TryParse(
                s,
                NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent,
                CultureInfo.InvariantCulture,
                out var v
            )
        )
            return false;
        value = sign * v;
        return true;
    }
}
