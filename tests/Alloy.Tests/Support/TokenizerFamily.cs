using System.Text.Json.Nodes;
using Alloy.Synthetic;
using Alloy.Tensors;

namespace Alloy.Tests.Support;

/// <summary>
/// Generated models whose tokenizers disagree, after mergekit's tokenizer tests: a plain base (260 tokens); two
/// "chatml" fine-tunes adding &lt;|im_start|&gt; and &lt;|im_end|&gt; (ids 260, 261, vocab_size 262); a "padded" one
/// whose four added tokens sit past its vocab_size (ids 260–263, vocab_size 260); and "merges", whose BPE merges make
/// "he" and "ll" (ids 260, 261). Made once per test class.
/// </summary>
public sealed class TokenizerFamily : IDisposable
{
    public const string ChatTemplate =
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}";

    private readonly TempFolder _folder = new();

    public static readonly TinyLlamaSpec Spec = new()
    {
        DType = DType.F32,
        Layers = 2,
        HiddenSize = 16,
        IntermediateSize = 32,
        Heads = 2,
        KeyValueHeads = 1,
        VocabSize = 260,
    };

    public TokenizerFamily()
    {
        var chatml = new TokenizerExtras { AddedTokens = ["<|im_start|>", "<|im_end|>"], ChatTemplate = ChatTemplate };
        TinyLlama.Write(Base, Spec, 0);
        TinyLlama.Write(ChatMl, Spec with { VocabSize = 262, Tokenizer = chatml }, 1);
        TinyLlama.Write(ChatMl2, Spec with { VocabSize = 262, Tokenizer = chatml }, 2);
        TinyLlama.Write(
            Padded,
            Spec with
            {
                Tokenizer = new TokenizerExtras
                {
                    AddedTokens = ["<UNUSED_0>", "<UNUSED_1>", "<UNUSED_2>", "<UNUSED_3>"],
                    AddedTokensSpecial = false,
                },
            },
            3
        );
        TinyLlama.Write(
            Merges,
            Spec with
            {
                VocabSize = 262,
                Tokenizer = new TokenizerExtras { Merges = ["h e", "l l"], ChatTemplate = ChatTemplate },
            },
            4
        );
    }

    public string Base => _folder["base"];
    public string ChatMl => _folder["chatml"];
    public string ChatMl2 => _folder["chatml2"];
    public string Padded => _folder["padded"];
    public string Merges => _folder["merges"];

    public void Dispose() => _folder.Dispose();

    /// <summary>
    /// A float32 linear recipe over (model, weight) pairs, then <paramref name="extra"/> (top-level YAML lines).
    /// </summary>
    public static string LinearRecipe(string? baseModel, string extra, params (string Model, double Weight)[] models)
    {
        var yaml = new System.Text.StringBuilder("merge_method: linear\n");
        if (baseModel is not null)
            yaml.Append("base_model: ").Append(baseModel).Append('\n');
        yaml.Append("models:\n");
        foreach (var (model, weight) in models)
            yaml.Append("  - model: ")
                .Append(model)
                .Append("\n    parameters: {weight: ")
                .Append(weight.ToString(System.Globalization.CultureInfo.InvariantCulture))
                .Append("}\n");
        return yaml.Append("dtype: float32\n").Append(extra).Append('\n').ToString();
    }

    /// <summary>
    /// A model's vocabulary as its files state it: tokenizer.json's vocab and added tokens with ids below config.json's
    /// vocab_size.
    /// </summary>
    public static Dictionary<string, int> Vocabulary(string folder)
    {
        var tokenizer = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "tokenizer.json")))!;
        int size = (int)JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "config.json")))!["vocab_size"]!;
        var vocabulary = tokenizer["model"]!["vocab"]!.AsObject().ToDictionary(e => e.Key, e => (int)e.Value!);
        foreach (var token in tokenizer["added_tokens"]!.AsArray())
            vocabulary[(string)token!["content"]!] = (int)token["id"]!;
        return vocabulary.Where(e => e.Value < size).ToDictionary();
    }

    /// <summary>The output tokenizer.json's tokens by id (vocab and added tokens).</summary>
    public static string[] TokensById(string tokenizerJson)
    {
        var tokenizer = JsonNode.Parse(File.ReadAllText(tokenizerJson))!;
        var all = tokenizer["model"]!["vocab"]!.AsObject().Select(e => (Token: e.Key, Id: (int)e.Value!)).ToList();
        all.AddRange(
            tokenizer["added_tokens"]!.AsArray().Select(t => (Token: (string)t!["content"]!, Id: (int)t["id"]!))
        );
        var byId = new string[all.Max(e => e.Id) + 1];
        foreach (var (token, id) in all)
            byId[id] = token;
        Assert.All(byId, t => Assert.NotNull(t));
        return byId;
    }
}
