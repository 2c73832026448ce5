using System.Text.Json.Nodes;
using Alloy.Runtime.Evaluation;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Support;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Runtime.Tests.Evaluation;

/// <summary>
/// Multiple choice against log-likelihoods computed in the test from each sequence's own forward pass, against a model
/// rigged to be uniform (every log-likelihood is known), and generation against greedy decoding run directly.
/// </summary>
public sealed class TaskEvaluationTests
{
    public static TheoryData<string> Backends() => Reference.Backends();

    private static readonly TextTokenizer Tokenizer = TextTokenizer.Load(TestModels.Folder);

    private static ChoiceItem Choice(int line, string context, int answer, params string[] choices) =>
        new("mc", "t.jsonl", line, null, context, choices, answer);

    private static GenerationItem Generate(
        int line,
        string prompt,
        string answer,
        string[]? stop = null,
        int? maxTokens = null
    ) => new("gen", "t.jsonl", line, null, prompt, [answer], stop ?? [], maxTokens);

    private static readonly ChoiceItem[] ChoiceItems =
    [
        Choice(1, "The opposite of hot is", 0, " cold", " warm", " red"),
        Choice(2, "Question: what is 7 + 8?\nAnswer: ", 1, "13", "15", "78", "a much longer answer"),
        Choice(3, "", 0, "first", "second"),
        Choice(4, "Ünïcödé 𝐀 context —", 1, " ✓", " 𝐀𝐁", " plain"),
    ];

    [Theory]
    [MemberData(nameof(Backends))]
    public void Choice_log_likelihoods_are_those_of_the_forward_pass_and_the_likeliest_is_picked(string backend)
    {
        var model = TestModels.Load(backend);
        var result = new TaskEvaluation(model, Tokenizer, new EvaluationOptions { BatchSize = 3 }).RunChoices(
            "mc",
            ChoiceItems
        );

        Assert.Equal(ChoiceItems.Length, result.Items);
        int correct = 0,
            correctNormalized = 0;
        for (int i = 0; i < ChoiceItems.Length; i++)
        {
            var item = ChoiceItems[i];
            var outcome = result.Choices[i];
            var expected = new double[item.Choices.Count];
            for (int c = 0; c < item.Choices.Count; c++)
            {
                // lm-eval-harness: trailing whitespace of the context moves to the choice; the choice's tokens are
                // those of the whole after as many tokens as the context alone has.
                string context = item.Context.TrimEnd();
                var contextIds = Prefixed(context);
                var whole = Prefixed(context + item.Context[context.Length..] + item.Choices[c]);
                if (contextIds.Length == 0)
                    (contextIds, whole) = ([Eos], [Eos, .. whole]); // an empty context starts from EOS
                var logits = model.Forward(TokenBatch.FromSequences(whole));
                for (int t = contextIds.Length; t < whole.Length; t++)
                    expected[c] += PerplexityTests.LogSoftmax(logits.Of(0, t - 1), whole[t]);
                Assert.Equal(whole.Length - contextIds.Length, outcome.ChoiceTokens[c]);
                Assert.Equal(expected[c], outcome.LogLikelihoods[c], 1e-4);
            }
            int best = Array.IndexOf(expected, expected.Max());
            // lm-eval-harness's acc_norm: by the bare choice's length, without the leading target delimiter.
            var normalized = expected
                .Select((ll, c) => ll / item.Choices[c].TrimStart().EnumerateRunes().Count())
                .ToArray();
            Assert.Equal(best, outcome.Predicted);
            Assert.Equal(Array.IndexOf(normalized, normalized.Max()), outcome.PredictedNormalized);
            correct += best == item.Answer ? 1 : 0;
            correctNormalized += outcome.PredictedNormalized == item.Answer ? 1 : 0;
        }
        Assert.Equal(correct / (double)ChoiceItems.Length, result.Accuracy);
        Assert.Equal(correctNormalized / (double)ChoiceItems.Length, result.AccuracyNormalized);
    }

