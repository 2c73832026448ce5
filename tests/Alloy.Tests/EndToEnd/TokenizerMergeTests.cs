using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// Merges of models whose vocabularies differ (mergekit's tokenizer tests, and more): the output vocabulary and ids,
/// config.json's vocab_size, the written tokenizer files (re-read, and loaded by Hugging Face's tokenizers), and every
/// row of every embedding against the layout rule restated in <see cref="Expectation"/>.
/// </summary>
public sealed class TokenizerMergeTests : IClassFixture<TokenizerFamily>, IDisposable
{
    private const string Embed = "model.embed_tokens.weight",
        Head = "lm_head.weight";
    private static readonly int Hidden = TokenizerFamily.Spec.HiddenSize;
    private readonly TokenizerFamily _models;
    private readonly TempFolder _work = new();

    public TokenizerMergeTests(TokenizerFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    private string Out => _work["out"];

    private string Config(string body) => _work.Write("config.yml", body);

    private static JsonNode ReadJson(string path) => JsonNode.Parse(File.ReadAllText(path))!;

    private string[] BaseTokens => TokenizerFamily.TokensById(Path.Combine(_models.Base, "tokenizer.json"));

    /// <summary>mergekit's embedding layout, restated independently of Alloy's code.</summary>
    private sealed class Expectation
    {
        public required string[] Vocabulary { get; init; }
        public required IReadOnlyList<string> Inputs { get; init; }
        public string? Base { get; init; }
        public int? Rows { get; init; }
        public HashSet<string> Forced { get; init; } = [];

        /// <summary>Configured sources: token → (tensor → row).</summary>
        public Dictionary<string, Func<string, double[]>> Sources { get; init; } = [];

        private int RowCount => Rows ?? Vocabulary.Length;

        private static readonly ConcurrentDictionary<(string, string), float[]> Tensors = new();
        private static readonly ConcurrentDictionary<string, Dictionary<string, int>> Vocabularies = new();

        public static double[] Row(string folder, string tensor, int row) =>
            Tensors
                .GetOrAdd((folder, tensor), k => TestCheckpoints.Read(k.Item1, k.Item2))
                .AsSpan(row * Hidden, Hidden)
                .ToArray()
                .Select(v => (double)v)
                .ToArray();

        private static Dictionary<string, int> VocabularyOf(string folder) =>
            Vocabularies.GetOrAdd(folder, TokenizerFamily.Vocabulary);

        /// <summary>One input's [rows, hidden] matrix over the output vocabulary.</summary>
        public double[][] LaidOut(string folder, string tensor)
        {
            var own = VocabularyOf(folder);
            var rows = new double[RowCount][];
            for (int id = 0; id < Vocabulary.Length; id++)
            {
                var token = Vocabulary[id];
                rows[id] =
                    own.TryGetValue(token, out var ownId) && !Forced.Contains(token) ? Row(folder, tensor, ownId)
                    : Sources.TryGetValue(token, out var source) ? source(tensor)
                    : Default(token, tensor);
            }
            var mean = Enumerable
                .Range(0, Hidden)
                .Select(j => rows.Take(Vocabulary.Length).Average(r => r[j]))
                .ToArray();
            for (int id = Vocabulary.Length; id < RowCount; id++)
                rows[id] = mean;
            return rows;
        }

        private double[] Default(string token, string tensor)
        {
            var holders = Inputs.Distinct().Where(m => VocabularyOf(m).ContainsKey(token)).ToList();
            if (holders.Count == 0)
                return new double[Hidden];
            if (holders.Count == 1)
                return Row(holders[0], tensor, VocabularyOf(holders[0])[token]);
            if (Base is not null && holders.Contains(Base))
                return Row(Base, tensor, VocabularyOf(Base)[token]);
            var rows = holders.Select(m => Row(m, tensor, VocabularyOf(m)[token])).ToList();
            return Enumerable.Range(0, Hidden).Select(j => rows.Average(r => r[j])).ToArray();
        }

        /// <summary>A normalized linear merge of the laid-out inputs, flattened.</summary>
        public double[] Linear(string tensor, params double[] weights)
        {
            var laid = Inputs.Select(m => LaidOut(m, tensor)).ToList();
            double total = weights.Sum();
            return Enumerable
                .Range(0, RowCount * Hidden)
                .Select(e =>
                    Enumerable.Range(0, laid.Count).Sum(i => weights[i] * laid[i][e / Hidden][e % Hidden]) / total
                )
                .ToArray();
        }
    }

    private void CheckTensor(string tensor, double[] expected)
    {
        var actual = TestCheckpoints.Read(Out, tensor);
        Expect.Close(tensor, expected, actual, DType.F32, 4);
    }

    private string FourModelLinear(string tokenizerSettings) =>
        Config(
            TokenizerFamily.LinearRecipe(
                _models.Base,
                tokenizerSettings,
                (_models.Base, 0.4),
                (_models.ChatMl, 0.3),
                (_models.Padded, 0.2),
                (_models.Merges, 0.1)
            )
        );

    private IReadOnlyList<string> FourModels => [_models.Base, _models.ChatMl, _models.Padded, _models.Merges];

    [Fact]
    public void Union_appends_other_models_tokens_in_config_order_then_added_tokens_and_merges_every_row_by_the_rule()
    {
        var result = AlloyCli.Merge(FourModelLinear("tokenizer_source: union"), Out);
        Assert.DoesNotContain("shapes differ", result.Stderr);

        // Vocabulary tokens first (merges' "he", "ll"), then added tokens (chatml's); the padded model's unused tokens
        // are not.
        string[] vocabulary = [.. BaseTokens, "he", "ll", "<|im_start|>", "<|im_end|>"];
        Assert.Equal(vocabulary, TokenizerFamily.TokensById(Path.Combine(Out, "tokenizer.json")));
        Assert.Equal(264, (int)ReadJson(Path.Combine(Out, "config.json"))["vocab_size"]!);

        var expectation = new Expectation
        {
            Vocabulary = vocabulary,
            Inputs = FourModels,
            Base = _models.Base,
        };
        CheckTensor(Embed, expectation.Linear(Embed, 0.4, 0.3, 0.2, 0.1));
        CheckTensor(Head, expectation.Linear(Head, 0.4, 0.3, 0.2, 0.1));
        // A token only one model has takes that model's row in every model, so the merge reproduces it.
        Expect.Close(
            "he",
            Expectation.Row(_models.Merges, Embed, 260),
            TestCheckpoints.Read(Out, Embed).AsSpan(260 * Hidden, Hidden).ToArray(),
            DType.F32,
            1
        );
        Expect.Close(
            "<|im_end|>",
            Expectation.Row(_models.ChatMl, Head, 261),
            TestCheckpoints.Read(Out, Head).AsSpan(263 * Hidden, Hidden).ToArray(),
            DType.F32,
            1
        );
    }

    [Fact]
    public void The_union_tokenizer_files_describe_the_new_vocabulary_and_hugging_face_tokenizers_encodes_with_it()
    {
        AlloyCli.Merge(FourModelLinear("tokenizer_source: union"), Out);

        var tokenizer = ReadJson(Path.Combine(Out, "tokenizer.json"));
        Assert.Equal(["h e", "l l"], tokenizer["model"]!["merges"]!.AsArray().Select(m => (string)m!));
        var added = tokenizer["added_tokens"]!
            .AsArray()
            .Select(t => ((int)t!["id"]!, (string)t["content"]!, (bool)t["special"]!))
            .ToList();
        Assert.Equal(
            [
                (256, "<s>", true),
                (257, "</s>", true),
                (258, "<pad>", true),
                (259, "<unk>", true),
                (262, "<|im_start|>", true),
                (263, "<|im_end|>", true),
            ],
            added
        );
        // Everything else is the base's tokenizer.json as it was.
        var baseTokenizer = ReadJson(Path.Combine(_models.Base, "tokenizer.json"));
        foreach (var key in new[] { "normalizer", "pre_tokenizer", "post_processor", "decoder" })
            Assert.True(JsonNode.DeepEquals(baseTokenizer[key], tokenizer[key]), key);

        var config = ReadJson(Path.Combine(Out, "tokenizer_config.json"));
        Assert.Equal(
            ["256", "257", "258", "259", "262", "263"],
            config["added_tokens_decoder"]!.AsObject().Select(e => e.Key)
        );
        Assert.Equal("<|im_end|>", (string)config["added_tokens_decoder"]!["263"]!["content"]!);
        Assert.Equal("</s>", (string)config["eos_token"]!);
        Assert.True(
            JsonNode.DeepEquals(
                ReadJson(Path.Combine(_models.Base, "special_tokens_map.json")),
                ReadJson(Path.Combine(Out, "special_tokens_map.json"))
            )
        );

        // Hugging Face's own library reads it, matches the new added tokens and applies the new merges.
        var encoded = NodeTools.Encode(
            Path.Combine(Out, "tokenizer.json"),
            "<|im_start|>user\nhello<|im_end|>",
            "hell"
        );
        Assert.Equal(264, encoded.VocabSize);
        Assert.Equal(new int[] { 262, 'u', 's', 'e', 'r', '\n', 260, 261, 'o', 263 }, encoded.Encodings[0].Ids);
        Assert.Equal(new int[] { 260, 261 }, encoded.Encodings[1].Ids);
    }

    [Fact]
    public void Source_base_keeps_the_base_tokenizer_files_and_trims_larger_embeddings_to_its_vocabulary()
    {
        var result = AlloyCli.Merge(FourModelLinear("tokenizer_source: base"), Out);
        Assert.DoesNotContain("shapes differ", result.Stderr);
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json" })
            Assert.Equal(
                File.ReadAllBytes(Path.Combine(_models.Base, file)),
                File.ReadAllBytes(Path.Combine(Out, file))
            );
        Assert.Equal(260, (int)ReadJson(Path.Combine(Out, "config.json"))["vocab_size"]!);
        var expectation = new Expectation
        {
            Vocabulary = BaseTokens,
            Inputs = FourModels,
            Base = _models.Base,
        };
        CheckTensor(Embed, expectation.Linear(Embed, 0.4, 0.3, 0.2, 0.1));
    }

    [Fact]
    public void A_base_whose_tokenizer_has_tokens_past_vocab_size_is_stripped_of_them()
    {
        AlloyCli.Merge(
            Config(
                TokenizerFamily.LinearRecipe(
                    _models.Padded,
                    "tokenizer_source: base",
                    (_models.Padded, 1),
                    (_models.ChatMl, 1)
                )
            ),
            Out
        );
        var tokens = TokenizerFamily.TokensById(Path.Combine(Out, "tokenizer.json"));
        Assert.Equal(BaseTokens, tokens);
        Assert.DoesNotContain("<UNUSED_0>", File.ReadAllText(Path.Combine(Out, "tokenizer_config.json")));
        Assert.Equal(260, (int)ReadJson(Path.Combine(Out, "config.json"))["vocab_size"]!);
        var expectation = new Expectation
        {
            Vocabulary = tokens,
            Inputs = [_models.Padded, _models.ChatMl],
            Base = _models.Padded,
        };
        CheckTensor(Head, expectation.Linear(Head, 1, 1));
    }

    [Fact]
    public void A_model_as_source_gives_its_vocabulary_and_pad_to_multiple_of_pads_rows_with_each_models_mean_row()
    {
        AlloyCli.Merge(
            Config(
                TokenizerFamily.LinearRecipe(
                    null,
                    $"""
                    tokenizer:
                      source: {_models.ChatMl}
                      pad_to_multiple_of: 16
                    """,
                    (_models.Base, 0.5),
                    (_models.ChatMl, 0.5)
                )
            ),
            Out
        );
        // The source's files are used as they are.
        Assert.Equal(
            File.ReadAllBytes(Path.Combine(_models.ChatMl, "tokenizer.json")),
            File.ReadAllBytes(Path.Combine(Out, "tokenizer.json"))
        );
        Assert.Equal(272, (int)ReadJson(Path.Combine(Out, "config.json"))["vocab_size"]!);
        var tokens = TokenizerFamily.TokensById(Path.Combine(Out, "tokenizer.json"));
        Assert.Equal(262, tokens.Length);
        var expectation = new Expectation
        {
            Vocabulary = tokens,
            Inputs = [_models.Base, _models.ChatMl],
            Rows = 272,
        };
        CheckTensor(Embed, expectation.Linear(Embed, 0.5, 0.5));
        CheckTensor(Head, expectation.Linear(Head, 0.5, 0.5));
        Assert.Equal(272 * Hidden, TestCheckpoints.Read(Out, Embed).Length);
    }

    [Fact]
    public void Token_settings_force_rows_take_rows_by_token_or_id_zero_rows_and_add_tokens()
    {
        var result = AlloyCli.Merge(
            FourModelLinear(
                $$"""
                tokenizer:
                  source: union
                  tokens:
                    a:
                      source: {{_models.ChatMl}}
                      force: true
                    b:
                      source: {{_models.Base}}
                      force: true
                    "<|im_start|>":
                      source: {kind: model_token, model: {{_models.Base}}, token: "<s>"}
                    "<|im_end|>":
                      source: {kind: model_token, model: {{_models.Merges}}, token_id: 261}
                    he:
                      source: {kind: zero}
                    "<extra>":
                    "<extra2>":
                      source: {kind: model_token, model: {{_models.ChatMl}}, token_id: 5}
                """
            ),
            Out
        );
        string[] vocabulary = [.. BaseTokens, "he", "ll", "<|im_start|>", "<|im_end|>", "<extra>", "<extra2>"];
        Assert.Equal(vocabulary, TokenizerFamily.TokensById(Path.Combine(Out, "tokenizer.json")));
        Assert.Contains("no input model has '<extra>'; its row is zero", result.Stderr);
        var added = ReadJson(Path.Combine(Out, "tokenizer.json"))["added_tokens"]!.AsArray().Last()!;
        Assert.Equal("<extra2>", (string)added["content"]!);
        Assert.False((bool)added["special"]!);
        Assert.True((bool)added["normalized"]!);

        var expectation = new Expectation
        {
            Vocabulary = vocabulary,
            Inputs = FourModels,
            Base = _models.Base,
            Forced = ["a", "b"],
            Sources =
            {
                ["a"] = t => Expectation.Row(_models.ChatMl, t, 'a'),
                ["b"] = t => Expectation.Row(_models.Base, t, 'b'),
                ["<|im_start|>"] = t => Expectation.Row(_models.Base, t, 256),
                ["<|im_end|>"] = t => Expectation.Row(_models.Merges, t, 261),
                ["he"] = _ => new double[Hidden],
                ["<extra2>"] = t => Expectation.Row(_models.ChatMl, t, 5),
            },
        };
        CheckTensor(Embed, expectation.Linear(Embed, 0.4, 0.3, 0.2, 0.1));
        CheckTensor(Head, expectation.Linear(Head, 0.4, 0.3, 0.2, 0.1));
        // Forced tokens are the source's row in every model, so the output reproduces it.
        Expect.Close(
            "a",
            Expectation.Row(_models.ChatMl, Embed, 'a'),
            TestCheckpoints.Read(Out, Embed).AsSpan('a' * Hidden, Hidden).ToArray(),
            DType.F32,
            1
        );
        Expect.Close(
            "b",
            Expectation.Row(_models.Base, Embed, 'b'),
            TestCheckpoints.Read(Out, Embed).AsSpan('b' * Hidden, Hidden).ToArray(),
            DType.F32,
            1
        );
    }

    [Fact]
    public void Two_holders_without_the_base_average_and_a_holding_base_gives_its_row_under_task_arithmetic()
    {
        // base lacks the chatml tokens; two fine-tunes have them: base's rows for them are the mean of theirs.
        AlloyCli.Merge(
            Config(
                $"""
                merge_method: task_arithmetic
                base_model: {_models.Base}
                models:
                  - model: {_models.ChatMl}
                    parameters: {"{"}weight: 0.7{"}"}
                  - model: {_models.ChatMl2}
                    parameters: {"{"}weight: 0.5{"}"}
                dtype: float32
                tokenizer_source: union
                """
            ),
            Out
        );
        string[] vocabulary = [.. BaseTokens, "<|im_start|>", "<|im_end|>"];
        Assert.Equal(vocabulary, TokenizerFamily.TokensById(Path.Combine(Out, "tokenizer.json")));
        var expectation = new Expectation
        {
            Vocabulary = vocabulary,
            Inputs = [_models.ChatMl, _models.ChatMl2, _models.Base],
            Base = _models.Base,
        };
        foreach (var tensor in new[] { Embed, Head })
        {
            var x1 = expectation.LaidOut(_models.ChatMl, tensor);
            var x2 = expectation.LaidOut(_models.ChatMl2, tensor);
            var b = expectation.LaidOut(_models.Base, tensor);
            Assert.Equal(0.5 * (x1[260][3] + x2[260][3]), b[260][3], 12);
            var expected = Enumerable
                .Range(0, vocabulary.Length * Hidden)
                .Select(e =>
                    b[e / Hidden][e % Hidden]
                    + 0.7 * (x1[e / Hidden][e % Hidden] - b[e / Hidden][e % Hidden])
                    + 0.5 * (x2[e / Hidden][e % Hidden] - b[e / Hidden][e % Hidden])
                )
                .ToArray();
            CheckTensor(tensor, expected);
        }

        // With chatml as the base, the plain model takes the base's row for the chatml tokens.
        var again = new Expectation
        {
            Vocabulary = vocabulary,
            Inputs = [_models.ChatMl, _models.ChatMl2, _models.Base],
            Base = _models.ChatMl,
        };
        Assert.Equal(Expectation.Row(_models.ChatMl, Embed, 261), again.LaidOut(_models.Base, Embed)[261]);
        AlloyCli.Merge(
            Config(
                TokenizerFamily.LinearRecipe(
                    _models.ChatMl,
                    "tokenizer_source: union",
                    (_models.ChatMl, 1),
                    (_models.ChatMl2, 1),
                    (_models.Base, 1)
                )
            ),
            _work["out2"]
        );
        var vocabulary2 = TokenizerFamily.TokensById(_work["out2/tokenizer.json"]);
        var expected2 = new Expectation
        {
            Vocabulary = vocabulary2,
            Inputs = [_models.ChatMl, _models.ChatMl2, _models.Base],
            Base = _models.ChatMl,
        }.Linear(Embed, 1, 1, 1);
        Expect.Close(Embed, expected2, TestCheckpoints.Read(_work["out2"], Embed), DType.F32, 4);
    }

    [Fact]
    public void A_tokenizer_source_that_is_not_merged_lends_only_its_tokenizer_and_tokens_no_input_has_are_zero()
    {
        var result = AlloyCli.Merge(
            Config(
                TokenizerFamily.LinearRecipe(
                    null,
                    $"tokenizer_source: {_models.Merges}",
                    (_models.Base, 1),
                    (_models.ChatMl, 1)
                )
            ),
            Out
        );
        Assert.Contains("no input model has 'he', 'll'; their rows are zero", result.Stderr);
        var tokens = TokenizerFamily.TokensById(Path.Combine(Out, "tokenizer.json"));
        Assert.Equal([.. BaseTokens, "he", "ll"], tokens);
        CheckTensor(
            Embed,
            new Expectation { Vocabulary = tokens, Inputs = [_models.Base, _models.ChatMl] }.Linear(Embed, 1, 1)
        );
    }

    [Fact]
    public void Without_tokenizer_settings_embeddings_are_cropped_as_before_with_a_warning()
    {
        var result = AlloyCli.Merge(FourModelLinear(""), Out);
        Assert.Contains("shapes differ", result.Stderr);
        Assert.Equal(
            File.ReadAllBytes(Path.Combine(_models.Base, "tokenizer.json")),
            File.ReadAllBytes(Path.Combine(Out, "tokenizer.json"))
        );
    }

    [Theory]
    [InlineData("a: {source: MISSING}", "takes its embedding from 'MISSING', which is not one of the merged models")]
    [InlineData("a: {source: {kind: model_token, model: BASE, token: nope}}", "model 'BASE' has no token 'nope'")]
    [InlineData(
        "a: {source: {kind: model_token, model: BASE, token_id: 999}}",
        "token 'a' is row 999 of 'BASE', but its 'model.embed_tokens.weight' has 260 rows"
    )]
    [InlineData(
        "he: {source: BASE}",
        "tokenizer token 'he' takes its embedding from 'BASE', which does not have that token"
    )]
    public void Token_settings_that_cannot_be_met_are_refused_before_anything_is_written(string tokens, string expected)
    {
        var config = FourModelLinear(
            $$"""
            tokenizer:
              tokens:
                {{tokens.Replace("BASE", _models.Base)}}
            """
        );
        AlloyCli.Fails(config, Out, expected.Replace("BASE", _models.Base));
    }

    [Fact]
    public void A_model_without_tokenizer_json_is_assumed_to_share_the_base_vocabulary_but_the_source_needs_one()
    {
        var copy = _work["no-tokenizer"];
        Directory.CreateDirectory(copy);
        foreach (var file in Directory.GetFiles(_models.ChatMl).Where(f => Path.GetFileName(f) != "tokenizer.json"))
            File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        var result = AlloyCli.Merge(
            Config(TokenizerFamily.LinearRecipe(null, "tokenizer_source: union", (_models.Base, 1), (copy, 1))),
            Out
        );
        Assert.Contains("has no tokenizer.json; assuming it has the same vocabulary", result.Stderr);
        Assert.Equal(260, (int)ReadJson(Path.Combine(Out, "config.json"))["vocab_size"]!);

        AlloyCli.Fails(
            Config(TokenizerFamily.LinearRecipe(null, "tokenizer_source: union", (copy, 1), (_models.Base, 1))),
            _work["out2"],
            "tokenizer merging needs the base model's tokenizer.json"
        );
    }

    [Fact]
    public void Re_laid_out_embeddings_are_byte_identical_at_any_thread_count_and_chunk_size()
    {
        var config = FourModelLinear(
            $$"""
            tokenizer:
              source: union
              pad_to_multiple_of: 48
              tokens:
                b: {source: {{_models.ChatMl}}, force: true}
            out_dtype: bfloat16
            """
        );
        var recipe = Alloy.Recipes.RecipeParser.ParseFile(config, new Diagnostics());
        // 7-element chunks start and end inside rows, own, composed and padding ones alike.
        Merger.Run(
            recipe,
            _work["one"],
            new MergeOptions
            {
                Execution = new() { Threads = 1, ChunkElements = 7 },
            },
            new Diagnostics()
        );
        Merger.Run(
            recipe,
            _work["many"],
            new MergeOptions
            {
                Execution = new() { Threads = 4, ChunkElements = 1 << 20 },
            },
            new Diagnostics()
        );
        Assert.Equal(
            File.ReadAllBytes(_work["one/model.safetensors"]),
            File.ReadAllBytes(_work["many/model.safetensors"])
        );
        Assert.Equal(288 * Hidden, TestCheckpoints.Read(_work["one"], Embed).Length);
    }

    [Fact]
    public void A_nested_vocab_size_is_read_and_updated_where_the_donor_keeps_it()
    {
        string Nested(string folder, string name)
        {
            var copy = _work[name];
            Directory.CreateDirectory(copy);
            foreach (var file in Directory.GetFiles(folder))
                File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
            var config = ReadJson(Path.Combine(copy, "config.json")).AsObject();
            config["text_config"] = new JsonObject { ["vocab_size"] = config["vocab_size"]!.DeepClone() };
            config.Remove("vocab_size");
            File.WriteAllText(Path.Combine(copy, "config.json"), config.ToJsonString());
            return copy;
        }
        var base_ = Nested(_models.Base, "nested-base");
        var chatml = Nested(_models.ChatMl, "nested-chatml");
        AlloyCli.Merge(
            Config(TokenizerFamily.LinearRecipe(null, "tokenizer_source: union", (base_, 1), (chatml, 1))),
            Out
        );
        var output = ReadJson(Path.Combine(Out, "config.json"));
        Assert.Equal(262, (int)output["text_config"]!["vocab_size"]!);
        Assert.Null(output["vocab_size"]);
    }

    [Fact]
    public void A_raw_state_dict_merge_ignores_tokenizer_settings_and_says_so()
    {
        var config = Config(
            TokenizerFamily.LinearRecipe(
                null,
                "tokenizer_source: union\nchat_template: chatml",
                (_models.Base, 1),
                (_models.Padded, 1)
            )
        );
        var result = AlloyCli.Run("merge-raw", config, Out, "--quiet");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("tokenizer and chat_template settings are ignored by a raw state-dict merge", result.Stderr);
        Assert.False(File.Exists(Path.Combine(Out, "chat_template.jinja")));
    }
}

/// <summary>
/// Padding rows past a model's tokens: dropped by a union merge, as mergekit does, with a warning; kept by
/// pad_to_multiple_of.
/// </summary>
public sealed class PaddingRowsTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    private static string Model(string name) => Path.Combine(ExampleTests.RepositoryRoot, "examples", "models", name);

