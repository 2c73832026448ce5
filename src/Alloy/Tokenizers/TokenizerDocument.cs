using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Alloy.Tokenizers;

/// <summary>The model inside a tokenizer.json: how its vocabulary is stored.</summary>
public enum TokenizerModelKind
{
    /// <summary>
    /// Byte-level (GPT-2, Llama 3, Qwen) or SentencePiece-style (Llama 2, Mistral) BPE: a token → id map and merges.
    /// </summary>
    Bpe,

    /// <summary>SentencePiece Unigram: a list of [piece, score]; the id is the position.</summary>
    Unigram,

    /// <summary>BERT-style WordPiece: a token → id map.</summary>
    WordPiece,

    /// <summary>A plain token → id map.</summary>
    WordLevel,
}

/// <summary>
/// A Hugging Face <c>tokenizer.json</c>: its model's vocabulary (and BPE merges) and its added tokens, editable, and
/// written back with every other setting (normalizer, pre-tokenizer, post-processor, decoder) kept as it was. The
/// vocabulary and merges are read with a streaming parser into plain collections, so a 250k-token vocabulary costs
/// its strings, not a JSON object tree.
/// </summary>
public sealed class TokenizerDocument
{
    private const string VocabKey = "vocab",
        MergesKey = "merges",
        ModelKey = "model",
        AddedKey = "added_tokens";

    private readonly List<(string Key, JsonNode? Value)> _root; // model and added_tokens are placeholders
    private readonly List<(string Key, JsonNode? Value)> _model; // vocab and merges are placeholders
    private readonly Dictionary<string, int> _vocab; // model vocabulary (Unigram: piece → position)
    private readonly List<(string Piece, double Score)>? _pieces; // Unigram only, in id order
    private readonly SortedDictionary<int, AddedToken> _added;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly List<(string Left, string Right)>? _merges; // BPE only
    private readonly HashSet<(string, string)>? _mergeSet;
    private bool _mergesAsArrays;
    private Dictionary<string, int>? _fullVocabulary;
    private int? _nextId;

    private TokenizerDocument(
        string source,
        TokenizerModelKind kind,
        List<(string, JsonNode?)> root,
        List<(string, JsonNode?)> model,
        Dictionary<string, int> vocab,
        List<(string, double)>? pieces,
        IEnumerable<AddedToken> added,
        List<(string, string)>? merges,
        bool mergesAsArrays
    )
    {
        Source = source;
        Kind = kind;
        _root = root;
        _model = model;
        _vocab = vocab;
        _pieces = pieces;
        _added = new SortedDictionary<int, AddedToken>();
        _addedByContent = new Dictionary<string, AddedToken>(StringComparer.Ordinal);
        foreach (var token in added)
        {
            if (!_added.TryAdd(token.Id, token))
                throw new AlloyException(
                    $"{source}: two added tokens have id {token.Id} ('{_added[token.Id].Content}' and "
                        + $"'{token.Content}')"
                );
            // tokenizers keeps the last of two entries with the same content.
            _addedByContent[token.Content] = token;
        }
        _merges = merges;
        _mergeSet = merges?.ToHashSet();
        _mergesAsArrays = mergesAsArrays;
    }

    /// <summary>The file this document was read from (for messages).</summary>
    public string Source { get; }

    public TokenizerModelKind Kind { get; }

    /// <summary>
    /// The model's own vocabulary, token → id (added tokens not included unless the model has them too).
    /// </summary>
    public IReadOnlyDictionary<string, int> ModelVocabulary => _vocab;

    /// <summary>Added tokens in id order.</summary>
    public IReadOnlyCollection<AddedToken> AddedTokens => _added.Values;

    /// <summary>BPE merges in priority order (empty for other models).</summary>
    public IReadOnlyList<(string Left, string Right)> Merges => _merges ?? [];

    /// <summary>BPE's <c>continuing_subword_prefix</c>, which a merge drops from its right part.</summary>
    public string? ContinuingSubwordPrefix => ModelString("continuing_subword_prefix");

