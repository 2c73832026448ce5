using System.Text.Json.Nodes;
using Alloy.Architecture;
using Alloy.Checkpoints;

namespace Alloy.Tokenizers;

/// <summary>
/// One model's tokenizer files as transformers reads them: <c>tokenizer.json</c> (the fast tokenizer),
/// <c>tokenizer_config.json</c> (special token names, added_tokens_decoder, chat template),
/// <c>special_tokens_map.json</c> and <c>chat_template.jinja</c> (which transformers prefers to the config's template),
/// plus <c>config.json</c>'s vocab_size: how many embedding rows the model has for its tokens.
/// </summary>
public sealed class ModelTokenizer
{
    public const string TokenizerFile = "tokenizer.json",
        ConfigFile = "tokenizer_config.json",
        SpecialTokensFile = "special_tokens_map.json",
        ChatTemplateFile = "chat_template.jinja";

    /// <summary>config.json keys that hold the vocabulary size; the nested one is used by multimodal models.</summary>
    public static readonly string[] VocabSizeKeys = ["vocab_size", "text_config.vocab_size"];

    private ModelTokenizer(
        string name,
        string folder,
        TokenizerDocument? document,
        JsonObject? config,
        JsonObject? specialTokens,
        string? chatTemplate,
        string? chatTemplateSource,
        int? configVocabSize
    )
    {
        Name = name;
        Folder = folder;
        Document = document;
        Config = config;
        SpecialTokens = specialTokens;
        ChatTemplate = chatTemplate;
        ChatTemplateSource = chatTemplateSource;
        ConfigVocabSize = configVocabSize;
    }

    /// <summary>The model as the recipe names it.</summary>
    public string Name { get; }

    public string Folder { get; }

    /// <summary>tokenizer.json, or null when the model has none (then Alloy cannot read its vocabulary).</summary>
    public TokenizerDocument? Document { get; }

    /// <summary>tokenizer_config.json, if present.</summary>
    public JsonObject? Config { get; }

    /// <summary>special_tokens_map.json, if present.</summary>
    public JsonObject? SpecialTokens { get; }

    /// <summary>
    /// The chat template transformers would use (chat_template.jinja first, then the config's "default").
    /// </summary>
    public string? ChatTemplate { get; }

    /// <summary>The file <see cref="ChatTemplate"/> came from: chat_template.jinja or tokenizer_config.json.</summary>
    public string? ChatTemplateSource { get; }

    /// <summary>config.json's vocab_size (or text_config.vocab_size), if given.</summary>
    public int? ConfigVocabSize { get; }

    /// <summary>
    /// Ids below this have embedding rows: config.json's vocab_size, else the tokenizer's size (mergekit's rule).
    /// </summary>
    public int VocabSize => ConfigVocabSize ?? Document?.IdSpan ?? 0;

    /// <summary>
    /// Reads the tokenizer files of a model folder (tokenizer.json only with <paramref name="readVocabulary"/>: the
    /// chat template alone does not need it); missing files are null, malformed ones an error.
    /// </summary>
    public static ModelTokenizer Load(string name, string folder, JsonObject? modelConfig, bool readVocabulary = true)
    {
        var tokenizerPath = Path.Combine(folder, TokenizerFile);
        var document = readVocabulary && File.Exists(tokenizerPath) ? TokenizerDocument.Load(tokenizerPath) : null;
        var configPath = Path.Combine(folder, ConfigFile);
        var config = StrictJson.ReadObjectFileIfPresent(configPath);
        var special = StrictJson.ReadObjectFileIfPresent(Path.Combine(folder, SpecialTokensFile));
        var jinjaPath = Path.Combine(folder, ChatTemplateFile);
        var template = File.Exists(jinjaPath)
            ? InputFile.ReadAllText(jinjaPath)
            : TemplateFromConfig(config, configPath);
        if (string.IsNullOrEmpty(template))
            template = null;
        string? templateSource =
            template is null ? null
            : File.Exists(jinjaPath) ? jinjaPath
            : Path.Combine(folder, ConfigFile);
        long? vocabSize = VocabSizeKeys
            .Select(k => ModelLayout.ReadLong(modelConfig, k))
            .FirstOrDefault(v => v is not null);
        if (vocabSize is < 0 or > int.MaxValue)
            throw new AlloyException($"{Path.Combine(folder, "config.json")}: vocab_size {vocabSize} is out of range");
        return new ModelTokenizer(name, folder, document, config, special, template, templateSource, (int?)vocabSize);
    }

    /// <summary>
    /// The chat template of a tokenizer_config.json: a string, or a list of {name, template} whose "default" entry
    /// counts (what transformers' <c>tokenizer.chat_template</c> gives mergekit's <c>auto</c>).
    /// </summary>
    public static string? TemplateFromConfig(JsonObject? config, string where) =>
        config?["chat_template"] switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out string? s) => s,
            JsonArray list => list.Select(e =>
                    e as JsonObject
                    ?? throw new AlloyException(
                        $"{where}: 'chat_template' entries must be {{\"name\", \"template\"}} objects, not "
                            + StrictJson.Shorten(e)
                    )
                )
                .Where(e => e.StringField("name", $"{where}: chat_template") == "default")
                .Select(e => e.StringField("template", $"{where}: chat_template"))
                .FirstOrDefault(),
            var other => throw new AlloyException(
                $"{where}: 'chat_template' must be a string or a list of templates, not {StrictJson.Shorten(other)}"
            ),
        };
}
