using Alloy.Runtime.Evaluation;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Tests.Support;
using Alloy.Tokenizers;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Runtime.Tests.Evaluation;

/// <summary>
/// Few-shot prompts and chat templates as lm-eval-harness builds them: the text of examples and item, the draw
/// (never the item itself, a function of seed, task and line only), refusals of too small pools, the chat template's
/// one-turn and multiturn forms, and a single BOS when the template writes one.
/// </summary>
public sealed class TaskPromptsTests
{
    private static ChoiceItem Choice(int line, string context, int answer, params string[] choices) =>
        new("arith", "t.jsonl", line, null, context, choices, answer);

    private static GenerationItem Generate(int line, string prompt, params string[] answers) =>
        new("capitals", "t.jsonl", line, null, prompt, answers, ["\n"], 4);

    private static readonly ChoiceItem[] Sums =
    [
        Choice(1, "2 + 2 =", 0, " 4", " 5"),
        Choice(2, "3 + 3 =", 1, " 5", " 6"),
        Choice(3, "1 + 1 =", 1, " 3", " 2"),
    ];

    private static readonly GenerationItem[] Capitals =
    [
        Generate(4, "Capital of France:", "Paris", "paris"),
        Generate(5, "Capital of Italy:", "Rome"),
        Generate(6, "Capital of Spain:", "Madrid"),
    ];

    [Fact]
    public void Examples_go_before_the_item_as_question_answer_and_delimiter()
    {
        var options = new PromptOptions { FewShot = 2 };
        var choice = (ChoiceItem)TaskPrompts.Build(Sums[2], [Sums[0], Sums[1]], options, chat: null);
        // The right choice carries the target delimiter already; the item's own choices are unchanged.
        Assert.Equal("2 + 2 = 4\n\n3 + 3 = 6\n\n1 + 1 =", choice.Context);
        Assert.Equal([" 3", " 2"], choice.Choices);
        Assert.Equal((3, "arith", 1), (choice.Line, choice.Task, choice.Answer));

        var generate = (GenerationItem)TaskPrompts.Build(Capitals[2], [Capitals[0], Capitals[1]], options, chat: null);
        // A generate example's first answer follows the target delimiter.
        Assert.Equal("Capital of France: Paris\n\nCapital of Italy: Rome\n\nCapital of Spain:", generate.Prompt);

        var own = Capitals[2] with { FewShotDelimiter = "\n", TargetDelimiter = " -> " };
        var custom = (GenerationItem)
            TaskPrompts.Build(own, [Capitals[1]], options with { FewShotDelimiter = "###" }, null);
        Assert.Equal("Capital of Italy: -> Rome\nCapital of Spain:", custom.Prompt);
        var fromOptions = (GenerationItem)
            TaskPrompts.Build(
                Capitals[2],
                [Capitals[1]],
                options with
                {
                    FewShotDelimiter = "###",
                    TargetDelimiter = "",
                },
                null
            );
        Assert.Equal("Capital of Italy:Rome###Capital of Spain:", fromOptions.Prompt);
    }

    /// <summary>
    /// A copy of the test model's tokenizer with <paramref name="template"/> as its chat_template.jinja.
    /// </summary>
    private static TextTokenizer WithTemplate(string name, string template)
    {
        var folder = Path.Combine(TestModels.Folder, "template-" + name);
        if (!Directory.Exists(folder))
        {
            Directory.CreateDirectory(folder);
            foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json" })
                File.Copy(Path.Combine(TestModels.Folder, file), Path.Combine(folder, file));
            File.WriteAllText(Path.Combine(folder, "chat_template.jinja"), template);
        }
        return TextTokenizer.Load(folder);
    }