    /// <summary>What transformers' <c>get_vocab()</c> returns: the model's vocabulary and the added tokens.</summary>
    public IReadOnlyDictionary<string, int> Vocabulary
    {
        get
        {
            if (_fullVocabulary is not null)
                return _fullVocabulary;
            var all = new Dictionary<string, int>(_vocab, StringComparer.Ordinal);
            foreach (var token in _added.Values)
                all[token.Content] = token.Id;
            return _fullVocabulary = all;
        }
    }

    /// <summary>The added token with this text, if any.</summary>
    public AddedToken? FindAdded(string content) => _addedByContent.GetValueOrDefault(content);

    /// <summary>The model's vocabulary in id order.</summary>
    public IEnumerable<(string Token, int Id)> ModelTokensById() =>
        _pieces is not null
            ? _pieces.Select((p, i) => (p.Piece, i))
            : _vocab.OrderBy(e => e.Value).Select(e => (e.Key, e.Value));

    /// <summary>The id the next new token gets: one past the largest id in use.</summary>
    public int NextId =>
        _nextId ??= Math.Max(
            _vocab.Count == 0 ? 0 : _vocab.Values.Max() + 1,
            _added.Count == 0 ? 0 : _added.Keys.Max() + 1
        );

    /// <summary>
    /// One past the largest id in use (holes included), i.e. the rows an embedding for this vocabulary needs.
    /// </summary>
    public int IdSpan => NextId;

    public TokenizerDocument Clone() =>
        new(
            Source,
            Kind,
            _root.Select(e => (e.Key, e.Value?.DeepClone())).ToList(),
            _model.Select(e => (e.Key, e.Value?.DeepClone())).ToList(),
            new Dictionary<string, int>(_vocab, StringComparer.Ordinal),
            _pieces?.ToList(),
            _added.Values,
            _merges?.ToList(),
            _mergesAsArrays
        );

    /// <summary>
    /// Removes every token whose id is ≥ <paramref name="vocabSize"/> (ids the model has no embedding row for), and
    /// the merges that use or make one. Returns the number of tokens removed.
    /// </summary>
    public int Strip(int vocabSize)
    {
        int removed = 0;
        if (_pieces is not null)
        {
            if (_pieces.Count > vocabSize)
            {
                removed += _pieces.Count - vocabSize;
                foreach (var (piece, _) in _pieces.Skip(vocabSize))
                    if (_vocab.TryGetValue(piece, out var id) && id >= vocabSize)
                        _vocab.Remove(piece);
                _pieces.RemoveRange(vocabSize, _pieces.Count - vocabSize);
                if (ModelLong("unk_id") is { } unk && unk >= vocabSize)
                    throw new AlloyException(
                        $"{Source}: the unknown token (unk_id {unk}) is past the model's vocab_size {vocabSize}"
                    );
            }
        }
        else
        {
            foreach (var token in _vocab.Where(e => e.Value >= vocabSize).Select(e => e.Key).ToList())
            {
                _vocab.Remove(token);
                removed++;
            }
        }
        foreach (var token in _added.Values.Where(t => t.Id >= vocabSize).ToList())
        {
            _added.Remove(token.Id);
            if (_addedByContent.GetValueOrDefault(token.Content) == token)
                _addedByContent.Remove(token.Content);
            if (!_vocab.ContainsKey(token.Content))
                removed++;
        }
        if (_merges is not null && removed > 0)
        {
            _merges.RemoveAll(m =>
                !_vocab.ContainsKey(m.Left)
                || !_vocab.ContainsKey(m.Right)
                || !_vocab.ContainsKey(MergeResult(m.Left, m.Right))
            );
            _mergeSet!.IntersectWith(_merges);
        }
        _fullVocabulary = null;
        _nextId = null;
        return removed;
    }

