using System.Text.Json.Nodes;
using Alloy.Synthetic;
using Alloy.Tests.Support;
using Alloy.Tokenizers;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Tests.Tokenizers.Encoding;

/// <summary>
/// Special-token ids from the config files, transformers' Llama template, unsupported components and the pieces
/// underneath.
/// </summary>
public sealed class TextTokenizerTests
{
    [Fact]
    public void Special_ids_come_from_the_tokenizer_config_files()
    {
        var llama2 = HuggingFaceFixtureTests.Load("llama2");
        Assert.Equal(
            (1, 2, (int?)null, 0),
            (llama2.Special.Bos, llama2.Special.Eos, llama2.Special.Pad, llama2.Special.Unk)
        );
        Assert.Equal([2], llama2.Special.Stop);
        var llama3 = HuggingFaceFixtureTests.Load("llama3");
        Assert.Equal((128000, 128001), (llama3.Special.Bos, llama3.Special.Eos));
        var qwen = HuggingFaceFixtureTests.Load("qwen");
        Assert.Null(qwen.Special.Bos);
        Assert.Equal((151645, 151643), (qwen.Special.Eos, qwen.Special.Pad));
        Assert.True(qwen.IsSpecial(151644));
        Assert.Equal("<|im_start|>", qwen.IdToToken(151644));
        Assert.Equal(151644, qwen.TokenToId("<|im_start|>"));
        Assert.Equal(151643 + 26, qwen.IdSpan); // the vocabulary and Qwen3's 26 added tokens
    }

    [Fact]
    public void Generation_config_supplies_the_stop_ids_and_missing_special_tokens()
    {
        using var folder = SyntheticTokenizer();
        File.WriteAllText(
            folder["tokenizer_config.json"],
            """{"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": {"content": "</s>", "special": true}}"""
        );
        File.Delete(folder["special_tokens_map.json"]);
        File.WriteAllText(
            folder["generation_config.json"],
            """{"bos_token_id": 256, "eos_token_id": [257, 258], "pad_token_id": 259}"""
        );
        var special = TextTokenizer.Load(folder.Path).Special;
        Assert.Equal((256, 257, 259, (int?)null), (special.Bos, special.Eos, special.Pad, special.Unk));
        Assert.Equal([257, 258], special.Stop);
    }

    [Fact]
    public void Llama_tokenizer_classes_take_bos_and_eos_from_add_bos_token_and_add_eos_token()
    {
        using var folder = SyntheticTokenizer();
        var config = JsonNode.Parse(File.ReadAllText(folder["tokenizer_config.json"]))!.AsObject();
        config["tokenizer_class"] = "LlamaTokenizerFast";
        config["add_eos_token"] = true;
        File.WriteAllText(folder["tokenizer_config.json"], config.ToJsonString());
        // The file's post-processor adds nothing; transformers' Llama template adds BOS (default) and EOS (asked for).
        Assert.Equal(
            [ByteTokenizer.BosId, 'h', 'i', ByteTokenizer.EosId],
            TextTokenizer.Load(folder.Path).Encode("hi")
        );

        config["add_bos_token"] = false;
        config["add_eos_token"] = false;
        File.WriteAllText(folder["tokenizer_config.json"], config.ToJsonString());
        Assert.Equal(['h', 'i'], TextTokenizer.Load(folder.Path).Encode("hi"));
    }

