using System.Text.Json;
using System.Text.RegularExpressions;

namespace Alloy.Checkpoints;

/// <summary>Pieces of the one-line error messages this namespace raises.</summary>
internal static partial class Messages
{
    public static string OneLine(string text) => text.ReplaceLineEndings(" ").Trim();

    /// <summary>
    /// A JSON syntax error as "what (line L, column C)", 1-based; System.Text.Json reports 0-based positions in a
    /// "LineNumber: 0 | BytePositionInLine: 7." suffix that reads as an internal detail.
    /// </summary>
    public static string JsonProblem(JsonException e)
    {
        string what = PositionSuffix().Replace(OneLine(e.Message), "");
        return e.LineNumber is { } line && e.BytePositionInLine is { } column
            ? $"{what} (line {line + 1}, column {column + 1})"
            : what;
    }

    public static string Describe(JsonValueKind kind) =>
        kind switch
        {
            JsonValueKind.Object => "object",
            JsonValueKind.Array => "array",
            JsonValueKind.String => "string",
            JsonValueKind.Number => "number",
            JsonValueKind.True or JsonValueKind.False => "boolean",
            JsonValueKind.Null => "null",
            _ => "value",
        };

    [GeneratedRegex(@"\s*LineNumber: \d+ \| BytePositionInLine: \d+\.?$")]
    private static partial Regex PositionSuffix();
}
