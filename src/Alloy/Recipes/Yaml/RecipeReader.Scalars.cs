using System.Globalization;
using System.Numerics;

namespace Alloy.Recipes.Yaml;

/// <summary>Scalars with pydantic's lax coercions: strings, whole numbers, booleans, numbers.</summary>
internal sealed partial class RecipeReader
{
    private static string QuoteHint(YScalar s) =>
        s.Plain && s.Kind != ScalarKind.String
            ? $"; YAML 1.1 reads {s.Text} as {KindName(s.Kind)}, so put it in quotes: \"{s.Text}\""
            : "";

    private static string KindName(ScalarKind kind) =>
        kind switch
        {
            ScalarKind.Bool => "a boolean",
            ScalarKind.Int or ScalarKind.Float => "a number",
            ScalarKind.Timestamp => "a date",
            ScalarKind.Null => "null",
            _ => "a string",
        };

    /// <summary>A string field (pydantic's str does not accept numbers or booleans).</summary>
    private static string StringValue(YNode node, string what)
    {
        if (node is YScalar { Kind: ScalarKind.String } s)
            return s.Text;
        if (node is YScalar other)
            throw Error(node, $"{what} must be a string, not {other.Describe()}{QuoteHint(other)}");
        throw Error(node, $"{what} must be a string, not {Describe(node)}");
    }

    /// <summary>An int field with pydantic's lax coercions (integral floats and digit strings; not booleans).</summary>
    private static BigInteger Integer(YNode node, string what)
    {
        if (node is YScalar s)
        {
            switch (s.Kind)
            {
                case ScalarKind.Int:
                    return s.IntValue;
                case ScalarKind.Float when double.IsFinite(s.FloatValue) && Math.Floor(s.FloatValue) == s.FloatValue:
                    return new BigInteger(s.FloatValue);
                case ScalarKind.String
                    when BigInteger.TryParse(
                        s.Text.Trim(),
                        NumberStyles.AllowLeadingSign,
                        CultureInfo.InvariantCulture,
                        out var v
                    ):
                    return v;
            }
        }
        throw Error(node, $"{what} must be a whole number, not {Describe(node)}");
    }

    /// <summary>A bool field with pydantic's lax coercions (yes/no/true/false/on/off/1/0, in any case).</summary>
    private static bool Boolean(YNode node, string what)
    {
        if (node is YScalar s)
        {
            switch (s.Kind)
            {
                case ScalarKind.Bool:
                    return s.BoolValue;
                case ScalarKind.Int when s.IntValue == 0 || s.IntValue == 1:
                    return s.IntValue == 1;
                case ScalarKind.Float when s.FloatValue is 0 or 1:
                    return s.FloatValue == 1;
                case ScalarKind.String:
                    switch (s.Text.Trim().ToLowerInvariant())
                    {
                        case "1" or "y" or "yes" or "on" or "t" or "true":
                            return true;
                        case "0" or "n" or "no" or "off" or "f" or "false":
                            return false;
                    }
                    break;
            }
        }
        throw Error(node, $"{what} must be true or false, not {Describe(node)}");
    }

    /// <summary>
    /// A float with pydantic's lax coercions: numbers, booleans (1.0/0.0) and numeric strings ("1e-5").
    /// </summary>
    private static bool TryNumber(YNode node, out double value)
    {
        value = 0;
        if (node is not YScalar s)
            return false;
        switch (s.Kind)
        {
            case ScalarKind.Int or ScalarKind.Float:
                value = s.Number;
                return true;
            case ScalarKind.Bool:
                value = s.BoolValue ? 1.0 : 0.0;
                return true;
            case ScalarKind.String:
                return Yaml11.TryParseNumericString(s.Text, out value);
            default:
                return false;
        }
    }
}