    /// <summary>Adds a token to the model's vocabulary (BPE, WordPiece, WordLevel) with the next id.</summary>
    public int AddModelToken(string token)
    {
        if (Kind == TokenizerModelKind.Unigram)
            throw new InvalidOperationException("a Unigram vocabulary is positional; add the token as an added token");
        if (Vocabulary.TryGetValue(token, out var existing))
            return existing;
        int id = NextId;
        _vocab[token] = id;
        _fullVocabulary?.Add(token, id);
        _nextId = id + 1;
        return id;
    }

    /// <summary>
    /// Registers an added token: a text already in the vocabulary keeps its id (and becomes an added token, as
    /// tokenizers does); a new one gets the next id. Returns the token as stored (an existing added token wins).
    /// </summary>
    public AddedToken AddAddedToken(AddedToken token)
    {
        if (_addedByContent.TryGetValue(token.Content, out var present))
            return present;
        var stored = token with { Id = _vocab.TryGetValue(token.Content, out var id) ? id : NextId };
        _added[stored.Id] = stored;
        _addedByContent[stored.Content] = stored;
        if (_fullVocabulary is not null)
            _fullVocabulary[stored.Content] = stored.Id;
        _nextId = Math.Max(NextId, stored.Id + 1);
        return stored;
    }

    /// <summary>
    /// Appends a BPE merge (lowest priority) if it is new and its parts and result are in the vocabulary.
    /// </summary>
    public bool AddMerge(string left, string right)
    {
        if (_merges is null || _mergeSet!.Contains((left, right)))
            return false;
        if (!_vocab.ContainsKey(left) || !_vocab.ContainsKey(right) || !_vocab.ContainsKey(MergeResult(left, right)))
            return false;
        _merges.Add((left, right));
        _mergeSet.Add((left, right));
        // The "a b" string form cannot hold a part with a space; switch the whole list to pairs then.
        if (left.Contains(' ') || right.Contains(' '))
            _mergesAsArrays = true;
        return true;
    }

    /// <summary>
    /// The token a BPE merge makes: the parts joined, the right part without its continuing-subword prefix.
    /// </summary>
    public string MergeResult(string left, string right)
    {
        var prefix = ContinuingSubwordPrefix;
        return left
            + (
                !string.IsNullOrEmpty(prefix) && right.StartsWith(prefix, StringComparison.Ordinal)
                    ? right[prefix.Length..]
                    : right
            );
    }

    // ---- reading ------------------------------------------------------------------------------------------------

    public static TokenizerDocument Load(string path)
    {
        using var document = StrictJson.ParseFile(path);
        return Read(document.RootElement, path);
    }

    private static TokenizerDocument Read(JsonElement root, string path)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new AlloyException($"{path}: a tokenizer.json must be a JSON object");
        var rootEntries = new List<(string, JsonNode?)>();
        List<(string, JsonNode?)>? modelEntries = null;
        var added = new List<AddedToken>();
        JsonElement? vocabElement = null,
            mergesElement = null;
        foreach (var property in root.EnumerateObject())
        {
            if (property.Name == ModelKey && property.Value.ValueKind == JsonValueKind.Object)
            {
                modelEntries = [];
                foreach (var m in property.Value.EnumerateObject())
                {
                    if (m.Name == VocabKey)
                        vocabElement = m.Value;
                    else if (m.Name == MergesKey)
                        mergesElement = m.Value;
                    modelEntries.Add((m.Name, m.Name is VocabKey or MergesKey ? null : StrictJson.ToNode(m.Value)));
                }
                rootEntries.Add((ModelKey, null));
            }
            else if (property.Name == AddedKey && property.Value.ValueKind == JsonValueKind.Array)
            {
                foreach (var entry in property.Value.EnumerateArray())
                    added.Add(AddedToken.FromTokenizerJson(StrictJson.ToNode(entry), path));
                rootEntries.Add((AddedKey, null));
            }
            else
                rootEntries.Add((property.Name, StrictJson.ToNode(property.Value)));
        }
        if (modelEntries is null || vocabElement is not { } vocab)
            throw new AlloyException($"{path}: no 'model' with a 'vocab'; is this a Hugging Face tokenizer.json?");
        if (!rootEntries.Any(e => e.Item1 == AddedKey))
            rootEntries.Add((AddedKey, null));