    [Fact]
    public void The_chat_template_wraps_the_prompt_in_one_user_turn_or_one_turn_per_example()
    {
        var chat = ChatPrompt.For(WithTemplate("mistral", ChatTemplates.Mistral));
        var options = new PromptOptions { FewShot = 2, ChatTemplate = true };
        var single = (ChoiceItem)TaskPrompts.Build(Sums[2], [Sums[0], Sums[1]], options, chat);
        Assert.Equal("<s>[INST] 2 + 2 = 4\n\n3 + 3 = 6\n\n1 + 1 = [/INST]", single.Context);
        // Scored right after the template's text, without the target delimiter (lm-eval-harness under a chat template).
        Assert.Equal(["3", "2"], single.Choices);

        var turns = (ChoiceItem)
            TaskPrompts.Build(Sums[2], [Sums[0], Sums[1]], options with { FewShotAsMultiturn = true }, chat);
        Assert.Equal(
            "<s>[INST] 2 + 2 = [/INST] 4</s>[INST] 3 + 3 = [/INST] 6</s>[INST] 1 + 1 = [/INST]",
            turns.Context
        );

        var chatml = ChatPrompt.For(WithTemplate("chatml", ChatTemplates.ChatMl));
        var generate = (GenerationItem)
            TaskPrompts.Build(Capitals[2], [Capitals[0]], options with { FewShotAsMultiturn = true }, chatml);
        Assert.Equal(
            "<|im_start|>user\nCapital of France:<|im_end|>\n<|im_start|>assistant\nParis<|im_end|>\n"
                + "<|im_start|>user\nCapital of Spain:<|im_end|>\n<|im_start|>assistant\n",
            generate.Prompt
        );
    }

    [Fact]
    public void A_prompt_that_starts_with_the_bos_text_is_not_given_a_second_bos()
    {
        var model = TestModels.Load("managed");
        var tokenizer = WithTemplate("mistral", ChatTemplates.Mistral);
        var item = (ChoiceItem)
            TaskPrompts.Build(
                Sums[2],
                [Sums[0]],
                new PromptOptions { FewShot = 1, ChatTemplate = true },
                ChatPrompt.For(tokenizer)
            );
        Assert.StartsWith("<s>[INST]", item.Context);
        var outcome = new TaskEvaluation(model, tokenizer).RunChoices("arith", [item]).Choices[0];

        // The template's "<s>" is the BOS token itself: one BOS, then the rest of the text.
        int bos = tokenizer.Special.Bos!.Value;
        var context = tokenizer.Encode(item.Context, addSpecialTokens: false);
        Assert.Equal(bos, context[0]);
        Assert.NotEqual(bos, context[1]);
        double LogLikelihood(int[] prefix, string choice)
        {
            var whole = prefix.Concat(tokenizer.Encode(item.Context + choice, addSpecialTokens: false)).ToArray();
            int start = prefix.Length + context.Length;
            var logits = model.Forward(TokenBatch.FromSequences(whole));
            double sum = 0;
            for (int t = start; t < whole.Length; t++)
                sum += PerplexityTests.LogSoftmax(logits.Of(0, t - 1), whole[t]);
            return sum;
        }
        for (int c = 0; c < item.Choices.Count; c++)
        {
            Assert.Equal(LogLikelihood([], item.Choices[c]), outcome.LogLikelihoods[c], 1e-4);
            Assert.NotEqual(LogLikelihood([bos], item.Choices[c]), outcome.LogLikelihoods[c], 1e-4);
        }
    }

    /// <summary>A task of <paramref name="count"/> items, two of them with the same text on different lines.</summary>
    private static List<TaskItem> Task(int count) =>
        [
            .. Enumerable
                .Range(1, count)
                .Select(line => (TaskItem)Choice(line, $"q{Math.Min(line, count - 1)}", 0, " a", " b")),
            .. Capitals,
        ];

    [Fact]
    public void Each_item_draws_distinct_other_items_of_its_task_and_never_itself()
    {
        var items = Task(6);
        for (int seed = 0; seed < 50; seed++)
        {
            var sampler = new FewShotSampler(FewShotPool.TasksFile(items, "t.jsonl"), 5, seed, items[..6]);
            foreach (var item in items.Where(i => i.Task == "arith"))
            {
                var examples = sampler.Draw(item);
                // All five others, by identity: the item with the same text as the last one stays a candidate.
                Assert.Equal(
                    items.Where(i => i.Task == "arith" && !ReferenceEquals(i, item)).Select(i => i.Line).Order(),
                    examples.Select(e => e.Line).Order()
                );
                Assert.DoesNotContain(examples, e => ReferenceEquals(e, item));
            }
            var capitals = new FewShotSampler(FewShotPool.TasksFile(items, "t.jsonl"), 2, seed, items);
            Assert.All(Capitals, c => Assert.All(capitals.Draw(c), e => Assert.Equal("capitals", e.Task)));
        }
    }

