using System.Runtime.InteropServices;
using System.Text.Json.Nodes;

namespace Alloy.Tokenizers.Encoding;

/// <summary>
/// Encodes text to token ids and decodes ids to text with a Hugging Face <c>tokenizer.json</c>, giving the ids
/// Hugging Face's <c>tokenizers</c> gives: added tokens are split off first (on the raw text, then on the normalized
/// text), the rest is normalized, pre-tokenized and run through the BPE model, and the post-processor adds BOS/EOS when
/// special tokens are asked for. Thread-safe: one instance can encode on many threads.
/// </summary>
public sealed class TextTokenizer
{
    private readonly BpeModel _model;
    private readonly Normalizer? _normalizer;
    private readonly IPieceSink _pipeline;
    private readonly AddedTokenMatcher? _rawAdded,
        _normalizedAdded;
    private readonly PostProcessor _post;
    private readonly Decoder? _decoder;
    private readonly Dictionary<int, string> _addedById = []; // id → content as decoding sees it
    private readonly Dictionary<string, int> _addedByContent = new(StringComparer.Ordinal);
    private readonly Dictionary<int, string> _addedContentById = []; // id → content as tokenizer.json writes it
    private readonly HashSet<string> _specialContents = new(StringComparer.Ordinal);
    private readonly string?[] _modelTokens;

    private TextTokenizer(
        TokenizerDocument document,
        JsonObject? tokenizerConfig,
        JsonObject? specialTokensMap,
        JsonObject? generationConfig,
        string? chatTemplate,
        string? chatTemplateSource
    )
    {
        Source = document.Source;
        ChatTemplate = string.IsNullOrEmpty(chatTemplate) ? null : chatTemplate;
        ChatTemplateSource = chatTemplateSource;
        _model = new BpeModel(document);
        _normalizer = Normalizer.Create(Settings.Of(document.Setting("normalizer"), "normalizer", Source));
        _pipeline = PreTokenizer.Chain(Settings.Of(document.Setting("pre_tokenizer"), "pre-tokenizer", Source), _model);
        _decoder = Decoder.Create(Settings.Of(document.Setting("decoder"), "decoder", Source));

        _modelTokens = new string?[document.ModelVocabulary.Count == 0 ? 0 : document.ModelVocabulary.Values.Max() + 1];
        foreach (var (token, id) in document.ModelVocabulary)
            _modelTokens[id] = token;

        // Ids as tokenizers assigns them when it loads the file (its add_tokens): a token the model's vocabulary has
        // keeps the model's id, the others are numbered on from the vocabulary's size in file order. This differs from
        // the ids written in the file only when the file is inconsistent, and then tokenizers (and transformers) use
        // these.
        var raw = new List<(string, int, AddedToken)>();
        var normalized = new List<(string, int, AddedToken)>();
        int nextId = document.ModelVocabulary.Count;
        foreach (var token in document.AddedTokens)
        {
            if (token.Content.Length == 0)
                continue;
            int id =
                _addedByContent.TryGetValue(token.Content, out int known) ? known
                : document.ModelVocabulary.TryGetValue(token.Content, out int modelId) ? modelId
                : nextId++;
            var pattern =
                token.Normalized && _normalizer is not null ? _normalizer.Normalize(token.Content) : token.Content;
            (token.Normalized ? normalized : raw).Add((pattern, id, token));
            _addedById[id] = pattern;
            _addedByContent[token.Content] = id;
            _addedContentById[id] = token.Content;
            if (token.Special)
                _specialContents.Add(token.Content);
        }
        _rawAdded = AddedTokenMatcher.Create(raw);
        _normalizedAdded = AddedTokenMatcher.Create(normalized);

        Special = SpecialTokenIds.Read(this, tokenizerConfig, specialTokensMap, generationConfig);
        _post = LlamaTemplate(tokenizerConfig)
            ?? PostProcessor.Create(Settings.Of(document.Setting("post_processor"), "post-processor", Source));
    }

    /// <summary>The tokenizer.json this tokenizer was read from (for messages).</summary>
    public string Source { get; }

    /// <summary>The chat template transformers uses: chat_template.jinja, else tokenizer_config.json's.</summary>
    public string? ChatTemplate { get; }

    /// <summary>The file <see cref="ChatTemplate"/> came from, for messages.</summary>
    public string? ChatTemplateSource { get; }

    /// <summary>BOS, EOS, padding and unknown-token ids, and the ids that end generation.</summary>
    public SpecialTokenIds Special { get; }