        var type = StrictJson.AsString(
            modelEntries.FirstOrDefault(e => e.Item1 == "type").Item2,
            $"{path}: 'model.type'"
        );
        var kind = type switch
        {
            "BPE" => TokenizerModelKind.Bpe,
            "Unigram" => TokenizerModelKind.Unigram,
            "WordPiece" => TokenizerModelKind.WordPiece,
            "WordLevel" => TokenizerModelKind.WordLevel,
            // Files from old tokenizers versions have no type; tell the models apart the way its reader does.
            null when vocab.ValueKind == JsonValueKind.Array => TokenizerModelKind.Unigram,
            null when mergesElement is not null => TokenizerModelKind.Bpe,
            null when modelEntries.Any(e => e.Item1 == "max_input_chars_per_word") => TokenizerModelKind.WordPiece,
            null => TokenizerModelKind.WordLevel,
            _ => throw new AlloyException(
                $"{path}: tokenizer model type '{type}' is not supported (BPE, Unigram, WordPiece and WordLevel are)"
            ),
        };

        var map = new Dictionary<string, int>(StringComparer.Ordinal);
        List<(string, double)>? pieces = null;
        if (kind == TokenizerModelKind.Unigram)
        {
            if (vocab.ValueKind != JsonValueKind.Array)
                throw new AlloyException($"{path}: a Unigram 'vocab' must be a list of [piece, score]");
            pieces = [];
            foreach (var entry in vocab.EnumerateArray())
            {
                if (
                    entry.ValueKind != JsonValueKind.Array
                    || entry.GetArrayLength() != 2
                    || entry[0].ValueKind != JsonValueKind.String
                    || entry[1].ValueKind != JsonValueKind.Number
                )
                    throw new AlloyException(
                        $"{path}: Unigram vocab entry {pieces.Count} must be [piece, score], not "
                            + StrictJson.Shorten(entry)
                    );
                var piece = entry[0].GetString()!;
                // A repeated piece keeps its first id, as tokenizers' token_to_id does.
                map.TryAdd(piece, pieces.Count);
                pieces.Add((piece, entry[1].GetDouble()));
            }
        }
        else
        {
            if (vocab.ValueKind != JsonValueKind.Object)
                throw new AlloyException(
                    $"{path}: the {type ?? kind.ToString()} 'vocab' must be an object of token → id"
                );
            var seenIds = new Dictionary<int, string>();
            foreach (var entry in vocab.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
                    throw new AlloyException(
                        $"{path}: vocab token '{entry.Name}' must have a non-negative whole-number id, not "
                            + $"{StrictJson.Shorten(entry.Value)}"
                    );
                if (!map.TryAdd(entry.Name, id))
                    throw new AlloyException($"{path}: vocab token '{entry.Name}' appears twice");
                if (!seenIds.TryAdd(id, entry.Name))
                    throw new AlloyException($"{path}: vocab tokens '{seenIds[id]}' and '{entry.Name}' share id {id}");
            }
        }