    [Theory]
    [InlineData(
        "normalizer",
        """{"type": "BertNormalizer", "lowercase": true}""",
        "normalizer 'BertNormalizer' is not supported"
    )]
    [InlineData(
        "normalizer",
        """{"type": "Precompiled", "precompiled_charsmap": ""}""",
        "normalizer 'Precompiled' is not supported"
    )]
    [InlineData(
        "pre_tokenizer",
        """{"type": "BertPreTokenizer"}""",
        "pre-tokenizer 'BertPreTokenizer' is not supported"
    )]
    [InlineData("decoder", """{"type": "WordPiece", "prefix": "##"}""", "decoder 'WordPiece' is not supported")]
    [InlineData("post_processor", """{"type": "Nonsense"}""", "post-processor 'Nonsense' is not supported")]
    [InlineData(
        "pre_tokenizer",
        """{"type": "Split", "pattern": {"Regex": "a++"}, "behavior": "Isolated", "invert": false}""",
        "does not compile in .NET"
    )]
    [InlineData(
        "pre_tokenizer",
        """{"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Sideways", "invert": false}""",
        "Split behavior 'Sideways' is unknown"
    )]
    [InlineData(
        "post_processor",
        """{"type": "TemplateProcessing", "single": ["<x>", "$A"], "special_tokens": {}}""",
        "special token '<x>'"
    )]
    public void Unsupported_or_broken_components_are_refused_in_one_line(string key, string json, string message)
    {
        using var folder = SyntheticTokenizer();
        var tokenizer = JsonNode.Parse(File.ReadAllText(folder["tokenizer.json"]))!.AsObject();
        tokenizer[key] = JsonNode.Parse(json);
        File.WriteAllText(folder["tokenizer.json"], tokenizer.ToJsonString());
        var e = Assert.Throws<AlloyException>(() => TextTokenizer.Load(folder.Path));
        Assert.Contains(message, e.Message);
        Assert.Contains("tokenizer.json", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void Other_models_and_missing_files_are_refused()
    {
        using var folder = new TempFolder();
        Assert.Contains(
            "no tokenizer.json",
            Assert.Throws<AlloyException>(() => TextTokenizer.Load(folder.Path)).Message
        );
        folder.Write(
            "tokenizer.json",
            """{"model": {"type": "Unigram", "vocab": [["<unk>", 0], ["a", -1]]}, "added_tokens": []}"""
        );
        Assert.Contains(
            "Unigram tokenizer model cannot encode",
            Assert.Throws<AlloyException>(() => TextTokenizer.Load(folder.Path)).Message
        );
    }

    [Fact]
    public void Encoding_on_many_threads_gives_the_ids_of_one_thread()
    {
        var tokenizer = HuggingFaceFixtureTests.Load("qwen");
        var texts = LiveComparisonTests.RandomTexts(400, seed: 11);
        var expected = texts.Select(t => tokenizer.Encode(t)).ToArray();
        var parallel = new int[texts.Length][];
        Parallel.For(0, texts.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
            parallel[i] = tokenizer.Encode(texts[i])
        );
        for (int i = 0; i < texts.Length; i++)
            Assert.Equal(expected[i], parallel[i]);
    }

    [Fact]
    public void Unpaired_surrogates_encode_as_the_replacement_character()
    {
        var tokenizer = HuggingFaceFixtureTests.Load("llama3");
        Assert.Equal(tokenizer.Encode("a\uFFFDb\uFFFD"), tokenizer.Encode("a\uD800b\uDC00"));
    }

    [Fact]
    public void Long_words_and_texts_encode_to_what_their_pieces_encode_to()
    {
        // A word of 20,000 characters goes through the merge queue once (no cache: it is longer than the cache keeps).
        var tokenizer = HuggingFaceFixtureTests.Load("llama2");
        var word = string.Concat(Enumerable.Repeat("abcdefghij", 2000));
        var ids = tokenizer.Encode(word, addSpecialTokens: false);
        Assert.Equal(word, tokenizer.Decode(ids));
        Assert.InRange(ids.Length, 2000, 20000);
    }

    [Fact]
    public void The_regex_sees_code_points_outside_the_basic_plane()
    {
        var letters = new UnicodeRegex(@"\p{L}+", "test");
        var other = new UnicodeRegex(@"[^\s\p{L}\p{N}]+", "test");
        var matches = new PooledList<(int Start, int Length)>();
        try
        {
            letters.Matches("x𝐀𠀀y 😀", ref matches);
            Assert.Equal([(0, 6)], matches.Span.ToArray());
            matches.Dispose();
            other.Matches("a😀👍🏽b", ref matches);
            Assert.Equal([(1, 6)], matches.Span.ToArray());
        }
        finally
        {
            matches.Dispose();
        }
        Assert.Equal("a_b_", new UnicodeRegex(@"\p{So}", "test").Replace("a😀b👍", "_"));
    }

    [Fact]
    public void Normalization_uses_ICU_where_globalization_is_invariant()
    {
        Assert.True(UnicodeNormalization.Available);
        Assert.Equal("\u00e9", UnicodeNormalization.Normalize("e\u0301", System.Text.NormalizationForm.FormC));
        Assert.Equal("e\u0301", UnicodeNormalization.Normalize("\u00e9", System.Text.NormalizationForm.FormD));
        Assert.Equal("fi1", UnicodeNormalization.Normalize("\ufb01\u2460", System.Text.NormalizationForm.FormKC));
        Assert.Equal("plain", UnicodeNormalization.Normalize("plain", System.Text.NormalizationForm.FormKD));
    }

    [Fact]
    public void The_byte_alphabet_is_gpt2s()
    {
        Assert.Equal('Ġ', ByteLevelAlphabet.ToChar((byte)' '));
        Assert.Equal('Ċ', ByteLevelAlphabet.ToChar((byte)'\n'));
        Assert.Equal('A', ByteLevelAlphabet.ToChar((byte)'A'));
        for (int b = 0; b < 256; b++)
            Assert.Equal(b, ByteLevelAlphabet.ToByte(ByteLevelAlphabet.ToChar((byte)b)));
        Assert.Equal(-1, ByteLevelAlphabet.ToByte('中'));
    }

    private static TempFolder SyntheticTokenizer()
    {
        var folder = new TempFolder();
        ByteTokenizer.Write(folder.Path, ByteTokenizer.MinimumVocabSize);
        return folder;
    }
}