    [Fact]
    public void The_draw_depends_on_the_seed_and_the_item_alone()
    {
        var items = Task(30)[..30];
        var pool = FewShotPool.TasksFile(items, "t.jsonl");
        var all = new FewShotSampler(pool, 3, PromptOptions.DefaultSeed, items);
        // Scoring only some items (a limit) or building the sampler again draws the same examples for each.
        var limited = new FewShotSampler(pool, 3, PromptOptions.DefaultSeed, TaskFile.Limit(items, 5));
        foreach (var item in TaskFile.Limit(items, 5))
            Assert.Equal(all.Draw(item).Select(e => e.Line), limited.Draw(item).Select(e => e.Line));
        var reseeded = new FewShotSampler(pool, 3, 7, items);
        Assert.Contains(items.Take(30), i =>
            !all.Draw(i).Select(e => e.Line).SequenceEqual(reseeded.Draw(i).Select(e => e.Line))
        );
        // Different items get different orders and sets.
        Assert.True(
            items.Take(30).Select(i => string.Join(",", all.Draw(i).Select(e => e.Line))).Distinct().Count() > 20
        );
    }

    [Fact]
    public void Draws_are_spread_evenly_over_the_pool()
    {
        // 2000 items each draw one example from a pool file of 10: every candidate about 200 times (a 5σ band).
        var pool = Enumerable.Range(1, 10).Select(l => (TaskItem)Choice(l, "p", 0, " a", " b")).ToList();
        var scored = Enumerable.Range(1, 2000).Select(l => (TaskItem)Choice(l, "q", 0, " a", " b")).ToList();
        var sampler = new FewShotSampler(FewShotPool.File(pool, "pool.jsonl"), 1, PromptOptions.DefaultSeed, scored);
        var counts = scored
            .Select(i => sampler.Draw(i)[0].Line)
            .GroupBy(l => l)
            .ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(10, counts.Count);
        Assert.All(counts.Values, n => Assert.InRange(n, 200 - 5 * 13.4, 200 + 5 * 13.4));
    }

    [Fact]
    public void A_pool_with_too_few_items_of_a_task_is_refused_naming_the_task_and_counts()
    {
        var e = Assert.Throws<AlloyException>(() =>
            new FewShotSampler(FewShotPool.TasksFile(Sums, "data/t.jsonl"), 3, 1, Sums)
        );
        Assert.Equal(
            "task 'arith': 3 few-shot examples asked for, but data/t.jsonl has only 2 other items of it",
            e.Message
        );
        e = Assert.Throws<AlloyException>(() =>
            new FewShotSampler(FewShotPool.File([Sums[0]], "pool.jsonl"), 2, 1, Sums)
        );
        Assert.Equal("task 'arith': 2 few-shot examples asked for, but pool.jsonl has only 1 item of it", e.Message);
        e = Assert.Throws<AlloyException>(() =>
            new FewShotSampler(FewShotPool.File(Capitals, "pool.jsonl"), 1, 1, Sums)
        );
        Assert.Equal("task 'arith': 1 few-shot example asked for, but pool.jsonl has only 0 items of it", e.Message);
        // Exactly enough is enough.
        Assert.Equal(2, new FewShotSampler(FewShotPool.TasksFile(Sums, "t.jsonl"), 2, 1, Sums).Draw(Sums[0]).Count);
    }

    [Fact]
    public void A_pool_item_of_another_type_than_its_task_is_refused()
    {
        var wrong = new GenerationItem("arith", "pool.jsonl", 9, null, "p", ["a"], [], null);
        var e = Assert.Throws<AlloyException>(() =>
            new FewShotSampler(FewShotPool.File([wrong, .. Sums], "pool.jsonl"), 1, 1, Sums)
        );
        Assert.Equal(
            "pool.jsonl:9: task 'arith' is a choice task (t.jsonl:1) but this few-shot example is a generate item",
            e.Message
        );
    }

    [Fact]
    public void Multiturn_without_the_chat_template_and_negative_counts_are_refused()
    {
        Assert.Contains(
            "need the chat template",
            Assert.Throws<AlloyException>(() => new PromptOptions { FewShotAsMultiturn = true }.Validate()).Message
        );
        Assert.Contains(
            "0 or more",
            Assert.Throws<AlloyException>(() => new PromptOptions { FewShot = -1 }.Validate()).Message
        );
    }
}
