using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Alloy.Checkpoints;
using Alloy.Output;
using Alloy.Runtime.Evaluation;
using Alloy.Tokenizers;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Cli;

/// <summary>
/// <c>alloy eval MODEL --text FILE --tasks FILE.jsonl</c>: perplexity and task accuracy of a model, as JSON.
/// </summary>
public static class EvalCommand
{
    public const string TasksHelp =
        "Tasks file: JSON Lines, one item per line. Multiple choice: {\"type\": \"choice\", \"task\": NAME, "
        + "\"context\": TEXT, \"choices\": [TEXT, ...], \"answer\": INDEX} (the choice with the highest log-likelihood "
        + "after the context is picked; accuracy and length-normalised accuracy). Generation: {\"type\": \"generate\", "
        + "\"task\": NAME, \"prompt\": TEXT, \"answer\": TEXT or [TEXT, ...], \"stop\": [TEXT, ...], \"max_tokens\": "
        + "N} (greedy; exact match). \"task\" groups items in the report (default: the type); \"id\" labels an item; "
        + "\"fewshot_delimiter\" and \"target_delimiter\" "
        + "override --fewshot-delimiter and --target-delimiter for the item.";

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var defaults = EvaluationOptions.Default;
        var models = new Argument<string[]>("model")
        {
            Description =
                "A Hugging Face model folder (config.json, weights, tokenizer.json) of a Llama, Mistral or Qwen2 "
                + "model, or a merge recipe (.yml), merged in memory and evaluated without writing it (the same report "
                + "as its written folder's), or MODEL+ADAPTER: a model folder with a PEFT LoRA adapter applied. "
                + "Several models are evaluated one after another on the same data and compared in a table.",
            Arity = ArgumentArity.OneOrMore,
        };
        var text = new Option<string?>("--text")
        {
            Description =
                "A UTF-8 text file whose perplexity to measure (sliding windows of --context tokens every --stride "
                + "tokens).",
            HelpName = "FILE",
        };
        var tasks = new Option<string?>("--tasks")
        {
            Description = "A JSON Lines tasks file (schema below) to score.",
            HelpName = "FILE",
        };
        var output = new Option<string?>("--output", "-o")
        {
            Description =
                "Write the JSON report to this file (with several models: every model's report, under \"models\").",
            HelpName = "FILE",
        };
        var json = new Option<bool>("--json")
        {
            Description = "With several models: print the JSON report rather than the table.",
        };
        var batchSize = new Option<int>("--batch-size")
        {
            Description =
                "Sequences (windows, context + choice pairs, prompts) per forward pass. Results do not depend on it.",
            DefaultValueFactory = _ => defaults.BatchSize,
            HelpName = "N",
        };
        var batchTokens = new Option<int>("--batch-tokens")
        {
            Description = "Tokens per forward pass at most (a longer sequence runs alone): bounds memory.",
            DefaultValueFactory = _ => defaults.MaxBatchTokens,
            HelpName = "N",
        };
        var maxTokens = new Option<int>("--max-tokens")
        {
            Description = "New tokens per generation, unless an item gives max_tokens.",
            DefaultValueFactory = _ => defaults.MaxNewTokens,
            HelpName = "N",
        };
        var limit = new Option<int?>("--limit")
        {
            Description = "Score only the first N items of each task.",
            HelpName = "N",
        };
        var context = new Option<int?>("--context")
        {
            Description =
                $"Tokens the model sees at once (default: config.json's max_position_embeddings, at most "
                + $"{EvaluationOptions.DefaultContextCap}).",
            HelpName = "N",
        };
        var stride = new Option<int?>("--stride")
        {
            Description =
                "Perplexity: tokens between window starts (default: half the context); each window scores only "
                + "tokens no earlier window scored.",
            HelpName = "N",
        };
        var ignoreCase = new Option<bool>("--ignore-case") { Description = "Exact match ignores letter case." };
        var noTrim = new Option<bool>("--no-trim")
        {
            Description = "Exact match keeps leading and trailing whitespace (trimmed by default).",
        };
        var samples = new Option<bool>("--samples")
        {
            Description =
                "Add every item's outcome to the report: the full prompt it was given (few-shot "
                + "examples and chat template included), and its log-likelihoods and picks or generated text.",
        };
        var numFewShot = new Option<int>("--num-fewshot")
        {
            Description =
                "Put N solved examples of the item's task before each item (lm-eval-harness's "
                + "--num_fewshot): its context or prompt, then its answer (a choice item's right choice, a generate "
                + "item's --target-delimiter and first answer), then --fewshot-delimiter. Drawn from --fewshot-file, "
                + "else from the other items of the task in the tasks file (never the "
                + "item itself).",
            DefaultValueFactory = _ => 0,
            HelpName = "N",
        };
        var fewShotFile = new Option<string?>("--fewshot-file")
        {
            Description =
                "A tasks file (same format) to draw few-shot examples from, by task name, instead of "
                + "the tasks file.",
            HelpName = "FILE",
        };
        var seed = new Option<int>("--seed")
        {
            Description =
                "Seed of the few-shot draw (the default is lm-eval-harness's). Each item's examples depend "
                + "only on the seed, its task and its line.",
            DefaultValueFactory = _ => PromptOptions.DefaultSeed,
            HelpName = "N",
        };
        var fewShotDelimiter = new Option<string>("--fewshot-delimiter")
        {
            Description =
                "Text after each few-shot example (default \"\\n\\n\", a blank line); \\n, \\t and "
                + "\\\\ are understood.",
            DefaultValueFactory = _ => PromptOptions.Default.FewShotDelimiter,
            HelpName = "TEXT",
        };
        var targetDelimiter = new Option<string>("--target-delimiter")
        {
            Description =
                "Text between a question and its answer (default \" \"): put before a generate "
                + "example's answer; choices carry it at their front already (\" 4\") and lose it under "
                + "--chat-template.",
            DefaultValueFactory = _ => PromptOptions.Default.TargetDelimiter,
            HelpName = "TEXT",
        };
        var chatTemplate = new Option<bool>("--chat-template")
        {
            Description =
                "Render each prompt (few-shot examples included) as a user message with the model's chat "
                + "template and its generation prompt (lm-eval-harness's --apply_chat_template); choices are "
                + "scored right after it, without their leading --target-delimiter.",
        };
        var multiturn = new Option<bool>("--fewshot-as-multiturn")
        {
            Description = "With --chat-template, each few-shot example is a user turn and an assistant turn.",
        };
        var threads = new Option<int?>("--threads", "-j")
        {
            Description = "Threads (default: all cores). Results do not depend on it.",
            HelpName = "N",
        };
        var quiet = new Option<bool>("--quiet", "-q")
        {
            Description = "No progress bar, and no summary line when the report goes to a file.",
        };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Stack traces with errors." };

