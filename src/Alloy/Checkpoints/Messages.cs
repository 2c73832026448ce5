using System.Text.Json;

namespace Alloy.Checkpoints;

/// <summary>Pieces of the one-line error messages this namespace raises.</summary>
internal static class Messages
{
    public static string OneLine(string text) => text.ReplaceLineEndings(" ").Trim();

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
}
