using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Alloy.Checkpoints;

namespace Alloy.Architecture;

/// <summary>
/// The structure of one checkpoint, read from its tensor names and config.json: which tensors form the repeated
/// decoder layers (and under which prefix), which come before them (embeddings) and after them (final norm, head),
/// which are vocabulary-indexed, and whether the output head is tied to the input embedding.
/// Works from naming conventions rather than per-architecture tables, so new Hugging Face models need no code.
/// </summary>
public sealed partial class ModelLayout
{
    /// <summary>config.json keys that hold the layer count, in the order they are tried (dotted = nested).</summary>
    public static readonly string[] LayerCountKeys =
    [
        "num_hidden_layers",
        "n_layer",
        "num_layers",
        "n_layers",
        "text_config.num_hidden_layers",
        "llm_config.num_hidden_layers",
    ];

    /// <summary>Output heads that models may tie to their input embedding instead of storing.</summary>
    private static readonly string[] HeadNames = ["lm_head.weight", "embed_out.weight"];

    private readonly Dictionary<int, List<string>> _layerSuffixes;

    private ModelLayout(
        string? architecture,
        string? layerPrefix,
        int layerCount,
        string? layerCountKey,
        Dictionary<int, List<string>> layerSuffixes,
        IReadOnlyList<string> preWeights,
        IReadOnlyList<string> postWeights,
        string? inputEmbedding,
        string? headName,
        bool headTied,
        long? vocabSize
    )
    {
        Architecture = architecture;
        LayerPrefix = layerPrefix;
        LayerCount = layerCount;
        LayerCountKey = layerCountKey;
        _layerSuffixes = layerSuffixes;
        PreWeights = preWeights;
        PostWeights = postWeights;
        InputEmbedding = inputEmbedding;
        HeadName = headName;
        HeadTied = headTied;
        VocabSize = vocabSize;
    }

    /// <summary>config.json's <c>architectures[0]</c>, if known.</summary>
    public string? Architecture { get; }

    /// <summary>The prefix of the decoder layers, e.g. "model.layers." (null for a model without layers).</summary>
    public string? LayerPrefix { get; }

    public int LayerCount { get; }

    /// <summary>The config.json key that holds the layer count (possibly dotted), if any.</summary>
    public string? LayerCountKey { get; }

    /// <summary>Tensors before the layers (input embeddings, other towers); they follow the first slice.</summary>
    public IReadOnlyList<string> PreWeights { get; }

    /// <summary>Tensors after the layers (final norm, output head); they follow the last slice.</summary>
    public IReadOnlyList<string> PostWeights { get; }

    /// <summary>The input embedding tensor, if recognised.</summary>
    public string? InputEmbedding { get; }

    /// <summary>The output head's name (stored, or implied by a tied embedding), if the model has one.</summary>
    public string? HeadName { get; }

    /// <summary>True when the head is not stored and reuses <see cref="InputEmbedding"/>.</summary>
    public bool HeadTied { get; }

    public long? VocabSize { get; }

    /// <summary>The tensor-name suffixes of layer <paramref name="layer"/> (e.g. "self_attn.q_proj.weight").</summary>
    public IReadOnlyList<string> LayerSuffixes(int layer) => _layerSuffixes.TryGetValue(layer, out var s) ? s : [];

    public string LayerTensorName(int layer, string suffix) => $"{LayerPrefix}{layer}.{suffix}";

    /// <summary>Vocabulary-indexed matrices (input embedding, output head) get special shape rules.</summary>
    public bool IsEmbedding(string name, long[] shape)
    {
        if (name == InputEmbedding || name == HeadName)
            return true;
        if (TokenEmbeddingName().IsMatch(name) || HeadTensorName().IsMatch(name))
            return true;
        return shape.Length == 2
            && VocabSize is { } v
            && shape[0] == v
            && !name.StartsWith(LayerPrefix ?? "\0", StringComparison.Ordinal);
    }