    /// <summary>
    /// The ids <see cref="Encode(string, bool)"/> puts before the text when asked for special tokens (BOS for Llama;
    /// none for Qwen2).
    /// </summary>
    public IReadOnlyList<int> PrefixTokens => _post.Before;

    /// <summary>One past the largest id (the embedding rows the vocabulary needs).</summary>
    public int IdSpan => Math.Max(_modelTokens.Length, _addedById.Count == 0 ? 0 : _addedById.Keys.Max() + 1);

    /// <summary>
    /// Reads a model folder: tokenizer.json, and the special tokens of tokenizer_config.json, special_tokens_map.json
    /// and generation_config.json.
    /// </summary>
    public static TextTokenizer Load(string folder)
    {
        if (!Directory.Exists(folder))
            throw new AlloyException($"{folder}: no such folder");
        var files = ModelTokenizer.Load(folder, folder, modelConfig: null);
        var document = files.Document
            ?? throw new AlloyException(
                $"{folder}: no {ModelTokenizer.TokenizerFile}; Alloy encodes with Hugging Face fast-tokenizer files "
                    + $"(save the tokenizer with transformers to write one)"
            );
        var generation = StrictJson.ReadObjectFileIfPresent(Path.Combine(folder, "generation_config.json"));
        return new TextTokenizer(
            document,
            files.Config,
            files.SpecialTokens,
            generation,
            files.ChatTemplate,
            files.ChatTemplateSource
        );
    }

    /// <summary>
    /// A tokenizer from a tokenizer.json (and, when given, the contents of the config files beside it).
    /// </summary>
    public static TextTokenizer Create(
        TokenizerDocument document,
        JsonObject? tokenizerConfig = null,
        JsonObject? specialTokensMap = null,
        JsonObject? generationConfig = null
    ) =>
        new(
            document,
            tokenizerConfig,
            specialTokensMap,
            generationConfig,
            ModelTokenizer.TemplateFromConfig(tokenizerConfig, "tokenizer_config.json"),
            $"{document.Source} (tokenizer_config.json)"
        );

    /// <summary>
    /// The ids of <paramref name="text"/>; with <paramref name="addSpecialTokens"/>, framed as the post-processor says
    /// (BOS …).
    /// </summary>
    public int[] Encode(string text, bool addSpecialTokens = true)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        Encode(text, ids, addSpecialTokens);
        return [.. ids];
    }

    /// <summary>Appends the ids of <paramref name="text"/> to <paramref name="ids"/>.</summary>
    public void Encode(string text, List<int> ids, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = Unicode.Sanitize(text);
        if (addSpecialTokens)
            ids.AddRange(_post.Before);
        var parts = new List<(int Start, int End, int Id)>();
        if (_rawAdded is null)
            parts.Add((0, text.Length, -1));
        else
            _rawAdded.Split(text, parts);
        var inner = new List<(int Start, int End, int Id)>();
        foreach (var (start, end, id) in parts)
        {
            if (id >= 0)
            {
                ids.Add(id);
                continue;
            }
            if (end <= start)
                continue;
            var piece = start == 0 && end == text.Length ? text : text[start..end];
            var normalized = _normalizer is null ? piece : _normalizer.Normalize(piece);
            if (normalized.Length == 0)
                continue;
            inner.Clear();
            if (_normalizedAdded is null)
                inner.Add((0, normalized.Length, -1));
            else
                _normalizedAdded.Split(normalized, inner);
            foreach (var (innerStart, innerEnd, innerId) in inner)
            {
                if (innerId >= 0)
                    ids.Add(innerId);
                else if (innerEnd > innerStart)
                    _pipeline.Accept(
                        normalized.AsSpan(innerStart, innerEnd - innerStart),
                        start == 0 && innerStart == 0,
                        ids
                    );
            }
        }
        if (addSpecialTokens)
            ids.AddRange(_post.After);
    }

    /// <summary>
    /// The text of <paramref name="ids"/> as the tokenizer's decoder writes it; unknown ids are skipped.
    /// </summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var tokens = new List<string>(ids.Length);
        foreach (int id in ids)
            if (IdToToken(id) is { } token && !(skipSpecialTokens && _specialContents.Contains(token)))
                tokens.Add(token);
        return _decoder is null ? string.Join(' ', tokens) : string.Concat(_decoder.Decode(tokens));
    }

    /// <summary>The id of a token (added tokens first, then the model's vocabulary).</summary>
    public int? TokenToId(string token) =>
        _addedByContent.TryGetValue(token, out int id) ? id : _model.TokenToId(token);

    /// <summary>
    /// The token of an id (an added token's text as matched: normalized if it is a normalized token).
    /// </summary>
    public string? IdToToken(int id) =>
        _addedById.TryGetValue(id, out var added) ? added
        : (uint)id < (uint)_modelTokens.Length ? _modelTokens[id]
        : null;

    /// <summary>A token's text as tokenizer.json writes it (an added token's content, or the vocabulary's).</summary>
    public string? TokenContent(int id) =>
        _addedContentById.TryGetValue(id, out var content) ? content
        : (uint)id < (uint)_modelTokens.Length ? _modelTokens[id]
        : null;

    /// <summary>
    /// Whether the id is a special added token (skipped by <see cref="Decode"/> with skipSpecialTokens).
    /// </summary>
    public bool IsSpecial(int id) => IdToToken(id) is { } token && _specialContents.Contains(token);

    /// <summary>
    /// transformers rebuilds the post-processor of Llama-family tokenizers from tokenizer_config.json's add_bos_token
    /// (default true) and add_eos_token (default false), whatever tokenizer.json says; do the same for those classes.
    /// </summary>
    private PostProcessor? LlamaTemplate(JsonObject? config)
    {
        var where = Path.Combine(Path.GetDirectoryName(Source) ?? "", ModelTokenizer.ConfigFile);
        if (
            config?.StringField("tokenizer_class", where) is not { } tokenizerClass
            || !LlamaClasses.Contains(
                tokenizerClass.EndsWith("Fast", StringComparison.Ordinal) ? tokenizerClass[..^4] : tokenizerClass
            )
        )
            return null;
        bool addBos = config.BoolField("add_bos_token", where) ?? true,
            addEos = config.BoolField("add_eos_token", where) ?? false;
        if (addBos && Special.Bos is null)
            throw new AlloyException($"{Source}: add_bos_token is true but the tokenizer has no bos_token");
        if (addEos && Special.Eos is null)
            throw new AlloyException($"{Source}: add_eos_token is true but the tokenizer has no eos_token");
        return PostProcessor.BosEos(addBos ? Special.Bos : null, addEos ? Special.Eos : null);
    }

    private static readonly HashSet<string> LlamaClasses = ["LlamaTokenizer", "CodeLlamaTokenizer", "GemmaTokenizer"];
}

