using System.Text.Json.Nodes;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Synthetic;

/// <summary>
/// What a generated model's tokenizer adds to the plain byte tokenizer (tests of vocabulary merging).
/// </summary>
public sealed record TokenizerExtras
{
    /// <summary>BPE merges ("a b"); each result joins the vocabulary after the special tokens, in order.</summary>
    public IReadOnlyList<string> Merges { get; init; } = [];

    /// <summary>
    /// Added tokens, with ids after the vocabulary (past vocab_size if the model has no rows for them).
    /// </summary>
    public IReadOnlyList<string> AddedTokens { get; init; } = [];

    /// <summary>Whether <see cref="AddedTokens"/> are special (skipped when decoding), as chat markers are.</summary>
    public bool AddedTokensSpecial { get; init; } = true;

    /// <summary>tokenizer_config.json's chat_template, if any.</summary>
    public string? ChatTemplate { get; init; }

    public static TokenizerExtras None { get; } = new();
}

/// <summary>
/// A minimal byte-level BPE tokenizer (GPT-2's byte-to-character mapping, no merges) plus special tokens, written as
/// Hugging Face tokenizer files so generated models load with the usual tools.
/// </summary>
public static class ByteTokenizer
{
    public const int BosId = 256,
        EosId = 257,
        PadId = 258,
        UnkId = 259;
    private static readonly string[] Specials = ["<s>", "</s>", "<pad>", "<unk>"];

    /// <summary>Smallest vocabulary that holds the 256 bytes and the special tokens.</summary>
    public const int MinimumVocabSize = 260;

    /// <summary>TemplateProcessing that puts &lt;s&gt; before a sequence (and before each of a pair).</summary>
    private static JsonObject BosTemplate()
    {
        static JsonObject Special() =>
            new()
            {
                ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 0 },
            };
        static JsonObject Sequence(string id, int type) =>
            new()
            {
                ["Sequence"] = new JsonObject { ["id"] = id, ["type_id"] = type },
            };
        return new JsonObject
        {
            ["type"] = "TemplateProcessing",
            ["single"] = new JsonArray(Special(), Sequence("A", 0)),
            ["pair"] = new JsonArray(Special(), Sequence("A", 0), Special(), Sequence("B", 1)),
            ["special_tokens"] = new JsonObject
            {
                ["<s>"] = new JsonObject
                {
                    ["id"] = "<s>",
                    ["ids"] = new JsonArray(BosId),
                    ["tokens"] = new JsonArray("<s>"),
                },
            },
        };
    }

    public static void Write(string folder, int vocabSize, TokenizerExtras? extras = null)
    {
        extras ??= TokenizerExtras.None;
        if (vocabSize < MinimumVocabSize)
            throw new ArgumentOutOfRangeException(
                nameof(vocabSize),
                $"the byte tokenizer needs a vocabulary of at least {MinimumVocabSize}"
            );
        var vocab = new JsonObject();
        for (int b = 0; b < 256; b++)
            vocab[ByteLevelAlphabet.ToChar((byte)b).ToString()] = b;
        var added = new JsonArray();
        void Add(int id, string content, bool special) =>
            added.Add(
                new JsonObject
                {
                    ["id"] = id,
                    ["content"] = content,
                    ["single_word"] = false,
                    ["lstrip"] = false,
                    ["rstrip"] = false,
                    ["normalized"] = !special,
                    ["special"] = special,
                }
            );
        for (int i = 0; i < Specials.Length; i++)
        {
            vocab[Specials[i]] = 256 + i;
            Add(256 + i, Specials[i], special: true);
        }
        var merges = new JsonArray();
        foreach (var merge in extras.Merges)
        {
            var parts = merge.Split(' ');
            if (parts.Length != 2 || !vocab.ContainsKey(parts[0]) || !vocab.ContainsKey(parts[1]))
                throw new ArgumentException(
                    $"merge '{merge}' must join two tokens already in the vocabulary",
                    nameof(extras)
                );
            merges.Add(merge);
            if (!vocab.ContainsKey(parts[0] + parts[1]))
                vocab[parts[0] + parts[1]] = vocab.Count;
        }
        foreach (var token in extras.AddedTokens)
            Add(vocab.Count + added.Count - Specials.Length, token, extras.AddedTokensSpecial);
        // Ids between the tokenizer's size and vocab_size are unused embedding rows, as in many real models.
        var tokenizer = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "ByteLevel",
                ["add_prefix_space"] = false,
                ["trim_offsets"] = true,
                ["use_regex"] = true,
            },
            // BOS before every sequence, as Llama's tokenizer does: training, evaluation and generation all take the
            // prefix from here, so a model trained on these files is scored with the token it always saw.
            ["post_processor"] = BosTemplate(),
            ["decoder"] = new JsonObject
            {
                ["type"] = "ByteLevel",
                ["add_prefix_space"] = true,
                ["trim_offsets"] = true,
                ["use_regex"] = true,
            },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null,
                ["fuse_unk"] = false,
                ["byte_fallback"] = false,
                ["ignore_merges"] = false,
                ["vocab"] = vocab,
                ["merges"] = merges,
            },
        };
        TinyLlama.WriteJson(Path.Combine(folder, "tokenizer.json"), tokenizer);

        var decoder = new JsonObject();
        foreach (var token in added)
            decoder[token!["id"]!.ToString()] = token.DeepClone();
        var config = new JsonObject
        {
            ["added_tokens_decoder"] = decoder,
            ["bos_token"] = "<s>",
            ["eos_token"] = "</s>",
            ["pad_token"] = "<pad>",
            ["unk_token"] = "<unk>",
            ["clean_up_tokenization_spaces"] = false,
            ["model_max_length"] = 2048,
            ["tokenizer_class"] = "PreTrainedTokenizerFast",
        };
        if (extras.ChatTemplate is { } template)
            config["chat_template"] = template;
        TinyLlama.WriteJson(Path.Combine(folder, "tokenizer_config.json"), config);
        TinyLlama.WriteJson(
            Path.Combine(folder, "special_tokens_map.json"),
            new JsonObject
            {
                ["bos_token"] = "<s>",
                ["eos_token"] = "</s>",
                ["pad_token"] = "<pad>",
                ["unk_token"] = "<unk>",
            }
        );
    }
}