        var command = new Command(
            "eval",
            "Measure a model: perplexity of a text (--text) and accuracy on multiple-choice and generation tasks "
                + "(--tasks). Prints a JSON report (model, tokens, perplexity, per-task accuracy, tokens/s, seconds); "
                + "with several models, a table side by side. "
                + TasksHelp
        )
        {
            models,
            text,
            tasks,
            output,
            json,
            batchSize,
            batchTokens,
            maxTokens,
            limit,
            context,
            stride,
            ignoreCase,
            noTrim,
            samples,
            numFewShot,
            fewShotFile,
            seed,
            fewShotDelimiter,
            targetDelimiter,
            chatTemplate,
            multiturn,
            threads,
            quiet,
            verbose,
        };
        command.SetAction(parse => ErrorPolicy.Run(stderr, parse.GetValue(verbose), cancellation =>
            {
                string[] modelPaths = parse.GetValue(models)!;
                string? textPath = parse.GetValue(text),
                    tasksPath = parse.GetValue(tasks),
                    outputPath = parse.GetValue(output);
                if (textPath is null && tasksPath is null)
                    throw new AlloyException("nothing to evaluate; give --text FILE, --tasks FILE.jsonl or both");
                if (parse.GetValue(limit) is < 1)
                    throw new AlloyException($"--limit: {parse.GetValue(limit)} items; give 1 or more");
                if (parse.GetValue(json) && modelPaths.Length == 1)
                    throw new AlloyException(
                        "--json chooses JSON over the table of several models; one model's report is JSON already"
                    );
                foreach (var path in modelPaths)
                {
                    if (outputPath is not null)
                        OutputFolder.CheckFileOutside(outputPath, path);
                    if (
                        !RuntimeInputs.IsRecipe(path)
                        && RuntimeInputs.AdaptedBase(path) is null
                        && !Directory.Exists(path)
                    )
                        throw new AlloyException($"model folder '{path}' does not exist");
                }
                var options = new EvaluationOptions
                {
                    BatchSize = parse.GetValue(batchSize),
                    MaxBatchTokens = parse.GetValue(batchTokens),
                    MaxNewTokens = parse.GetValue(maxTokens),
                    Context = parse.GetValue(context),
                    Stride = parse.GetValue(stride),
                    IgnoreCase = parse.GetValue(ignoreCase),
                    Trim = !parse.GetValue(noTrim),
                };
                options.Validate();
                var prompts = new PromptOptions
                {
                    FewShot = parse.GetValue(numFewShot),
                    Seed = parse.GetValue(seed),
                    FewShotDelimiter = Unescape(parse.GetValue(fewShotDelimiter)!),
                    TargetDelimiter = Unescape(parse.GetValue(targetDelimiter)!),
                    ChatTemplate = parse.GetValue(chatTemplate),
                    FewShotAsMultiturn = parse.GetValue(multiturn),
                };
                prompts.Validate();
                string? poolPath = parse.GetValue(fewShotFile);
                if (tasksPath is null && (prompts.ChangesPrompts || poolPath is not null))
                    throw new AlloyException(
                        "--num-fewshot, --fewshot-file and --chat-template shape task prompts; give --tasks FILE.jsonl"
                    );
                if (poolPath is not null && prompts.FewShot == 0)
                    throw new AlloyException(
                        "--fewshot-file gives few-shot examples; say how many with --num-fewshot N"
                    );

                // Read the inputs before loading a model, so a mistake in them is reported at once.
                string? corpus = textPath is null ? null : ReadText(textPath);
                var allItems = tasksPath is null ? null : TaskFile.Read(tasksPath);
                var items =
                    allItems is not null && parse.GetValue(limit) is { } perTask
                        ? TaskFile.Limit(allItems, perTask)
                        : allItems;
                bool poolIsTasksFile = poolPath is null || SameFile(poolPath, tasksPath!);
                var pool =
                    items is null || prompts.FewShot == 0 ? null
                    : poolIsTasksFile ? FewShotPool.TasksFile(allItems!, tasksPath!)
                    : FewShotPool.File(TaskFile.Read(poolPath!), poolPath!);
                var sampler = pool is null ? null : new FewShotSampler(pool, prompts.FewShot, prompts.Seed, items!);

                int threadCount = parse.GetValue(threads) ?? Environment.ProcessorCount;
                var diagnostics = new Diagnostics { OnWarning = w => stderr.WriteLine($"warning: {w}") };
                bool show = !parse.GetValue(quiet);
                var names = ColumnNames(modelPaths);
                var reports = Progress.Run(show, "loading", bar => modelPaths
                        .Select(
                            (modelPath, m) =>
                            {
                                // With several models, each phase says whose it is.
                                string prefix = modelPaths.Length > 1 ? $"{names[m]}: " : "";
                                bar?.Update(new ProgressUpdate(prefix + "loading"));
                                var clock = Stopwatch.StartNew();
                                // Each model's own chat template; a folder's is checked before its weights load.
                                ChatPrompt? chat = null;
                                void CheckTokenizer(TextTokenizer t) =>
                                    chat = prompts.ChatTemplate ? ChatPrompt.For(t) : null;
                                var (llama, tokenizer) = RuntimeInputs.IsRecipe(modelPath)
                                    ? RuntimeInputs.MergeInMemory(modelPath, threadCount, diagnostics, cancellation)
                                    : RuntimeInputs.LoadModel(modelPath, threadCount, CheckTokenizer);
                                // A recipe's tokenizer (its donor's, or as the recipe sets it) exists only once it is
                                // merged.
                                if (RuntimeInputs.IsRecipe(modelPath))
                                    CheckTokenizer(tokenizer);
                                var modelItems =
                                    items is not null && prompts.ChangesPrompts
                                        ? TaskPrompts.Build(items, prompts, sampler, chat)
                                        : items;
                                Action<EvaluationProgress>? progress = bar is null
                                    ? null
                                    : p => bar.Update(new ProgressUpdate(prefix + p.Stage, p.Done, p.Total, p.Unit));
                                var routing = llama.Routing?.Snapshot();
                                var perplexity = corpus is null
                                    ? null
                                    : Perplexity.Measure(llama, tokenizer, corpus, options, progress, cancellation);
                                var results = modelItems is null
                                    ? null
                                    : new TaskEvaluation(llama, tokenizer, options).Run(
                                        modelItems,
                                        progress,
                                        cancellation
                                    );
                                return new EvaluationReport
                                {
                                    Model = modelPath,
                                    Parameters = llama.Parameters.ElementCount,
                                    Backend = llama.Compute.Backend.Name,
                                    Threads = llama.Compute.Threads,
                                    TextFile = textPath,
                                    Perplexity = perplexity,
                                    TasksFile = tasksPath,
                                    Tasks = results ?? [],
                                    Elapsed = clock.Elapsed,
                                    Prompts = prompts,
                                    FewShotFile = poolIsTasksFile ? null : poolPath,
                                    Routing = routing is null ? null : llama.Routing!.Snapshot().Since(routing),
                                };
                            }
                        )
                        .ToList());

                bool samplesToo = parse.GetValue(samples);
                string report = reports.Count == 1 ? reports[0].ToJson(samplesToo) : Combined(reports, samplesToo);
                if (outputPath is not null)
                {
                    var folder = Path.GetDirectoryName(Path.GetFullPath(outputPath));
                    if (folder is not null)
                        Directory.CreateDirectory(folder);
                    File.WriteAllText(outputPath, report + Environment.NewLine);
                }
                if (reports.Count > 1 && !parse.GetValue(json))
                    stdout.Write(Table(reports, names));
                else if (outputPath is null)
                    stdout.WriteLine(report);
                if (outputPath is not null && show)
                    stdout.WriteLine(reports.Count == 1 ? Summary(reports[0], outputPath) : $"report in {outputPath}");
                return ExitCodes.Success;
            }));
        return command;
    }

    /// <summary>Several models' reports as one JSON object: {"models": [report, …]}.</summary>
    private static string Combined(IReadOnlyList<EvaluationReport> reports, bool samples)
    {
        var all = new JsonArray([.. reports.Select(r => JsonNode.Parse(r.ToJson(samples)))]);
        return new JsonObject { ["models"] = all }.ToJsonString(
            new JsonSerializerOptions
            {
                WriteIndented = true,
                Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
            }
        );
    }

    /// <summary>
    /// Each model's column title: its folder or file name (both, for MODEL+ADAPTER), or the path as given when two
    /// names collide.
    /// </summary>
    private static string[] ColumnNames(string[] paths)
    {
        static string Name(string p) => Path.GetFileName(Path.TrimEndingDirectorySeparator(p));
        var names = paths
            .Select(p => RuntimeInputs.AdaptedBase(p) is { } b ? $"{Name(b)}+{Name(p[(b.Length + 1)..])}" : Name(p))
            .ToArray();
        return names.Distinct(StringComparer.Ordinal).Count() == names.Length ? names : paths;
    }

    /// <summary>
    /// The models side by side: perplexity (lower is better), then each task's accuracy (higher is better); the best
    /// value of a row is marked with * (unless the whole row is one value).
    /// </summary>
    public static string Table(IReadOnlyList<EvaluationReport> reports, IReadOnlyList<string> names)
    {
        var rows = new List<(string Label, double?[] Values, bool LowerIsBetter, Func<double, string> Format)>();
        static string Percent(double v) => (100 * v).ToString("F1", CultureInfo.InvariantCulture) + "%";
        if (reports[0].Perplexity is not null)
            rows.Add(
                ("perplexity", [.. reports.Select(r => r.Perplexity?.Value)], true, v =>
                    v.ToString("G5", CultureInfo.InvariantCulture)
                )
            );
        foreach (var task in reports[0].Tasks)
        {
            double?[] Of(Func<TaskResult, double?> value) =>
                [.. reports.Select(r => r.Tasks.FirstOrDefault(t => t.Name == task.Name) is { } t ? value(t) : null)];
            if (task.Type == TaskFile.ChoiceType)
            {
                rows.Add(($"{task.Name} accuracy", Of(t => t.Accuracy), false, Percent));
                rows.Add(($"{task.Name} accuracy (norm)", Of(t => t.AccuracyNormalized), false, Percent));
            }
            else
                rows.Add(($"{task.Name} exact match", Of(t => t.Accuracy), false, Percent));
        }
        var cells = rows.Select(row =>
            {
                var present = row.Values.Where(v => v is not null).Select(v => v!.Value).ToList();
                // A row where every model scores the same has no best.
                double? best =
                    present.Distinct().Count() < 2 ? null
                    : row.LowerIsBetter ? present.Min()
                    : present.Max();
                // A space where others have the star keeps the numbers aligned.
                return row
                    .Values.Select(v => v is not { } x ? "- " : row.Format(x) + (x == best ? "*" : " "))
                    .ToArray();
            })
            .ToList();
        int labelWidth = rows.Max(r => r.Label.Length);
        var widths = names.Select((n, m) => Math.Max(n.Length + 1, cells.Max(c => c[m].Length))).ToArray();
        var table = new StringBuilder();
        table.Append(new string(' ', labelWidth));
        for (int m = 0; m < names.Count; m++)
            table.Append("  ").Append((names[m] + " ").PadLeft(widths[m]));
        table.Append('\n');
        for (int r = 0; r < rows.Count; r++)
        {
            table.Append(rows[r].Label.PadRight(labelWidth));
            for (int m = 0; m < names.Count; m++)
                table.Append("  ").Append(cells[r][m].PadLeft(widths[m]));
            table.Append('\n');
        }
        return string.Join('\n', table.ToString().Split('\n').Select(line => line.TrimEnd()));
    }

    /// <summary>One line: the perplexity and each task's score.</summary>
    public static string Summary(EvaluationReport report, string outputPath)
    {
        var parts = new List<string>();
        if (report.Perplexity is { } p)
            parts.Add($"perplexity {p.Value:G5} over {p.ScoredTokens:N0} tokens");
        parts.AddRange(
            report.Tasks.Select(t =>
                t.Type == TaskFile.ChoiceType
                    ? $"{t.Name} accuracy {t.Accuracy:P1} (norm {t.AccuracyNormalized:P1}) of {t.Items}"
                    : $"{t.Name} exact match {t.Accuracy:P1} of {t.Items}"
            )
        );
        return $"{string.Join("; ", parts)}; report in {outputPath} ({report.Elapsed.TotalSeconds:F1} s)";
    }

    /// <summary>A delimiter as typed on a command line: \n, \t and \\ stand for newline, tab and backslash.</summary>
    public static string Unescape(string text)
    {
        var result = new System.Text.StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            char next = i + 1 < text.Length ? text[i + 1] : '\0';
            if (text[i] == '\\' && next is 'n' or 't' or '\\')
            {
                result.Append(
                    next switch
                    {
                        'n' => '\n',
                        't' => '\t',
                        _ => '\\',
                    }
                );
                i++;
            }
            else
                result.Append(text[i]);
        }
        return result.ToString();
    }

    private static bool SameFile(string a, string b) =>
        string.Equals(Path.GetFullPath(a), Path.GetFullPath(b), StringComparison.Ordinal);

    private static string ReadText(string path)
    {
        if (!File.Exists(path))
            throw new AlloyException($"--text: {path}: no such file");
        return InputFile.ReadAllText(path);
    }
}