    [Fact]
    public void Dropping_padding_rows_is_warned_about_and_padding_keeps_them()
    {
        // The example models have 272 embedding rows for a tokenizer of 260 tokens.
        string Recipe(string tokenizer) =>
            _work.Write(
                $"{tokenizer.Length}.yml",
                $"merge_method: linear\nmodels:\n  - model: {Model("finetune-1")}\n    parameters: {{weight: 1}}\n"
                    + $"  - model: {Model("finetune-2")}\n    parameters: {{weight: 1}}\ntokenizer: {tokenizer}\n"
            );
        var dropped = AlloyCli.Merge(Recipe("{source: union}"), _work["dropped"]);
        Assert.Contains("the merged embeddings have 260 rows, fewer than the 272 of", dropped.Stderr);
        Assert.Contains("set 'pad_to_multiple_of' under 'tokenizer:'", dropped.Stderr);
        Assert.Equal([260, 64], TestCheckpoints.Shape(_work["dropped"], "model.embed_tokens.weight"));

        var padded = AlloyCli.Merge(Recipe("{source: union, pad_to_multiple_of: 16}"), _work["padded"]);
        Assert.DoesNotContain("padding rows", padded.Stderr);
        Assert.Equal([272, 64], TestCheckpoints.Shape(_work["padded"], "model.embed_tokens.weight"));
    }
}
