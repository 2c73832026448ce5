using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Alloy.Methods;
using Alloy.Tensors;

namespace Alloy.Recipes.Yaml;

/// <summary>
/// Writes a recipe as mergekit YAML that <see cref="RecipeParser"/> (and mergekit) read back to the same recipe:
/// strings plain where YAML 1.1 reads them as strings and double-quoted otherwise, numbers in a form YAML 1.1 reads as
/// floats, booleans of the method's boolean parameters as true/false.
/// </summary>
public static class RecipeWriter
{
    public static string Write(MergeRecipe recipe)
    {
        var method = MethodRegistry.Find(recipe.Method);
        var w = new StringBuilder();
        w.Append("merge_method: ").Append(Scalar(recipe.Method)).Append('\n');
        if (recipe.BaseModel is { } baseModel)
            w.Append("base_model: ").Append(Model(baseModel)).Append('\n');
        if (recipe.Models is { } models)
        {
            w.Append("models:\n");
            foreach (var entry in models)
            {
                w.Append("  - model: ").Append(Model(entry.Model)).Append('\n');
                if (entry.Align is { } align)
                    w.Append("    align: ").Append(Scalar(align)).Append('\n');
                Parameters(w, entry.Parameters, "    ", method);
            }
        }
        if (recipe.Slices is { } slices)
        {
            w.Append("slices:\n");
            foreach (var slice in slices)
            {
                w.Append("  - sources:\n");
                foreach (var source in slice.Sources)
                {
                    w.Append("      - model: ").Append(Model(source.Model)).Append('\n');
                    w.Append("        layer_range: [")
                        .Append(source.Range.Start)
                        .Append(", ")
                        .Append(source.Range.End)
                        .Append("]\n");
                    Parameters(w, source.Parameters, "        ", method);
                }
                if (slice.BaseModel is { } sliceBase)
                    w.Append("    base_model: ").Append(Model(sliceBase)).Append('\n');
                Parameters(w, slice.Parameters, "    ", method);
            }
        }
        Parameters(w, recipe.Parameters, "", method);
        if (recipe.DType is { } dtype)
            w.Append("dtype: ").Append(dtype.TorchName()).Append('\n');
        if (recipe.OutDType is { } outDType)
            w.Append("out_dtype: ").Append(outDType.TorchName()).Append('\n');
        if (recipe.Tokenizer is { } tokenizer)
            Tokenizer(w, tokenizer);
        if (recipe.ChatTemplate is { } template)
            w.Append("chat_template: ").Append(Scalar(template)).Append('\n');
        if (recipe.Name is { } name)
            w.Append("name: ").Append(Scalar(name)).Append('\n');
        return w.ToString();
    }

    /// <summary>
    /// The recipe with every parameters block emptied: what stays fixed while its parameters are searched.
    /// </summary>
    public static MergeRecipe WithoutParameters(MergeRecipe recipe) =>
        recipe with
        {
            Parameters = ParameterSettings.Empty,
            Models = recipe.Models?.Select(m => m with { Parameters = ParameterSettings.Empty }).ToList(),
            Slices = recipe
                .Slices?.Select(s =>
                    s with
                    {
                        Parameters = ParameterSettings.Empty,
                        Sources = s.Sources.Select(x => x with { Parameters = ParameterSettings.Empty }).ToList(),
                    }
                )
                .ToList(),
            Text = null,
        };

    private static void Parameters(StringBuilder w, ParameterSettings settings, string indent, MergeMethod? method)
    {
        if (settings.Count == 0)
            return;
        w.Append(indent).Append("parameters:\n");
        foreach (var setting in settings)
        {
            var declared = method?.Declaration.Parameter(setting.Name);
            w.Append(indent).Append("  ").Append(Key(setting.Name, indent + "  "));
            if (setting.Value is ParameterValue.Conditional conditional)
            {
                w.Append('\n');
                foreach (var entry in conditional.Entries)
                {
                    w.Append(indent).Append("    - ");
                    if (entry.Filter is { } filter)
                        w.Append("filter: ").Append(Scalar(filter)).Append('\n').Append(indent).Append("      ");
                    w.Append("value: ").Append(Value(entry.Value, declared)).Append('\n');
                }
            }
            else
            {
                w.Append(' ').Append(Value(setting.Value, declared)).Append('\n');
            }
        }
    }

    private static string Value(ParameterValue value, MethodParameter? declared) =>
        value switch
        {
            ParameterValue.Scalar s when declared is BooleanParameter && s.Value is 0 or 1 => s.Value == 1
                ? "true"
                : "false",
            ParameterValue.Scalar s => Number(s.Value),
            ParameterValue.Text t => Scalar(t.Value),
            ParameterValue.Gradient g => $"[{string.Join(", ", g.Values.Select(Number))}]",
            _ => throw new ArgumentException("a filter entry's value is a number, a text or a gradient", nameof(value)),
        };