        List<(string, string)>? merges = null;
        bool asArrays = false;
        if (kind == TokenizerModelKind.Bpe)
        {
            merges = [];
            if (mergesElement is { ValueKind: JsonValueKind.Array } mergeList)
            {
                foreach (var merge in mergeList.EnumerateArray())
                {
                    if (merge.ValueKind == JsonValueKind.String && merge.GetString()!.Split(' ') is [var a, var b])
                        merges.Add((a, b));
                    else if (
                        merge.ValueKind == JsonValueKind.Array
                        && merge.GetArrayLength() == 2
                        && merge[0].ValueKind == JsonValueKind.String
                        && merge[1].ValueKind == JsonValueKind.String
                    )
                    {
                        merges.Add((merge[0].GetString()!, merge[1].GetString()!));
                        asArrays = true;
                    }
                    else
                        throw new AlloyException(
                            $"{path}: BPE merge {merges.Count} must be \"a b\" or [\"a\", \"b\"], not "
                                + StrictJson.Shorten(merge)
                        );
                }
            }
        }
        return new TokenizerDocument(path, kind, rootEntries, modelEntries, map, pieces, added, merges, asArrays);
    }

    /// <summary>
    /// A top-level setting as stored (<c>normalizer</c>, <c>pre_tokenizer</c>, <c>post_processor</c>, <c>decoder</c>,
    /// …); null when absent or null. The node belongs to the document: read it, do not change it.
    /// </summary>
    public JsonNode? Setting(string key) =>
        key is ModelKey or AddedKey ? null : _root.FirstOrDefault(e => e.Key == key).Value;

    /// <summary>
    /// A setting of the model other than its vocabulary and merges (<c>unk_token</c>, <c>byte_fallback</c>, …).
    /// </summary>
    public JsonNode? ModelSetting(string key) => _model.FirstOrDefault(e => e.Key == key).Value;

    internal string? ModelString(string key) => StrictJson.AsString(ModelSetting(key), ModelWhat(key));

    internal bool? ModelBool(string key) => StrictJson.AsBool(ModelSetting(key), ModelWhat(key));

    private long? ModelLong(string key) => StrictJson.AsLong(ModelSetting(key), ModelWhat(key));

    private string ModelWhat(string key) => $"{Source}: 'model.{key}'";

    // ---- writing ------------------------------------------------------------------------------------------------

    /// <summary>JSON as Hugging Face writes it: two-space indents, non-ASCII text kept readable.</summary>
    public static readonly JsonWriterOptions WriterOptions = new()
    {
        Indented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public void Write(string path)
    {
        using var stream = File.Create(path);
        using var writer = new Utf8JsonWriter(stream, WriterOptions);
        WriteTo(writer);
    }

    public void WriteTo(Utf8JsonWriter writer)
    {
        writer.WriteStartObject();
        foreach (var (key, value) in _root)
        {
            writer.WritePropertyName(key);
            if (key == ModelKey)
                WriteModel(writer);
            else if (key == AddedKey)
            {
                writer.WriteStartArray();
                foreach (var token in _added.Values)
                    token.ToTokenizerJson().WriteTo(writer);
                writer.WriteEndArray();
            }
            else
                WriteNode(writer, value);
        }
        writer.WriteEndObject();
    }

    private void WriteModel(Utf8JsonWriter writer)
    {
        writer.WriteStartObject();
        foreach (var (key, value) in _model)
        {
            writer.WritePropertyName(key);
            if (key == VocabKey)
                WriteVocab(writer);
            else if (key == MergesKey && _merges is not null)
            {
                writer.WriteStartArray();
                foreach (var (left, right) in _merges)
                {
                    if (_mergesAsArrays)
                    {
                        writer.WriteStartArray();
                        writer.WriteStringValue(left);
                        writer.WriteStringValue(right);
                        writer.WriteEndArray();
                    }
                    else
                        writer.WriteStringValue(left + " " + right);
                }
                writer.WriteEndArray();
            }
            else
                WriteNode(writer, value);
        }
        writer.WriteEndObject();
    }

    private void WriteVocab(Utf8JsonWriter writer)
    {
        if (_pieces is not null)
        {
            writer.WriteStartArray();
            foreach (var (piece, score) in _pieces)
            {
                writer.WriteStartArray();
                writer.WriteStringValue(piece);
                writer.WriteNumberValue(score);
                writer.WriteEndArray();
            }
            writer.WriteEndArray();
            return;
        }
        writer.WriteStartObject();
        foreach (var (token, id) in _vocab.OrderBy(e => e.Value))
            writer.WriteNumber(token, id);
        writer.WriteEndObject();
    }

    private static void WriteNode(Utf8JsonWriter writer, JsonNode? node)
    {
        if (node is null)
            writer.WriteNullValue();
        else
            node.WriteTo(writer);
    }
}
