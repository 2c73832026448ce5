using System.Text.Json.Nodes;
using Alloy.Synthetic;
using Alloy.Tests.Support;
using Alloy.Tokenizers;

namespace Alloy.Tests.Tokenizers;

public sealed class TokenizerDocumentTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    private string ByteTokenizerFile(TokenizerExtras? extras = null, int vocabSize = 260)
    {
        var folder = _work[Guid.NewGuid().ToString("N")[..6]];
        Directory.CreateDirectory(folder);
        ByteTokenizer.Write(folder, vocabSize, extras);
        return Path.Combine(folder, "tokenizer.json");
    }

    /// <summary>
    /// A SentencePiece Unigram tokenizer as transformers saves one (T5/XLNet style), written by hand.
    /// </summary>
    private const string UnigramJson = """
        {
          "version": "1.0",
          "truncation": null,
          "padding": null,
          "added_tokens": [
            {"id": 0, "content": "<pad>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 2, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
          ],
          "normalizer": null,
          "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
          "post_processor": null,
          "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
          "model": {
            "type": "Unigram",
            "unk_id": 2,
            "vocab": [["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0], ["▁", -2.0], ["▁hello", -3.0], ["▁world", -3.5],
                      ["h", -5.0], ["e", -5.0], ["l", -5.0], ["o", -5.0], ["w", -5.0], ["r", -5.0], ["d", -5.0], ["▁unused", -9.0]],
            "byte_fallback": false
          }
        }
        """;

    /// <summary>A BERT-style WordPiece tokenizer, written by hand.</summary>
    private const string WordPieceJson = """
        {
          "version": "1.0",
          "truncation": null,
          "padding": null,
          "added_tokens": [
            {"id": 0, "content": "[PAD]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
          ],
          "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
          "pre_tokenizer": {"type": "BertPreTokenizer"},
          "post_processor": null,
          "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
          "model": {
            "type": "WordPiece",
            "unk_token": "[UNK]",
            "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
            "vocab": {"[PAD]": 0, "[UNK]": 1, "hello": 2, "world": 3, "play": 4, "##ing": 5, "##ed": 6}
          }
        }
        """;

    [Fact]
    public void The_generated_byte_level_tokenizer_reads_as_bpe_with_its_added_tokens_and_merges()
    {
        var document = TokenizerDocument.Load(
            ByteTokenizerFile(new TokenizerExtras { Merges = ["h e", "l l"], AddedTokens = ["<|im_start|>"] }, 262)
        );
        Assert.Equal(TokenizerModelKind.Bpe, document.Kind);
        Assert.Equal(262, document.ModelVocabulary.Count);
        Assert.Equal(260, document.ModelVocabulary["he"]);
        Assert.Equal(261, document.ModelVocabulary["ll"]);
        Assert.Equal([("h", "e"), ("l", "l")], document.Merges);
        Assert.Equal(["<s>", "</s>", "<pad>", "<unk>", "<|im_start|>"], document.AddedTokens.Select(t => t.Content));
        Assert.Equal(
            new AddedToken(262, "<|im_start|>", Special: true, Normalized: false),
            document.AddedTokens.Last()
        );
        Assert.Equal(263, document.Vocabulary.Count);
        Assert.Equal(263, document.NextId);
    }

    [Fact]
    public void Writing_an_unchanged_document_gives_the_same_json()
    {
        var path = ByteTokenizerFile(new TokenizerExtras { Merges = ["h e"], AddedTokens = ["<x>"] });
        TokenizerDocument.Load(path).Write(_work["again.json"]);
        Assert.True(
            JsonNode.DeepEquals(
                JsonNode.Parse(File.ReadAllText(path)),
                JsonNode.Parse(File.ReadAllText(_work["again.json"]))
            )
        );
    }

    [Fact]
    public void Stripping_removes_tokens_past_vocab_size_and_the_merges_that_use_or_make_them()
    {
        // ids: bytes 0-255, specials 256-259, "he" 260, "ll" 261, "hel" 262; added "<a>" 263
        var document = TokenizerDocument.Load(
            ByteTokenizerFile(new TokenizerExtras { Merges = ["h e", "l l", "he l"], AddedTokens = ["<a>"] })
        );
        Assert.Equal(3, document.Strip(261));
        Assert.Equal(261, document.ModelVocabulary.Count);
        Assert.False(document.Vocabulary.ContainsKey("ll"));
        Assert.False(document.Vocabulary.ContainsKey("<a>"));
        Assert.Equal([("h", "e")], document.Merges);
        Assert.Equal(261, document.NextId);
        Assert.Equal(0, document.Strip(300));
    }

    [Fact]
    public void An_added_token_already_in_the_vocabulary_keeps_its_id_and_a_new_one_takes_the_next()
    {
        var document = TokenizerDocument.Load(ByteTokenizerFile());
        var existing = document.AddAddedToken(AddedToken.Plain(0, "a"));
        Assert.Equal(97, existing.Id);
        var fresh = document.AddAddedToken(new AddedToken(0, "<new>", Special: true, Normalized: false));
        Assert.Equal(260, fresh.Id);
        // The first registration wins.
        Assert.Same(fresh, document.AddAddedToken(AddedToken.Plain(5, "<new>")));
        Assert.Equal(261, document.AddModelToken("xy"));
        Assert.Equal(261, document.Vocabulary["xy"]);
    }

    [Fact]
    public void Merges_keep_their_form_and_switch_to_pairs_when_a_part_has_a_space()
    {
        var document = TokenizerDocument.Load(ByteTokenizerFile(new TokenizerExtras { Merges = ["h e"] }));
        document.AddModelToken("a b");
        document.AddModelToken("a bc");
        document.AddModelToken("c");
        Assert.True(document.AddMerge("a b", "c"));
        Assert.False(document.AddMerge("a b", "c"));
        Assert.False(document.AddMerge("q", "z")); // "qz" is not in the vocabulary
        document.Write(_work["out.json"]);
        var merges = JsonNode.Parse(File.ReadAllText(_work["out.json"]))!["model"]!["merges"]!.AsArray();
        Assert.Equal("""[["h","e"],["a b","c"]]""", merges.ToJsonString());
        Assert.Equal([("h", "e"), ("a b", "c")], TokenizerDocument.Load(_work["out.json"]).Merges);
    }

    [Fact]
    public void A_unigram_vocabulary_is_positional_and_strips_by_truncation()
    {
        var path = _work.Write("unigram.json", UnigramJson);
        var document = TokenizerDocument.Load(path);
        Assert.Equal(TokenizerModelKind.Unigram, document.Kind);
        Assert.Equal(4, document.ModelVocabulary["▁hello"]);
        Assert.Equal(1, document.Strip(13));
        Assert.False(document.Vocabulary.ContainsKey("▁unused"));
        Assert.Throws<InvalidOperationException>(() => document.AddModelToken("▁new"));
        Assert.Equal(13, document.AddAddedToken(new AddedToken(0, "<sep>", Special: true, Normalized: false)).Id);
        document.Write(_work["unigram-out.json"]);

        var again = TokenizerDocument.Load(_work["unigram-out.json"]);
        Assert.Equal(document.Vocabulary, again.Vocabulary);
        var result = NodeTools.Encode(_work["unigram-out.json"], "hello<sep>world");
        Assert.Equal(14, result.VocabSize);
        Assert.Equal([4, 13, 5], result.Encodings[0].Ids);
    }

    [Fact]
    public void A_wordpiece_vocabulary_takes_new_tokens_and_hugging_face_reads_the_result()
    {
        var path = _work.Write("wordpiece.json", WordPieceJson);
        var document = TokenizerDocument.Load(path);
        Assert.Equal(TokenizerModelKind.WordPiece, document.Kind);
        Assert.Equal(7, document.AddModelToken("##s"));
        Assert.Equal(8, document.AddAddedToken(new AddedToken(0, "[NEW]", Special: true, Normalized: false)).Id);
        document.Write(_work["wordpiece-out.json"]);

        var result = NodeTools.Encode(_work["wordpiece-out.json"], "hello [NEW] plays played");
        Assert.Equal(9, result.VocabSize);
        Assert.Equal([2, 8, 4, 7, 4, 6], result.Encodings[0].Ids);
    }

    [Fact]
    public void A_file_without_a_model_type_is_recognised_by_its_shape()
    {
        var node = JsonNode.Parse(File.ReadAllText(ByteTokenizerFile()))!;
        node["model"]!.AsObject().Remove("type");
        var path = _work.Write("old.json", node.ToJsonString());
        Assert.Equal(TokenizerModelKind.Bpe, TokenizerDocument.Load(path).Kind);
    }

    [Theory]
    [InlineData("{\"model\": {\"type\": \"BPE\"}}", "no 'model' with a 'vocab'")]
    [InlineData(
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}",
        "vocab tokens 'a' and 'b' share id 0"
    )]
    [InlineData(
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}",
        "vocab token 'a' must have a non-negative whole-number id"
    )]
    [InlineData(
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b c\"]}}",
        "BPE merge 0 must be"
    )]
    [InlineData("{\"model\": {\"type\": \"Magic\", \"vocab\": {}}}", "tokenizer model type 'Magic' is not supported")]
    [InlineData(
        "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\"]]}}",
        "Unigram vocab entry 0 must be [piece, score]"
    )]
    [InlineData(
        "{\"added_tokens\": [{\"content\": \"x\"}], \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}",
        "an entry of 'added_tokens' needs a non-negative 'id'"
    )]
    [InlineData("{\"model\": ", "invalid JSON at line 1")]
    public void Malformed_files_are_refused_with_the_file_and_the_problem(string json, string expected)
    {
        var path = _work.Write("bad/tokenizer.json", json);
        var error = Assert.Throws<AlloyException>(() => TokenizerDocument.Load(path));
        Assert.Contains(path, error.Message);
        Assert.Contains(expected, error.Message);
    }
}