    /// <summary>
    /// Where a model's tensor called <paramref name="name"/> is stored: itself, or the embedding it is tied to.
    /// </summary>
    public string? StoredName(Checkpoint checkpoint, string name)
    {
        if (checkpoint.Contains(name))
            return name;
        return name == HeadName && HeadTied && InputEmbedding is { } embed && checkpoint.Contains(embed) ? embed : null;
    }

    /// <summary>A layout with no layers, for raw state-dict merges: every tensor is merged by name.</summary>
    public static ModelLayout Flat(Checkpoint checkpoint) =>
        new(null, null, 0, null, [], checkpoint.Tensors.Select(t => t.Name).ToList(), [], null, null, false, null);

    public static ModelLayout Analyze(Checkpoint checkpoint)
    {
        var config = checkpoint.Config;
        var names = checkpoint.Tensors.Select(t => t.Name).ToList();

        // Group layer-indexed tensors by the prefix before their first ".<n>." component.
        var stacks = new Dictionary<string, Dictionary<int, List<string>>>(StringComparer.Ordinal);
        var stackOrder = new List<string>();
        foreach (var name in names)
        {
            var m = LayerIndex().Match(name);
            if (!m.Success)
                continue;
            var prefix = m.Groups["prefix"].Value + ".";
            if (!stacks.TryGetValue(prefix, out var layers))
            {
                stacks[prefix] = layers = [];
                stackOrder.Add(prefix);
            }
            if (
                !int.TryParse(
                    m.Groups["index"].Value,
                    System.Globalization.NumberStyles.None,
                    System.Globalization.CultureInfo.InvariantCulture,
                    out int index
                )
            )
                throw new AlloyException($"tensor '{name}': layer index {m.Groups["index"].Value} is too large");
            if (!layers.TryGetValue(index, out var suffixes))
                layers[index] = suffixes = [];
            suffixes.Add(m.Groups["rest"].Value);
        }

        var (configCount, countKey) = ReadLayerCount(config);
        string? prefixChosen = ChooseLayerStack(stacks, stackOrder, configCount);
        int layerCount = 0;
        var layerSuffixes = new Dictionary<int, List<string>>();
        if (prefixChosen is not null)
        {
            layerSuffixes = stacks[prefixChosen];
            layerCount = layerSuffixes.Keys.Max() + 1;
            var missing = Enumerable.Range(0, layerCount).Where(i => !layerSuffixes.ContainsKey(i)).ToList();
            if (missing.Count > 0)
                throw new AlloyException(
                    $"{checkpoint.Path}: layers {string.Join(", ", missing.Take(5))} of '{prefixChosen}*' have no "
                        + $"tensors; the checkpoint is incomplete"
                );
            if (configCount is { } c && c != layerCount)
                throw new AlloyException(
                    $"{checkpoint.Path}: config.json says {countKey} = {c}, but the checkpoint has {layerCount} layers "
                        + $"under '{prefixChosen}'"
                );
        }
        else if (configCount is { } c && c > 0)
        {
            // A config that declares layers but no tensor carries a layer index: nothing to renumber; treat as
            // layerless.
            countKey = null;
        }

        var vocab = ReadLong(config, "vocab_size") ?? ReadLong(config, "text_config.vocab_size");
        var inputEmbedding = names.FirstOrDefault(n =>
            TokenEmbeddingName().IsMatch(n)
            && (prefixChosen is null || !n.StartsWith(prefixChosen, StringComparison.Ordinal))
        );
        var head = HeadNames.FirstOrDefault(names.Contains);
        bool tied = false;
        if (head is null && inputEmbedding is not null && IsCausalLm(config))
        {
            // No stored head: the model ties it to the input embedding (tie_word_embeddings, the transformers default).
            head = inputEmbedding.StartsWith("gpt_neox.", StringComparison.Ordinal)
                ? "embed_out.weight"
                : "lm_head.weight";
            tied = true;
        }

        var pre = new List<string>();
        var post = new List<string>();
        foreach (var name in names)
        {
            if (
                prefixChosen is not null
                && name.StartsWith(prefixChosen, StringComparison.Ordinal)
                && LayerIndex().IsMatch(name)
            )
                continue;
            // Embeddings and tensors of other stacks (e.g. a vision tower) come first; everything else follows the
            // layers.
            bool before =
                TokenEmbeddingName().IsMatch(name)
                || PositionEmbeddingName().IsMatch(name)
                || LayerIndex().IsMatch(name);
            (before ? pre : post).Add(name);
        }
        if (tied)
            post.Add(head!);

        return new ModelLayout(
            ReadArchitecture(config),
            prefixChosen,
            layerCount,
            prefixChosen is null ? null : countKey,
            layerSuffixes,
            pre,
            post,
            inputEmbedding,
            head,
            tied,
            vocab
        );
    }

