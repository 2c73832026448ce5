using System.Text.Json.Nodes;

namespace Alloy.Tokenizers;

/// <summary>
/// A token the tokenizer matches in the raw text before its model runs (tokenizer.json's <c>added_tokens</c>), with the
/// flags Hugging Face tokenizers gives it: <see cref="Special"/> tokens are skipped when decoding,
/// <see cref="Normalized"/> ones are matched after normalization, <see cref="LStrip"/>/<see cref="RStrip"/> eat the
/// whitespace beside them and <see cref="SingleWord"/> ones match only whole words.
/// </summary>
public sealed record AddedToken(
    int Id,
    string Content,
    bool Special,
    bool Normalized,
    bool LStrip = false,
    bool RStrip = false,
    bool SingleWord = false
)
{
    /// <summary>
    /// What transformers' <c>add_tokens("text")</c> creates: a normal token, matched after normalization.
    /// </summary>
    public static AddedToken Plain(int id, string content) => new(id, content, Special: false, Normalized: true);

    /// <summary>True when both tokens behave the same (the id may differ between models).</summary>
    public bool SameFlags(AddedToken other) =>
        Special == other.Special
        && Normalized == other.Normalized
        && LStrip == other.LStrip
        && RStrip == other.RStrip
        && SingleWord == other.SingleWord;

    public string DescribeFlags()
    {
        string flags =
            $"special={Special}, normalized={Normalized}, lstrip={LStrip}, rstrip={RStrip}, single_word={SingleWord}";
        return flags.ToLowerInvariant();
    }

    /// <summary>An entry of tokenizer.json's <c>added_tokens</c>.</summary>
    public JsonObject ToTokenizerJson() =>
        new()
        {
            ["id"] = Id,
            ["content"] = Content,
            ["single_word"] = SingleWord,
            ["lstrip"] = LStrip,
            ["rstrip"] = RStrip,
            ["normalized"] = Normalized,
            ["special"] = Special,
        };

    /// <summary>A value of tokenizer_config.json's <c>added_tokens_decoder</c> (keyed by the id).</summary>
    public JsonObject ToDecoderJson() =>
        new()
        {
            ["content"] = Content,
            ["lstrip"] = LStrip,
            ["normalized"] = Normalized,
            ["rstrip"] = RStrip,
            ["single_word"] = SingleWord,
            ["special"] = Special,
        };

    /// <summary>Reads an <c>added_tokens</c> entry; <paramref name="where"/> names the file for errors.</summary>
    public static AddedToken FromTokenizerJson(JsonNode? node, string where)
    {
        if (
            node is not JsonObject o
            || o["content"] is not JsonValue content
            || !content.TryGetValue(out string? text)
            || o["id"] is not JsonValue idNode
            || !idNode.TryGetValue(out int id)
            || id < 0
        )
            throw new AlloyException(
                $"{where}: an entry of 'added_tokens' needs a non-negative 'id' and a 'content' string, not "
                    + $"{StrictJson.Shorten(node)}"
            );
        // tokenizers' defaults for missing flags: normalized follows !special.
        var at = $"{where}: added token {id}";
        bool special = o.BoolField("special", at) ?? false;
        return new AddedToken(
            id,
            text,
            special,
            o.BoolField("normalized", at) ?? !special,
            o.BoolField("lstrip", at) ?? false,
            o.BoolField("rstrip", at) ?? false,
            o.BoolField("single_word", at) ?? false
        );
    }
}