    private static void Tokenizer(StringBuilder w, TokenizerRecipe tokenizer)
    {
        string source = tokenizer.Kind switch
        {
            TokenizerSourceKind.Union => "union",
            TokenizerSourceKind.Base => "base",
            _ => Model(tokenizer.Model!),
        };
        if (tokenizer.Legacy)
        {
            w.Append("tokenizer_source: ").Append(source).Append('\n');
            return;
        }
        w.Append("tokenizer:\n  source: ").Append(source).Append('\n');
        if (tokenizer.Tokens.Count > 0)
        {
            w.Append("  tokens:\n");
            foreach (var (token, settings) in tokenizer.Tokens)
            {
                w.Append("    ").Append(Key(token, "    "));
                if (settings.Source is null && !settings.Force)
                {
                    w.Append(" {}\n");
                    continue;
                }
                w.Append('\n');
                if (settings.Source is { } tokenSource)
                    w.Append("      source: ").Append(TokenSourceText(tokenSource)).Append('\n');
                if (settings.Force)
                    w.Append("      force: true\n");
            }
        }
        if (tokenizer.PadToMultipleOf is { } pad)
            w.Append("  pad_to_multiple_of: ").Append(pad).Append('\n');
    }

    private static string TokenSourceText(TokenSource source) =>
        source switch
        {
            TokenSource.FromModel m => Model(m.Model),
            TokenSource.ModelToken t => t.Token is { } text
                ? $"{{kind: model_token, model: {Model(t.Model)}, token: {Quoted(text)}}}"
                : $"{{kind: model_token, model: {Model(t.Model)}, token_id: {t.TokenId}}}",
            _ => "{kind: zero}",
        };

    /// <summary>A model reference: its string form, or a mapping where the string form cannot say it.</summary>
    private static string Model(ModelReference reference)
    {
        static bool Plain(string path) => !path.Contains('@') && !path.Contains('+');
        static string Path(string path, string? revision) =>
            Plain(path) && revision is null or { Length: > 0 } && !(revision?.Contains('+') ?? false)
                ? Scalar(revision is null ? path : $"{path}@{revision}")
                : $"{{path: {Quoted(path)}{(revision is null ? "" : $", revision: {Quoted(revision)}")}}}";
        bool stringForm =
            reference.OverrideArchitecture is null
            && Plain(reference.Path)
            && !(reference.Revision?.Contains('+') ?? false)
            && (
                reference.Lora is null
                || Plain(reference.Lora.Path) && !(reference.Lora.Revision?.Contains('+') ?? false)
            );
        if (stringForm)
            return Scalar(reference.ToString());
        var parts = new List<string> { $"model: {Path(reference.Path, reference.Revision)}" };
        if (reference.Lora is { } lora)
            parts.Add($"lora: {Path(lora.Path, lora.Revision)}");
        if (reference.OverrideArchitecture is { } architecture)
            parts.Add($"override_architecture: {Quoted(architecture)}");
        return $"{{{string.Join(", ", parts)}}}";
    }

    /// <summary>
    /// A float as YAML 1.1 reads it back exactly: the shortest round-trip digits, with a '.' in the mantissa and a
    /// signed exponent (PyYAML reads "1e-05" as a string); infinities and NaN as .inf and .nan.
    /// </summary>
    public static string Number(double value)
    {
        if (!double.IsFinite(value))
            return SettingValue.FormatNumber(value);
        var text = value.ToString("R", CultureInfo.InvariantCulture);
        int e = text.IndexOfAny(['E', 'e']);
        string mantissa = e < 0 ? text : text[..e],
            exponent = e < 0 ? "" : text[(e + 1)..];
        if (!mantissa.Contains('.'))
            mantissa += ".0";
        if (exponent.Length == 0)
            return mantissa;
        return $"{mantissa}e{(exponent[0] is '-' or '+' ? exponent : "+" + exponent)}";
    }

    /// <summary>
    /// A mapping key and its colon. YAML allows at most 1024 characters in a key written the usual way, so a longer
    /// one (a fuzzer's, or escapes that lengthen it) is written as an explicit key: <c>? KEY</c>, then the colon on the
    /// next line at the same <paramref name="indent"/>.
    /// </summary>
    private static string Key(string text, string indent)
    {
        var key = Scalar(text);
        return key.Length <= 1024 ? key + ":" : $"? {key}\n{indent}:";
    }

    /// <summary>A string: plain when YAML 1.1 reads it back as this string, else double-quoted.</summary>
    public static string Scalar(string text) => IsPlain(text) ? text : Quoted(text);

    private static string Quoted(string text) =>
        JsonSerializer.Serialize(
            text,
            new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }
        );

    private static bool IsPlain(string text)
    {
        if (text.Length == 0 || text.Trim() != text)
            return false;
        foreach (char c in text)
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.' or '/' or '@' or '+' or ' '))
                return false;
        if (text[0] is '-' or '.' or '@' or '+' && text.Length > 1 && !char.IsAsciiLetter(text[1]))
            return false;
        if (text[0] is '@')
            return false;
        return Yaml11.ResolvePlain(text) == ScalarKind.String;
    }
}