    private static string? ChooseLayerStack(
        Dictionary<string, Dictionary<int, List<string>>> stacks,
        List<string> order,
        long? configCount
    )
    {
        if (stacks.Count == 0)
            return null;
        if (stacks.Count == 1)
            return order[0];
        // Several indexed stacks (e.g. language model + vision tower): prefer the one config.json's layer count
        // describes, then a conventional decoder name, then the one with the most tensors.
        var byCount = order.Where(p => configCount is { } c && stacks[p].Keys.Max() + 1 == c).ToList();
        var candidates = byCount.Count > 0 ? byCount : order;
        var conventional = candidates.FirstOrDefault(p => DecoderStackName().IsMatch(p));
        return conventional ?? candidates.OrderByDescending(p => stacks[p].Values.Sum(v => v.Count)).First();
    }

    private static (long? Count, string? Key) ReadLayerCount(JsonObject? config)
    {
        foreach (var key in LayerCountKeys)
            if (ReadLong(config, key) is { } n)
                return (n, key);
        return (null, null);
    }

    private static string? ReadArchitecture(JsonObject? config) =>
        config?["architectures"] is JsonArray { Count: > 0 } a && a[0] is JsonValue v && v.TryGetValue(out string? s)
            ? s
            : null;

    private static bool IsCausalLm(JsonObject? config)
    {
        var arch = ReadArchitecture(config);
        if (config?["tie_word_embeddings"] is JsonValue t && t.TryGetValue(out bool tie) && !tie)
            return false;
        return arch is null
            || arch.EndsWith("ForCausalLM", StringComparison.Ordinal)
            || arch.EndsWith("LMHeadModel", StringComparison.Ordinal);
    }

    /// <summary>Reads an integer at a (possibly dotted) key of config.json.</summary>
    public static long? ReadLong(JsonObject? config, string dottedKey)
    {
        JsonNode? node = config;
        foreach (var part in dottedKey.Split('.'))
            node = node is JsonObject o && o.TryGetPropertyValue(part, out var child) ? child : null;
        return node is JsonValue v && v.TryGetValue(out long n) ? n : null;
    }

    // [0-9], not \d: a layer index is ASCII digits (\d also matches other scripts' digits).
    [GeneratedRegex(@"^(?<prefix>.*?)\.(?<index>[0-9]+)\.(?<rest>.+)$")]
    private static partial Regex LayerIndex();

    /// <summary>Vocabulary-indexed input embeddings.</summary>
    [GeneratedRegex(@"(^|\.)(embed_tokens|wte|embed_in|word_embeddings)\.weight$")]
    private static partial Regex TokenEmbeddingName();

    /// <summary>
    /// Position and token-type embeddings: they sit before the layers but are not vocabulary-indexed.
    /// </summary>
    [GeneratedRegex(@"(^|\.)(wpe|position_embeddings|token_type_embeddings|embed_positions)\.weight$")]
    private static partial Regex PositionEmbeddingName();

    [GeneratedRegex(@"(^|\.)(lm_head|embed_out)\.weight$")]
    private static partial Regex HeadTensorName();

    [GeneratedRegex(@"(^|\.)(layers|h|blocks|layer|decoder\.layers)\.$")]
    private static partial Regex DecoderStackName();
}