    [Fact]
    public void A_uniform_model_gives_every_token_log_one_over_the_vocabulary()
    {
        // A zero final norm makes every logit 0: each token costs ln V, so the fewest tokens win on the sum, and the
        // fewest tokens per character on the normalised score. The synthetic tokenizer has a token per UTF-8 byte:
        // " é" is 3 tokens for 2 characters, " abcd" 5 for 5, "𝐀" 4 for 1.
        var model = TestModels.Load("managed");
        Array.Clear(model.Parameters["model.norm.weight"].Data);
        var item = Choice(1, "Pick one:", 0, " é", " abcd", "𝐀");
        var outcome = new TaskEvaluation(model, Tokenizer).RunChoices("mc", [item]).Choices[0];

        double lnV = Math.Log(model.Config.VocabSize);
        // Up to float32 rounding of exp(0) in the log-sum-exp.
        for (int c = 0; c < 3; c++)
            Assert.Equal(-outcome.ChoiceTokens[c] * lnV, outcome.LogLikelihoods[c], 1e-6 * outcome.ChoiceTokens[c]);
        int fewest = outcome.ChoiceTokens.ToList().IndexOf(outcome.ChoiceTokens.Min());
        Assert.Equal([3, 5, 4], outcome.ChoiceTokens);
        var perCharacter = outcome
            .ChoiceTokens.Select((n, c) => n / (double)item.Choices[c].EnumerateRunes().Count())
            .ToList();
        Assert.Equal(fewest, outcome.Predicted);
        Assert.Equal(perCharacter.IndexOf(perCharacter.Min()), outcome.PredictedNormalized);
        Assert.NotEqual(outcome.Predicted, outcome.PredictedNormalized); // the case tells the two scores apart
        Assert.True(outcome.Correct);
        Assert.False(outcome.CorrectNormalized);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Generation_is_greedy_decoding_cut_at_stop_strings_and_scored_by_exact_match(string backend)
    {
        var model = TestModels.Load(backend);
        // Prompts whose outputs decode to a few characters (ids past the synthetic tokenizer's vocabulary decode to
        // nothing).
        string[] prompts = ["Once upon a time", "Stop here", "xyz"];
        var greedy = Generation.Greedy(model, prompts.Select(p => (IReadOnlyList<int>)Prefixed(p)).ToList(), 10);
        var texts = greedy.Select(g => Tokenizer.Decode(g, skipSpecialTokens: true)).ToArray();
        Assert.All(texts, t => Assert.True(t.Length >= 3, $"'{t}' is too short to cut"));

        // The stop string is the third character of the first output: the text is cut before its first occurrence.
        string stop = texts[0].Substring(2, 1);
        var items = new[]
        {
            Generate(1, prompts[0], texts[0][..texts[0].IndexOf(stop, StringComparison.Ordinal)], [stop]),
            Generate(2, prompts[1], texts[1], maxTokens: 10),
            Generate(3, prompts[2], "not what it says"),
            Generate(4, prompts[1], Tokenizer.Decode(greedy[1][..4], skipSpecialTokens: true), maxTokens: 4),
        };
        var result = new TaskEvaluation(
            model,
            Tokenizer,
            new EvaluationOptions { MaxNewTokens = 10, BatchSize = 2 }
        ).RunGenerations("gen", items);

        Assert.Equal(texts[0][..texts[0].IndexOf(stop, StringComparison.Ordinal)], result.Generations[0].Output);
        Assert.Equal(texts[1], result.Generations[1].Output);
        Assert.Equal(texts[2], result.Generations[2].Output);
        Assert.Equal(4, result.Generations[3].GeneratedTokens);
        Assert.Equal([true, true, false, true], result.Generations.Select(g => g.Correct));
        Assert.Equal(0.75, result.Accuracy);
        Assert.True(result.Generations[0].GeneratedTokens < 10, "generation went on past the stop string");
    }

    [Fact]
    public void Generation_ends_at_a_stop_token_which_is_not_part_of_the_text()
    {
        // The model's own first greedy token after the first that it has not produced before becomes an
        // end-of-sequence token in generation_config.json.
        var folder = Path.Combine(TestModels.Folder, "stop-token");
        var model = TestModels.Load("managed");
        var prompt = Prefixed("Stop here");
        var greedy = Generation.Greedy(model, [prompt], 8)[0];
        int at = Enumerable.Range(1, greedy.Length - 1).First(k => !greedy[..k].Contains(greedy[k]));
        int stop = greedy[at];
        if (!Directory.Exists(folder))
        {
            Directory.CreateDirectory(folder);
            foreach (var file in Directory.GetFiles(TestModels.Folder))
                File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
            File.WriteAllText(
                Path.Combine(folder, "generation_config.json"),
                new JsonObject { ["eos_token_id"] = new JsonArray(257, stop) }.ToJsonString()
            );
        }
        var tokenizer = TextTokenizer.Load(folder);
        var outcome = new TaskEvaluation(model, tokenizer)
            .RunGenerations("gen", [Generate(1, "Stop here", "x")])
            .Generations[0];
        Assert.Equal(at + 1, outcome.GeneratedTokens);
        Assert.Equal(tokenizer.Decode(greedy[..at], skipSpecialTokens: true), outcome.Output);
    }

    [Fact]
    public void Exact_match_trims_and_ignores_case_when_asked()
    {
        var model = TestModels.Load("managed");
        // The first prompt whose output has letters to change the case of.
        var (prompt, output) = new[] { "Hello", "Once upon a time", "Stop here", "xyz", "The end" }
            .Select(p =>
                (
                    p,
                    new TaskEvaluation(model, Tokenizer)
                        .RunGenerations("gen", [Generate(1, p, "x", maxTokens: 12)])
                        .Generations[0]
                        .Output
                )
            )
            .First(x => x.Output.ToUpperInvariant() != x.Output);
        var items = new[]
        {
            Generate(1, prompt, $"  {output}\n", maxTokens: 12),
            Generate(2, prompt, output.ToUpperInvariant(), maxTokens: 12),
        };

        bool[] Correct(EvaluationOptions options) =>
            [
                .. new TaskEvaluation(model, Tokenizer, options)
                    .RunGenerations("gen", items)
                    .Generations.Select(g => g.Correct),
            ];
        Assert.Equal([true, false], Correct(new EvaluationOptions()));
        Assert.Equal([false, false], Correct(new EvaluationOptions { Trim = false }));
        Assert.Equal([true, true], Correct(new EvaluationOptions { IgnoreCase = true }));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Batching_and_threads_do_not_change_results(string backend)
    {
        // Managed: every row is computed by the same arithmetic whatever shares its pass, so results are identical.
        // OpenBLAS sums a row in an order that depends on the pass's shape: equal to float32 rounding.
        double tolerance = backend == "managed" ? 0 : 1e-4;
        TaskItem[] items =
        [
            .. ChoiceItems,
            Generate(5, "The capital of France is", "Paris"),
            Generate(6, "1, 2, 3,", "4", maxTokens: 5),
        ];
        var tokens = TestModels.Sequences(TestModels.Spec.VocabSize, 300)[0];
        (IReadOnlyList<TaskResult> Tasks, PerplexityResult Perplexity) Run(int threads, EvaluationOptions options)
        {
            var model = TestModels.Load(backend, threads);
            return (
                new TaskEvaluation(model, Tokenizer, options).Run(items),
                Perplexity.Measure(model, tokens, options)
            );
        }

        var reference = Run(
            1,
            new EvaluationOptions
            {
                BatchSize = 1,
                Context = 64,
                Stride = 48,
                MaxNewTokens = 6,
            }
        );
        foreach (
            var (threads, options) in new[]
            {
                (
                    2,
                    new EvaluationOptions
                    {
                        BatchSize = 3,
                        Context = 64,
                        Stride = 48,
                        MaxNewTokens = 6,
                    }
                ),
                (
                    2,
                    new EvaluationOptions
                    {
                        BatchSize = 64,
                        Context = 64,
                        Stride = 48,
                        MaxNewTokens = 6,
                    }
                ),
                (
                    1,
                    new EvaluationOptions
                    {
                        BatchSize = 64,
                        MaxBatchTokens = 40,
                        Context = 64,
                        Stride = 48,
                        MaxNewTokens = 6,
                    }
                ),
            }
        )
        {
            var other = Run(threads, options);
            Assert.Equal(reference.Perplexity.MeanNll, other.Perplexity.MeanNll, tolerance);
            Assert.Equal(reference.Tasks.Count, other.Tasks.Count);
            for (int t = 0; t < reference.Tasks.Count; t++)
            {
                var (a, b) = (reference.Tasks[t], other.Tasks[t]);
                Assert.Equal(
                    (a.Name, a.Accuracy, a.AccuracyNormalized, a.ForwardTokens),
                    (b.Name, b.Accuracy, b.AccuracyNormalized, b.ForwardTokens)
                );
                for (int i = 0; i < a.Choices.Count; i++)
                {
                    Assert.Equal(a.Choices[i].Predicted, b.Choices[i].Predicted);
                    for (int c = 0; c < a.Choices[i].LogLikelihoods.Count; c++)
                        Assert.Equal(a.Choices[i].LogLikelihoods[c], b.Choices[i].LogLikelihoods[c], tolerance);
                }
                Assert.Equal(a.Generations.Select(g => g.Output), b.Generations.Select(g => g.Output));
            }
        }
    }

    [Fact]
    public void Long_sequences_are_cut_from_the_left_to_the_context()
    {
        var model = TestModels.Load("managed");
        string longContext = string.Concat(Enumerable.Repeat("a long context, ", 40)).TrimEnd();
        var item = Choice(1, longContext, 0, " yes", " no");
        var cut = new TaskEvaluation(model, Tokenizer, new EvaluationOptions { Context = 32 })
            .RunChoices("mc", [item])
            .Choices[0];

        // The same as scoring the last 32 tokens of context + choice directly.
        var whole = Prefixed(longContext + " yes");
        var kept = whole[^32..];
        int choiceTokens = cut.ChoiceTokens[0];
        var logits = model.Forward(TokenBatch.FromSequences(kept));
        double expected = 0;
        for (int t = kept.Length - choiceTokens; t < kept.Length; t++)
            expected += PerplexityTests.LogSoftmax(logits.Of(0, t - 1), kept[t]);
        Assert.Equal(expected, cut.LogLikelihoods[0], 1e-4);

        var tooLong = Choice(2, "c", 0, string.Concat(Enumerable.Repeat(" yes", 40)), " no");
        var e = Assert.Throws<AlloyException>(() =>
            new TaskEvaluation(model, Tokenizer, new EvaluationOptions { Context = 32 }).RunChoices("mc", [tooLong])
        );
        Assert.StartsWith("t.jsonl:2: choice 0 is", e.Message);
    }

    private static int Eos => Tokenizer.Special.Eos!.Value;

    private static int[] Prefixed(string text) =>
        [.. Tokenizer.PrefixTokens, .. Tokenizer.Encode(text, addSpecialTokens: false)];
}

/// <summary>A mixture of experts' routing, per task and for the whole evaluation, in results and report.</summary>
public sealed class RoutingReportTests
{
    private static readonly TextTokenizer Tokenizer = TextTokenizer.Load(TestModels.Folder);

    [Fact]
    public void Each_task_counts_the_experts_its_forwarded_tokens_chose()
    {
        var config = RandomModels.Moe(ArchitectureFamily.Mixtral) with { VocabSize = TestModels.Spec.VocabSize };
        var model = RandomModels.Create(config);
        var evaluation = new TaskEvaluation(model, Tokenizer);
        ChoiceItem[] items =
        [
            new("mc", "t.jsonl", 1, null, "The opposite of hot is", [" cold", " warm"], 0),
            new("mc", "t.jsonl", 2, null, "7 + 8 =", [" 15", " 78"], 0),
        ];
        var first = evaluation.RunChoices("mc", items);
        var second = evaluation.RunChoices("mc", items[..1]);
        foreach (var result in new[] { first, second })
        {
            Assert.Equal(config.Layers, result.Routing!.Layers.Count);
            // Top-2 of every token forwarded by this task, and only this task.
            Assert.All(result.Routing.Layers, layer => Assert.Equal(2 * result.ForwardTokens, layer.Sum()));
        }

        var report = new EvaluationReport
        {
            Model = "moe",
            Parameters = model.Parameters.ElementCount,
            Backend = "managed",
            Threads = 2,
            TasksFile = "t.jsonl",
            Tasks = [first],
            Elapsed = TimeSpan.Zero,
            Routing = model.Routing!.Snapshot(),
        };
        var json = JsonNode.Parse(report.ToJson())!;
        var taskRouting = json["tasks"]![0]!["routing"]!.AsArray();
        Assert.Equal(1, (int)taskRouting[1]!["layer"]!);
        Assert.Equal(first.Routing!.Layers[1], taskRouting[1]!["counts"]!.AsArray().Select(c => (long)c!));
        Assert.Equal(
            2 * (first.ForwardTokens + second.ForwardTokens),
            json["routing"]![0]!["counts"]!.AsArray().Sum(c => (long)c!)
        );
    }

    [Fact]
    public void A_dense_model_reports_no_routing()
    {
        var result = new TaskEvaluation(TestModels.Load("managed"), Tokenizer).RunChoices(
            "mc",
            [new("mc", "t.jsonl", 1, null, "A", [" b", " c"], 0)]
        );
        Assert.Null(result.Routing);
        var report = new EvaluationReport
        {
            Model = "dense",
            Parameters = 1,
            Backend = "managed",
            Threads = 1,
            TasksFile = "t.jsonl",
            Tasks = [result],
            Elapsed = TimeSpan.Zero,
        };
        Assert.DoesNotContain("routing", report.ToJson());
    }
}
