using System.Text.Json;
using System.Text.Json.Nodes;
using Alloy.Cli;
using Alloy.Runtime;
using Alloy.Runtime.Evaluation;
using Alloy.Runtime.Models;
using Alloy.Synthetic;
using Alloy.Tensors;
using Alloy.Tests.Support;
using Alloy.Tokenizers;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// <c>alloy eval</c> through <see cref="Program.Run"/> on the bundled example model and example data.
/// </summary>
public sealed class EvalCommandTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    private static string Example(string relative) => Path.Combine(ExampleTests.RepositoryRoot, "examples", relative);

    private static string BaseModel => Example("models/base");

    [Fact]
    public void The_example_text_and_tasks_give_a_report_that_agrees_with_the_library()
    {
        var result = AlloyCli.Run(
            "eval",
            BaseModel,
            "--text",
            Example("eval/text.txt"),
            "--tasks",
            Example("eval/tasks.jsonl"),
            "--quiet"
        );
        Assert.True(result.ExitCode == 0, result.Stderr);
        var report = JsonNode.Parse(result.Stdout)!.AsObject();

        Assert.Equal(BaseModel, (string)report["model"]!);
        var perplexity = report["perplexity"]!;
        double value = (double)perplexity["perplexity"]!;
        Assert.Equal(Math.Exp((double)perplexity["mean_nll"]!), value, value * 1e-12);
        Assert.True(value > 1);
        Assert.True((double)perplexity["tokens_per_second"]! > 0);

        // The same numbers as the library gives.
        var model = LlamaModel.Load(BaseModel);
        var tokenizer = TextTokenizer.Load(BaseModel);
        var expected = Perplexity.Measure(model, tokenizer, File.ReadAllText(Example("eval/text.txt")));
        Assert.Equal(expected.Tokens, (int)perplexity["tokens"]!);
        Assert.Equal(expected.ScoredTokens, (int)perplexity["scored_tokens"]!);
        Assert.Equal(expected.MeanNll, (double)perplexity["mean_nll"]!, 1e-9);
        var tasks = new TaskEvaluation(model, tokenizer).Run(TaskFile.Read(Example("eval/tasks.jsonl")));

        var reported = report["tasks"]!.AsArray();
        Assert.Equal(["arithmetic", "opposites", "capitals", "counting"], reported.Select(t => (string)t!["name"]!));
        for (int t = 0; t < tasks.Count; t++)
        {
            var task = reported[t]!;
            Assert.Equal(tasks[t].Type, (string)task["type"]!);
            Assert.Equal(tasks[t].Items, (int)task["items"]!);
            Assert.Equal(tasks[t].Accuracy, (double)task[tasks[t].Type == "choice" ? "accuracy" : "exact_match"]!);
            Assert.Null(task["samples"]);
        }
        Assert.Equal(tasks[0].AccuracyNormalized, (double)reported[0]!["accuracy_norm"]!);
    }

    [Fact]
    public void Output_file_limit_and_samples()
    {
        var tasks = _work.Write(
            "tasks.jsonl",
            string.Join(
                '\n',
                """{"type": "choice", "task": "a", "context": "x", "choices": [" y", " z"], "answer": 1}""",
                """{"type": "choice", "task": "a", "id": "second", "context": "x", "choices": [" y", " z"], "answer": 0}""",
                """{"type": "generate", "task": "g", "id": 9, "prompt": "Hi", "answer": "there", "max_tokens": 3}"""
            )
        );
        var output = _work["reports/eval.json"];
        var result = AlloyCli.Run(
            "eval",
            BaseModel,
            "--tasks",
            tasks,
            "--limit",
            "1",
            "--samples",
            "--output",
            output,
            "-j",
            "1"
        );
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains($"report in {output}", result.Stdout);

        var report = JsonNode.Parse(File.ReadAllText(output))!.AsObject();
        Assert.Null(report["perplexity"]);
        Assert.Equal(1, (int)report["threads"]!);
        var tasksReported = report["tasks"]!.AsArray();
        Assert.Equal([1, 1], tasksReported.Select(t => (int)t!["items"]!));
        var choice = tasksReported[0]!["samples"]!.AsArray().Single()!;
        Assert.Equal(1, (int)choice["line"]!);
        Assert.Equal(2, choice["loglikelihoods"]!.AsArray().Count);
        int predicted = (int)choice["predicted"]!;
        Assert.Equal(predicted == 1 ? 1.0 : 0.0, (double)tasksReported[0]!["accuracy"]!);
        var generated = tasksReported[1]!["samples"]!.AsArray().Single()!;
        Assert.Equal("9", (string)generated["id"]!);
        Assert.True((int)generated["generated_tokens"]! <= 3);
        Assert.NotNull(generated["output"]);
    }

    [Fact]
    public void Several_models_are_compared_side_by_side_with_every_report_kept()
    {
        string[] models = [BaseModel, Example("models/finetune-1"), Example("models/finetune-2")];
        var report = _work["compare.json"];
        var result = AlloyCli.Run([
            "eval",
            .. models,
            "--text",
            Example("eval/text.txt"),
            "--tasks",
            Example("eval/tasks.jsonl"),
            "--limit",
            "3",
            "--output",
            report,
            "--quiet",
        ]);
        Assert.True(result.ExitCode == 0, result.Stderr);

        // Each model's report is the one it gets alone.
        var reports = JsonNode.Parse(File.ReadAllText(report))!["models"]!.AsArray();
        Assert.Equal(models, reports.Select(r => (string)r!["model"]!));
        var alone = models
            .Select(m =>
                JsonNode.Parse(
                    AlloyCli
                        .Run(
                            "eval",
                            m,
                            "--text",
                            Example("eval/text.txt"),
                            "--tasks",
                            Example("eval/tasks.jsonl"),
                            "--limit",
                            "3",
                            "--quiet"
                        )
                        .Stdout
                )!
            )
            .ToList();
        for (int m = 0; m < models.Length; m++)
        {
            Assert.Equal(
                (double)alone[m]["perplexity"]!["perplexity"]!,
                (double)reports[m]!["perplexity"]!["perplexity"]!
            );
            static IEnumerable<double> Scores(JsonNode report) =>
                report["tasks"]!.AsArray().Select(t => (double)(t!["accuracy"] ?? t["exact_match"])!);
            Assert.Equal(Scores(alone[m]), Scores(reports[m]!));
        }

        // The table: a header of folder names, then one row per measure, the best of each row starred.
        var lines = result.Stdout.TrimEnd('\n').Split('\n');
        Assert.Equal(["base", "finetune-1", "finetune-2"], lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        var perplexities = alone.Select(r => (double)r["perplexity"]!["perplexity"]!).ToList();
        var cells = lines[1].Split("  ", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal("perplexity", cells[0]);
        for (int m = 0; m < 3; m++)
        {
            string expected =
                perplexities[m].ToString("G5", System.Globalization.CultureInfo.InvariantCulture)
                + (perplexities[m] == perplexities.Min() ? "*" : "");
            Assert.Equal(expected, cells[m + 1]);
        }
        Assert.StartsWith("arithmetic accuracy ", lines[2]);
        Assert.StartsWith("arithmetic accuracy (norm) ", lines[3]);
        Assert.Contains(lines, l => l.StartsWith("capitals exact match ", StringComparison.Ordinal));
        Assert.Equal(2 + 2 * 2 + 2, lines.Length);
        // A row of equal values (the untrained models tie at 0 on some tasks) has no star; any other row has one.
        Assert.All(lines.Skip(1), l =>
        {
            var values = l.Split("  ", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[1..];
            Assert.Equal(values.Select(v => v.TrimEnd('*')).Distinct().Count() > 1, l.Contains('*'));
        });

        // --json prints the same report instead of the table.
        var json = AlloyCli.Run(["eval", .. models, "--text", Example("eval/text.txt"), "--json", "--quiet"]);
        Assert.Equal(3, JsonNode.Parse(json.Stdout)!["models"]!.AsArray().Count);
    }

    [Fact]
    public void A_malformed_tasks_line_fails_with_one_line_naming_it()
    {
        var tasks = _work.Write(
            "bad.jsonl",
            """{"type": "choice", "context": "x", "choices": [" y", " z"], "answer": 0}"""
                + "\n"
                + """{"type": "choice", "context": "x", "choices": [" y", " z"], "answer": 5}"""
                + "\n"
        );
        var result = AlloyCli.Run("eval", BaseModel, "--tasks", tasks);
        Assert.Equal(ExitCodes.InputError, result.ExitCode);
        Assert.Equal(
            $"error: {tasks}:2: \"answer\" is 5 but there are 2 choices (indices 0 to 1)",
            result.Stderr.Trim()
        );
        Assert.Empty(result.Stdout);
    }

    [Theory]
    [InlineData("nothing to evaluate")]
    [InlineData("--text", "TEXT", "--batch-size", "0", "batch size must be at least 1")]
    [InlineData("--text", "TEXT", "--stride", "9", "--context", "8", "stride 9 is longer than the context 8")]
    [InlineData("--text", "/nonexistent/text.txt", "no such file")]
    [InlineData("--tasks", "/nonexistent/tasks.jsonl", "no such tasks file")]
    [InlineData("--limit", "0", "--tasks", "x", "--limit: 0")]
    [InlineData(
        "--tasks",
        "TASKS",
        "--num-fewshot",
        "4",
        "task 'arithmetic': 4 few-shot examples asked for, but TASKS has only 3 other items of it"
    )]
    [InlineData("--tasks", "TASKS", "--num-fewshot", "-1", "few-shot examples must be 0 or more")]
    [InlineData("--tasks", "TASKS", "--chat-template", "the model has no chat template")]
    [InlineData(
        "--tasks",
        "TASKS",
        "--chat-template",
        "--fewshot-as-multiturn",
        "--num-fewshot",
        "1",
        "the model has no chat template"
    )]
    [InlineData("--tasks", "TASKS", "--fewshot-as-multiturn", "need the chat template (add --chat-template)")]
    [InlineData("--tasks", "TASKS", "--fewshot-file", "TASKS", "say how many with --num-fewshot N")]
    [InlineData("--tasks", "TASKS", "--num-fewshot", "1", "--fewshot-file", "/no/pool.jsonl", "no such tasks file")]
    [InlineData("--text", "TEXT", "--num-fewshot", "1", "shape task prompts; give --tasks FILE.jsonl")]
    public void Mistakes_fail_with_one_line(params string[] argsThenExpected)
    {
        string Path(string a) =>
            a switch
            {
                "TEXT" => Example("eval/text.txt"),
                "TASKS" => Example("eval/tasks.jsonl"),
                _ => a,
            };
        string expected = argsThenExpected[^1].Replace("TASKS", Path("TASKS"));
        argsThenExpected = [.. argsThenExpected[..^1].Select(Path), expected];
        var args = argsThenExpected[..^1];
        var result = AlloyCli.Run(["eval", BaseModel, .. args, "--quiet"]);
        Assert.Equal(ExitCodes.InputError, result.ExitCode);
        var lines = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.Contains(argsThenExpected[^1], lines[0]);
    }

    [Fact]
    public void The_report_is_never_written_into_the_model_folder()
    {
        var model = _work["model"];
        Directory.CreateDirectory(model);
        foreach (var file in Directory.GetFiles(BaseModel))
            File.Copy(file, Path.Combine(model, Path.GetFileName(file)));
        var before = Directory.GetFiles(model).Order().ToArray();
        var result = AlloyCli.Run(
            "eval",
            model,
            "--text",
            Example("eval/text.txt"),
            "--output",
            Path.Combine(model, "eval.json")
        );
        Assert.Equal(ExitCodes.InputError, result.ExitCode);
        Assert.Contains("is inside input model", result.Stderr);
        Assert.Equal(before, Directory.GetFiles(model).Order());
    }

    [Fact]
    public void Usage_errors_and_help()
    {
        Assert.Equal(ExitCodes.UsageError, AlloyCli.Run("eval", BaseModel, "--batch-size", "many").ExitCode);
        Assert.Equal(ExitCodes.UsageError, AlloyCli.Run("eval").ExitCode);
        var help = AlloyCli.Run("eval", "--help");
        Assert.Equal(0, help.ExitCode);
        foreach (
            var option in new[]
            {
                "--text",
                "--tasks",
                "--output",
                "--batch-size",
                "--max-tokens",
                "--limit",
                "--context",
                "--stride",
                "--samples",
                "\"type\": \"choice\"",
            }
        )
            Assert.Contains(option, help.Stdout);
        string[] promptOptions =
        [
            "--num-fewshot",
            "--fewshot-file",
            "--seed",
            "--fewshot-delimiter",
            "--target-delimiter",
            "--chat-template",
            "--fewshot-as-multiturn",
            "lm-eval-harness",
        ];
        foreach (var option in promptOptions)
            Assert.Contains(option, help.Stdout);
    }

    private static readonly TinyLlamaSpec ChatSpec = new()
    {
        DType = DType.F32,
        Layers = 2,
        HiddenSize = 32,
        IntermediateSize = 64,
        Heads = 2,
        KeyValueHeads = 1,
        VocabSize = 260,
        Tokenizer = new TokenizerExtras { ChatTemplate = ChatTemplates.Mistral },
    };

    /// <summary>A generated model whose chat template is Mistral's (which writes the BOS text itself).</summary>
    private string ChatModel(string name = "chat-model", int fineTune = 0)
    {
        var folder = _work[name];
        if (!Directory.Exists(folder))
            TinyLlama.Write(folder, ChatSpec, fineTune);
        return folder;
    }

    /// <summary>Six choice items and four generate items, each with a text of its own.</summary>
    private string FewShotTasks() =>
        _work.Write(
            "fewshot.jsonl",
            string.Join(
                '\n',
                Enumerable
                    .Range(1, 6)
                    .Select(i =>
                        $$"""{"type": "choice", "task": "sums", "context": "{{i}} + {{i}} =", """
                        + $$""" "choices": [" {{2 * i}}", " {{2 * i + 1}}"], "answer": 0}"""
                    )
                    .Concat(
                        new[] { "A", "B", "C", "D" }.Select(w =>
                            $$"""{"type": "generate", "task": "echo", "prompt": "Say {{w}}:", "answer": "{{w}}", "stop": ["\n"], """
                            + """ "max_tokens": 3}"""
                        )
                    )
            )
        );

    private static JsonObject Report(params string[] args)
    {
        var result = AlloyCli.Run(["eval", .. args, "--samples", "--quiet"]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        return JsonNode.Parse(result.Stdout)!.AsObject();
    }

    /// <summary>
    /// The same samples: texts, choices and answers exactly; scores to float32 rounding, since OpenBLAS sums a row in
    /// an order that depends on the rows sharing its call (the batch), as BatchingAndCacheTests describes.
    /// </summary>
    private static void AssertSameSamples(JsonObject expected, JsonObject actual) =>
        AssertSameJson(SampleLists(expected), SampleLists(actual), "tasks");

    private static JsonArray SampleLists(JsonObject report) =>
        [.. report["tasks"]!.AsArray().Select(t => t!["samples"]!.DeepClone())];

    private static void AssertSameJson(JsonNode? expected, JsonNode? actual, string path)
    {
        switch (expected)
        {
            case JsonObject o:
                var other = Assert.IsType<JsonObject>(actual);
                Assert.Equal(o.Select(p => p.Key), other.Select(p => p.Key));
                foreach (var (key, value) in o)
                    AssertSameJson(value, other[key], $"{path}.{key}");
                break;
            case JsonArray a:
                var items = Assert.IsType<JsonArray>(actual);
                Assert.Equal(a.Count, items.Count);
                for (int i = 0; i < a.Count; i++)
                    AssertSameJson(a[i], items[i], $"{path}[{i}]");
                break;
            case JsonValue v when v.GetValueKind() == JsonValueKind.Number:
                double x = v.GetValue<double>(),
                    y = actual!.GetValue<double>();
                Assert.True(Math.Abs(x - y) <= 1e-5 * Math.Max(1, Math.Abs(x)), $"{path}: {y:R}, expected {x:R}");
                break;
            default:
                Assert.Equal(expected?.ToJsonString(), actual?.ToJsonString());
                break;
        }
    }

    private static Dictionary<int, string> Prompts(JsonObject report) =>
        report["tasks"]!
            .AsArray()
            .SelectMany(t => t!["samples"]!.AsArray())
            .ToDictionary(s => (int)s!["line"]!, s => (string)(s!["context"] ?? s["prompt"])!);

    [Fact]
    public void Few_shot_chat_prompts_are_built_as_the_library_builds_them_at_any_thread_count_and_batch_size()
    {
        string model = ChatModel(),
            tasks = FewShotTasks();
        string[] run = [model, "--tasks", tasks, "--num-fewshot", "2", "--chat-template"];
        var report = Report([.. run, "-j", "1", "--batch-size", "1"]);
        Assert.Equal(
            (2, PromptOptions.DefaultSeed, true, false),
            (
                (int)report["num_fewshot"]!,
                (int)report["fewshot_seed"]!,
                (bool)report["chat_template"]!,
                (bool)report["fewshot_as_multiturn"]!
            )
        );
        Assert.Null(report["fewshot_file"]);
        AssertSameSamples(report, Report([.. run, "-j", "2", "--batch-size", "16"]));
        AssertSameSamples(report, Report([.. run, "-j", "2", "--batch-size", "3", "--batch-tokens", "40"]));

        // Each prompt: a BOS text, [INST] two solved examples of its task, then itself [/INST]; never its own example.
        var items = TaskFile.Read(tasks);
        var prompts = Prompts(report);
        foreach (var item in items)
        {
            string prompt = prompts[item.Line];
            Assert.StartsWith("<s>[INST] ", prompt);
            Assert.EndsWith(" [/INST]", prompt);
            var parts = prompt["<s>[INST] ".Length..^" [/INST]".Length].Split("\n\n");
            Assert.Equal(3, parts.Length);
            var solved = items
                .Where(o => o.Task == item.Task && o != item)
                .Select(o =>
                    o switch
                    {
                        ChoiceItem c => c.Context + c.Choices[c.Answer],
                        GenerationItem g => g.Prompt + " " + g.Answers[0],
                        _ => throw new InvalidOperationException(),
                    }
                )
                .ToList();
            Assert.All(parts[..2], p => Assert.Contains(p, solved));
            Assert.NotEqual(parts[0], parts[1]);
            Assert.Equal(item is ChoiceItem c ? c.Context : ((GenerationItem)item).Prompt, parts[2]);
        }
        var choice = report["tasks"]![0]!["samples"]![0]!;
        Assert.Equal([" 2", " 3"], ((ChoiceItem)items[0]).Choices);
        // Scored without the target delimiter, right after the template's text.
        Assert.Equal(["2", "3"], choice["choices"]!.AsArray().Select(c => (string)c!));

        var built = TaskPrompts.Build(
            items,
            new PromptOptions { FewShot = 2, ChatTemplate = true },
            new FewShotSampler(FewShotPool.TasksFile(items, tasks), 2, PromptOptions.DefaultSeed, items),
            ChatPrompt.For(TextTokenizer.Load(model))
        );
        Assert.All(built, b =>
            Assert.Equal(b is ChoiceItem c ? c.Context : ((GenerationItem)b).Prompt, prompts[b.Line])
        );

        // Another seed draws other examples; --limit scores fewer items with the same examples.
        var reseeded = Report([.. run, "--seed", "7"]);
        Assert.Equal(7, (int)reseeded["fewshot_seed"]!);
        Assert.Contains(Prompts(reseeded), p => p.Value != prompts[p.Key]);
        Assert.All(Prompts(Report([.. run, "--limit", "2"])), p => Assert.Equal(prompts[p.Key], p.Value));
        // The tasks file named as the pool is the tasks file: items still never draw themselves.
        var samePool = Report([.. run, "--fewshot-file", tasks]);
        Assert.Null(samePool["fewshot_file"]);
        AssertSameSamples(report, samePool);
    }

    [Fact]
    public void Examples_come_from_a_pool_file_with_the_given_delimiters_and_as_chat_turns()
    {
        string model = ChatModel(),
            tasks = FewShotTasks();
        var pool = _work.Write(
            "pool.jsonl",
            """{"type": "choice", "task": "sums", "context": "10 + 10 =", "choices": [" 20", " 21"], "answer": 0}"""
                + "\n"
                + """{"type": "generate", "task": "other", "prompt": "unused", "answer": "x"}"""
                + "\n"
                + """{"type": "generate", "task": "echo", "prompt": "Say Z:", "answer": ["Z", "z"]}"""
        );
        var report = Report(
            model,
            "--tasks",
            tasks,
            "--limit",
            "1",
            "--num-fewshot",
            "1",
            "--fewshot-file",
            pool,
            "--fewshot-delimiter",
            "\\n---\\n",
            "--target-delimiter",
            "=>"
        );
        Assert.Equal(pool, (string)report["fewshot_file"]!);
        Assert.Equal(
            ("\n---\n", "=>", false),
            ((string)report["fewshot_delimiter"]!, (string)report["target_delimiter"]!, (bool)report["chat_template"]!)
        );
        Assert.Equal("10 + 10 = 20\n---\n1 + 1 =", Prompts(report)[1]);
        Assert.Equal("Say Z:=>Z\n---\nSay A:", Prompts(report)[7]);

        var turns = Report(
            model,
            "--tasks",
            tasks,
            "--limit",
            "1",
            "--num-fewshot",
            "1",
            "--fewshot-file",
            pool,
            "--chat-template",
            "--fewshot-as-multiturn"
        );
        Assert.Equal("<s>[INST] 10 + 10 = [/INST] 20</s>[INST] 1 + 1 = [/INST]", Prompts(turns)[1]);
        Assert.True((bool)turns["fewshot_as_multiturn"]!);

        var tooSmall = AlloyCli.Run("eval", model, "--tasks", tasks, "--num-fewshot", "2", "--fewshot-file", pool);
        Assert.Equal(ExitCodes.InputError, tooSmall.ExitCode);
        Assert.Equal(
            $"error: task 'sums': 2 few-shot examples asked for, but {pool} has only 1 item of it",
            tooSmall.Stderr.Trim()
        );
    }

    [Fact]
    public void A_recipe_is_evaluated_with_the_chat_template_its_merge_would_write()
    {
        string first = ChatModel("chat-a", 1),
            second = ChatModel("chat-b", 2),
            tasks = FewShotTasks();
        var recipe = _work.Write("merge.yml", TokenizerFamily.LinearRecipe(null, "", (first, 0.5), (second, 0.5)));
        var report = Report(recipe, "--tasks", tasks, "--num-fewshot", "1", "--chat-template", "--limit", "1");
        Assert.All(Prompts(report).Values, p => Assert.StartsWith("<s>[INST] ", p));
        var withoutTemplate = _work.Write("plain.yml", TokenizerFamily.LinearRecipe(null, "", (BaseModel, 1.0)));
        var refused = AlloyCli.Run("eval", withoutTemplate, "--tasks", tasks, "--chat-template", "--quiet");
        Assert.Equal(ExitCodes.InputError, refused.ExitCode);
        Assert.Contains("the model has no chat template", refused.Stderr);
    }
}
