using System.Text;
using System.Text.Json.Nodes;
using Alloy.Synthetic;
using Alloy.Tests.Support;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Tests.Tokenizers.Encoding;

/// <summary>
/// Alloy's encoder against Hugging Face's tokenizers run live (Node): seeded random texts built from the pieces where
/// tokenizers differ (whitespace runs, CRLF, digits, contractions, astral letters, emoji with modifiers and joiners,
/// combining marks, special tokens and fragments of them), and the tokenizer Alloy's synthetic models ship.
/// </summary>
public sealed class LiveComparisonTests
{
    private static readonly string[] Fragments =
    [
        "a",
        "b",
        "Z",
        "hello",
        "World",
        "é",
        "e\u0301",
        "\u0301",
        " ",
        "  ",
        "   ",
        "\n",
        "\n\n",
        "\r\n",
        "\r",
        "\t",
        "1",
        "23",
        "4567",
        "'s",
        "'T",
        "'ll",
        "?",
        "!!",
        ".",
        ",",
        "-",
        "_",
        "(",
        "\"",
        "\\",
        "$",
        "€",
        "<s>",
        "</s>",
        "<unk>",
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|begin_of_text|>",
        "<mask>",
        "[TOOL]",
        "cat",
        "Hello World",
        "<",
        "|",
        ">",
        "\u00a0",
        "\u3000",
        "\u2028",
        "中",
        "文字",
        "ひらがな",
        "한국",
        "Привет",
        "مرحبا",
        "\U0001d400",
        "\U0001d41a\U0001d41b",
        "\U00020000",
        "\U0001f600",
        "\U0001f44d\U0001f3fd",
        "\u200d",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",
        "\U0001f1fa\U0001f1f8",
        "\ufe0f",
        "\ufb01",
        "\u00b2",
        "\u0661\u0662",
        "\uff11",
        "\u03a9",
        "\u00df",
        "\u0130",
        "\u2581",
        "\u2581\u2581",
        "<0x41>",
        "\u200b",
        "\ufeff",
        "\u001f",
        "\U0001d7ce",
    ];

    /// <summary>Deterministic texts of 1 to 24 fragments.</summary>
    public static string[] RandomTexts(int count, int seed)
    {
        var random = new Random(seed);
        return Enumerable
            .Range(0, count)
            .Select(_ =>
            {
                var text = new StringBuilder();
                for (int n = random.Next(1, 25); n > 0; n--)
                    text.Append(Fragments[random.Next(Fragments.Length)]);
                return text.ToString();
            })
            .ToArray();
    }

    [Theory]
    [MemberData(nameof(HuggingFaceFixtureTests.Tokenizers), MemberType = typeof(HuggingFaceFixtureTests))]
    public void Random_texts_match_Hugging_Face(string name)
    {
        var texts = RandomTexts(150, seed: name.Length * 7919 + name[0]);
        var tokenizer = HuggingFaceFixtureTests.Load(name);
        Compare(name, tokenizer, Path.Combine(NodeTools.TokenizerFiles, name, "tokenizer.json"), texts);
    }

    [Fact]
    public void The_synthetic_models_tokenizer_matches_Hugging_Face()
    {
        using var folder = new TempFolder();
        ByteTokenizer.Write(
            folder.Path,
            300,
            new TokenizerExtras
            {
                Merges = ["h e", "l l", "he ll", "Ġ t"],
                AddedTokens = ["<|im_start|>", "<|im_end|>"],
            }
        );
        var tokenizer = TextTokenizer.Load(folder.Path);
        Compare(
            "synthetic",
            tokenizer,
            folder["tokenizer.json"],
            [.. HuggingFaceFixtureTests.Texts.Value.Where(t => t.Length > 0), .. RandomTexts(100, 5)]
        );

        Assert.Equal(ByteTokenizer.BosId, tokenizer.Special.Bos);
        Assert.Equal(ByteTokenizer.EosId, tokenizer.Special.Eos);
        Assert.Equal(ByteTokenizer.PadId, tokenizer.Special.Pad);
        Assert.Equal(ByteTokenizer.UnkId, tokenizer.Special.Unk);
        Assert.Equal([ByteTokenizer.EosId], tokenizer.Special.Stop);
        // "hell" is one merged token; the text round-trips; <s> is special and skipped when asked.
        Assert.Equal([tokenizer.TokenToId("hell")!.Value, 'o'], tokenizer.Encode("hello", addSpecialTokens: false));
        Assert.Equal([ByteTokenizer.BosId], tokenizer.PrefixTokens);
        Assert.Equal("<s>hello wörld", tokenizer.Decode(tokenizer.Encode("hello wörld")));
        Assert.Equal("hello", tokenizer.Decode(tokenizer.Encode("<s>hello</s>"), skipSpecialTokens: true));
    }

