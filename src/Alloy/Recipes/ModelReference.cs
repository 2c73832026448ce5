using System.Diagnostics.CodeAnalysis;

namespace Alloy.Recipes;

/// <summary>A LoRA adapter applied to a model before merging.</summary>
public sealed record LoraReference(string Path, string? Revision = null)
{
    public override string ToString() => Revision is null ? Path : $"{Path}@{Revision}";
}

/// <summary>
/// A model as a config names it: a local folder or Hugging Face repo id, an optional revision, an optional LoRA,
/// and an optional architecture override (dict form only).
/// </summary>
public sealed record ModelReference(
    string Path,
    string? Revision = null,
    LoraReference? Lora = null,
    string? OverrideArchitecture = null
)
{
    private const string Syntax = "write PATH[@REVISION][+LORA_PATH[@REVISION]]";

    /// <summary>Parses <c>path[@rev][+lora[@rev]]</c>; malformed text raises <see cref="AlloyException"/>.</summary>
    public static ModelReference Parse(string text) =>
        TryParse(text, out var result, out var error) ? result : throw new AlloyException(error);

    public static bool TryParse(string text, [NotNullWhen(true)] out ModelReference? result) =>
        TryParse(text, out result, out _);

    internal static bool TryParse(
        string text,
        [NotNullWhen(true)] out ModelReference? result,
        [NotNullWhen(false)] out string? error
    )
    {
        result = null;
        var parts = text.Split('+');
        if (parts.Length > 2)
        {
            error = $"invalid model reference '{text}': more than one '+' ({Syntax})";
            return false;
        }
        if (!TryParsePath(parts[0], text, out var path, out var revision, out error))
            return false;
        LoraReference? lora = null;
        if (parts.Length == 2)
        {
            if (!TryParsePath(parts[1], text, out var loraPath, out var loraRevision, out error))
                return false;
            lora = new LoraReference(loraPath, loraRevision);
        }
        result = new ModelReference(path, revision, lora);
        return true;
    }

    /// <summary>One <c>path[@revision]</c> part (mergekit's ModelPath string form).</summary>
    internal static bool TryParsePath(
        string part,
        string whole,
        [NotNullWhen(true)] out string? path,
        out string? revision,
        [NotNullWhen(false)] out string? error
    )
    {
        path = null;
        revision = null;
        var pieces = part.Split('@');
        if (pieces.Length > 2)
        {
            error = $"invalid model reference '{whole}': more than one '@' in '{part}' ({Syntax})";
            return false;
        }
        // mergekit accepts empty parts ("a@", "+b") and fails later or silently drops them; we say so now.
        if (pieces[0].Length == 0 || (pieces.Length == 2 && pieces[1].Length == 0))
        {
            error = $"invalid model reference '{whole}': empty path or revision ({Syntax})";
            return false;
        }
        path = pieces[0];
        revision = pieces.Length == 2 ? pieces[1] : null;
        error = null;
        return true;
    }

    /// <summary>
    /// The string form; round-trips <see cref="Parse"/>. <see cref="OverrideArchitecture"/> has no string form.
    /// </summary>
    public override string ToString()
    {
        var model = Revision is null ? Path : $"{Path}@{Revision}";
        return Lora is null ? model : $"{model}+{Lora}";
    }
}
