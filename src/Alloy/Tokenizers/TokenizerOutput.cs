using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Alloy.Checkpoints;
using Alloy.Output;

namespace Alloy.Tokenizers;

/// <summary>Writes the output model's tokenizer files as a <see cref="TokenizerPlan"/> decided.</summary>
public static class TokenizerOutput
{
    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>
    /// With a merged vocabulary, writes its tokenizer files into <paramref name="folder"/> (copying the source's when
    /// nothing changed); then stores the chat template, if one was chosen, in whatever tokenizer the folder has.
    /// <paramref name="tokenizerCopied"/> says whether the donor's tokenizer was copied there (copy mode).
    /// </summary>
    public static void Write(TokenizerPlan? plan, string folder, bool tokenizerCopied, Diagnostics diagnostics)
    {
        if (plan is null)
            return;
        if (plan.Vocabulary is { } vocabulary)
        {
            if (vocabulary.Unchanged)
                CopyFiles(vocabulary.Source.Folder, folder, DonorFiles.Tokenizer);
            else
                WriteMerged(vocabulary, folder, diagnostics);
        }
        if (plan.ChatTemplate is { } template)
        {
            if (plan.Vocabulary is null && !tokenizerCopied)
                diagnostics.Warn(
                    "chat_template is set but no tokenizer is written (--no-copy-tokenizer); the chat template is not "
                        + "saved"
                );
            else
                StoreChatTemplate(folder, template, diagnostics);
        }
    }

    private static void WriteMerged(MergedVocabulary vocabulary, string folder, Diagnostics diagnostics)
    {
        vocabulary.Document.Write(Path.Combine(folder, ModelTokenizer.TokenizerFile));

        // tokenizer_config.json: the source's settings, with added_tokens_decoder describing the new added tokens.
        var config = vocabulary.Source.Config?.DeepClone().AsObject() ?? new JsonObject();
        var decoder = new JsonObject();
        foreach (var token in vocabulary.Document.AddedTokens)
            decoder[token.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)] = token.ToDecoderJson();
        config["added_tokens_decoder"] = decoder;
        WriteJson(Path.Combine(folder, ModelTokenizer.ConfigFile), config);

        // special_tokens_map.json and the template files do not depend on ids. Slow-tokenizer files (tokenizer.model,
        // vocab.json, merges.txt, vocab.txt, added_tokens.json) describe the old vocabulary and are left out.
        CopyFiles(
            vocabulary.Source.Folder,
            folder,
            [ModelTokenizer.SpecialTokensFile, ModelTokenizer.ChatTemplateFile, "chat_template.json"]
        );

        var missing = SpecialTokenNames(config)
            .Concat(SpecialTokenNames(vocabulary.Source.SpecialTokens))
            .Distinct()
            .Where(t => !vocabulary.Document.Vocabulary.ContainsKey(t))
            .ToList();
        if (missing.Count > 0)
            diagnostics.Warn(
                $"tokenizer: special token(s) {string.Join(", ", missing.Select(t => $"'{t}'"))} named in "
                    + $"'{vocabulary.Source.Name}'s tokenizer settings are not in the output vocabulary"
            );
    }

    /// <summary>
    /// Stores the template where transformers reads it: chat_template.jinja (read first when present since late 2024,
    /// and where transformers saves templates by default since mid-2025) and tokenizer_config.json's chat_template
    /// (what older versions and other tools read), the same text in both so every reader agrees.
    /// </summary>
    private static void StoreChatTemplate(string folder, string template, Diagnostics diagnostics)
    {
        var configPath = Path.Combine(folder, ModelTokenizer.ConfigFile);
        bool hasTokenizer =
            File.Exists(configPath)
            || File.Exists(Path.Combine(folder, ModelTokenizer.TokenizerFile))
            || File.Exists(Path.Combine(folder, "tokenizer.model"));
        if (!hasTokenizer)
        {
            diagnostics.Warn(
                "chat_template is set but the donor model has no tokenizer files; the chat template is not saved"
            );
            return;
        }
        var config = StrictJson.ReadObjectFileIfPresent(configPath) ?? new JsonObject();
        config["chat_template"] = template;
        WriteJson(configPath, config);
        File.WriteAllText(Path.Combine(folder, ModelTokenizer.ChatTemplateFile), template);
    }

    /// <summary>Token texts named by *_token settings (a string, or an AddedToken object with "content").</summary>
    private static IEnumerable<string> SpecialTokenNames(JsonObject? settings)
    {
        if (settings is null)
            yield break;
        foreach (var (key, value) in settings)
        {
            if (!key.EndsWith("_token", StringComparison.Ordinal))
                continue;
            if (value is JsonValue v && v.TryGetValue(out string? text))
                yield return text;
            else if (value is JsonObject o && o["content"] is JsonValue c && c.TryGetValue(out string? content))
                yield return content;
        }
    }

    private static void CopyFiles(string from, string to, IEnumerable<string> names)
    {
        foreach (var name in names)
        {
            var source = Path.Combine(from, name);
            if (File.Exists(source))
                InputFile.Copy(source, Path.Combine(to, name), overwrite: true);
        }
    }

    private static void WriteJson(string path, JsonNode node) =>
        File.WriteAllText(path, node.ToJsonString(JsonOptions) + "\n");
}