    [Fact]
    public void Word_suffixes_and_subword_prefixes_match_Hugging_Face()
    {
        // A CLIP-like model (end_of_word_suffix, BPEDecoder) and a prefix one (continuing_subword_prefix), made here.
        var letters = "abcdefghijklmnopqrstuvwxyz".Select(c => c.ToString()).ToList();
        using var folder = new TempFolder();
        foreach (
            var (name, vocabulary, merges, setting, value) in new[]
            {
                (
                    "suffix",
                    letters
                        .Concat(letters.Select(l => l + "</w>"))
                        .Concat(["he", "ll", "llo</w>", "hello</w>", "wo", "wor", "ld</w>", "world</w>"]),
                    new[] { "h e", "l l", "ll o</w>", "he llo</w>", "w o", "wo r", "l d</w>", "wor ld</w>" },
                    "end_of_word_suffix",
                    "</w>"
                ),
                (
                    "prefix",
                    letters
                        .Concat(letters.Select(l => "##" + l))
                        .Concat(["he", "hel", "hell", "hello", "##ll", "##llo", "wo", "wor", "worl", "world"]),
                    new[]
                    {
                        "h ##e",
                        "he ##l",
                        "hel ##l",
                        "hell ##o",
                        "##l ##l",
                        "##ll ##o",
                        "w ##o",
                        "wo ##r",
                        "wor ##l",
                        "worl ##d",
                    },
                    "continuing_subword_prefix",
                    "##"
                ),
            }
        )
        {
            var vocab = new JsonObject();
            foreach (var token in vocabulary.Distinct())
                vocab[token] = vocab.Count;
            var json = new JsonObject
            {
                ["version"] = "1.0",
                ["added_tokens"] = new JsonArray(),
                ["normalizer"] = new JsonObject { ["type"] = "Lowercase" },
                ["pre_tokenizer"] = new JsonObject { ["type"] = "WhitespaceSplit" },
                ["post_processor"] = null,
                ["decoder"] = name == "suffix" ? new JsonObject { ["type"] = "BPEDecoder", ["suffix"] = "</w>" } : null,
                ["model"] = new JsonObject
                {
                    ["type"] = "BPE",
                    [setting] = value,
                    ["vocab"] = vocab,
                    ["merges"] = new JsonArray([.. merges.Select(m => (JsonNode)m)]),
                },
            };
            var path = folder.Write($"{name}/tokenizer.json", json.ToJsonString());
            var tokenizer = TextTokenizer.Load(Path.GetDirectoryName(path)!);
            Compare(
                name,
                tokenizer,
                path,
                ["hello world", "Hello   World hell", "world hello worlds", "wohelloorld", "abc xyz", "h e l l o"]
            );
            if (name == "suffix")
                Assert.Equal("hello world", tokenizer.Decode(tokenizer.Encode("Hello  world")));
        }
    }

    private static void Compare(string name, TextTokenizer tokenizer, string tokenizerJson, string[] texts)
    {
        // Command lines cannot carry NUL; none of the texts has one.
        var expected = NodeTools.Encode(tokenizerJson, texts).Encodings;
        var failures = new List<string>();
        for (int i = 0; i < texts.Length; i++)
            HuggingFaceFixtureTests.Check(
                failures,
                texts[i],
                "ids",
                expected[i].Ids,
                tokenizer.Encode(texts[i], addSpecialTokens: false)
            );
        Assert.True(
            failures.Count == 0,
            $"{name}: {failures.Count} of {texts.Length} texts differ from Hugging Face:\n"
                + string.Join("\n", failures.Take(10))
        );
    }
}