/// <summary>
/// The ids of a model's special tokens: <see cref="Bos"/>, <see cref="Eos"/>, <see cref="Pad"/> and <see cref="Unk"/>
/// from tokenizer_config.json (where a null means none), else special_tokens_map.json, else generation_config.json's
/// *_token_id; and <see cref="Stop"/>, the ids that end generation: generation_config.json's eos_token_id (a number or
/// a list), else EOS.
/// </summary>
public sealed record SpecialTokenIds(int? Bos, int? Eos, int? Pad, int? Unk, IReadOnlyList<int> Stop)
{
    internal static SpecialTokenIds Read(
        TextTokenizer tokenizer,
        JsonObject? config,
        JsonObject? map,
        JsonObject? generation
    )
    {
        int? Id(string name)
        {
            var key = name + "_token";
            // tokenizer_config.json's explicit null (Qwen's bos_token) means the tokenizer has none.
            if (config is not null && config.ContainsKey(key))
                return TokenText(config[key]) is { } own ? tokenizer.TokenToId(own) : null;
            if (TokenText(map?[key]) is { } text)
                return tokenizer.TokenToId(text);
            return generation?[name + "_token_id"] switch
            {
                JsonValue v when v.TryGetValue(out int id) => id,
                JsonArray { Count: > 0 } list when list[0] is JsonValue first && first.TryGetValue(out int id) => id,
                _ => null,
            };
        }
        int? eos = Id("eos");
        IReadOnlyList<int> stop = generation?["eos_token_id"] switch
        {
            JsonValue v when v.TryGetValue(out int id) => [id],
            JsonArray list => list.OfType<JsonValue>()
                .Select(i => i.TryGetValue(out int id) ? id : -1)
                .Where(i => i >= 0)
                .ToArray(),
            _ => eos is { } e ? [e] : [],
        };
        return new SpecialTokenIds(Id("bos"), eos, Id("pad"), Id("unk"), stop);
    }

    /// <summary>A special token entry: a string, or an AddedToken object with "content".</summary>
    private static string? TokenText(JsonNode? node) =>
        node switch
        {
            JsonValue v when v.TryGetValue(out string? s) => s,
            JsonObject o when o["content"] is JsonValue c && c.TryGetValue(out string? s) => s,
            _ => null,
        };
}
