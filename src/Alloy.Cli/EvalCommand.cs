using System.CommandLine;
using System.Diagnostics;
using Alloy.Output;
using Alloy.Runtime.Evaluation;

namespace Alloy.Cli;

/// <summary><c>alloy eval MODEL --text FILE --tasks FILE.jsonl</c>: perplexity and task accuracy of a model, as JSON.</summary>
public static class EvalCommand
{
    public const string TasksHelp =
        "Tasks file: JSON Lines, one item per line. Multiple choice: {\"type\": \"choice\", \"task\": NAME, \"context\": TEXT, " +
        "\"choices\": [TEXT, ...], \"answer\": INDEX} (the choice with the highest log-likelihood after the context is picked; " +
        "accuracy and length-normalised accuracy). Generation: {\"type\": \"generate\", \"task\": NAME, \"prompt\": TEXT, " +
        "\"answer\": TEXT or [TEXT, ...], \"stop\": [TEXT, ...], \"max_tokens\": N} (greedy; exact match). \"task\" groups items " +
        "in the report (default: the type); \"id\" labels an item.";

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var defaults = EvaluationOptions.Default;
        var model = new Argument<string>("model")
        {
            Description = "A Hugging Face model folder (config.json, weights, tokenizer.json) of a Llama, Mistral or Qwen2 model, " +
                          "or a merge recipe (.yml), merged in memory and evaluated without writing it (the same report as its written folder's).",
        };
        var text = new Option<string?>("--text") { Description = "A UTF-8 text file whose perplexity to measure (sliding windows of --context tokens every --stride tokens).", HelpName = "FILE" };
        var tasks = new Option<string?>("--tasks") { Description = "A JSON Lines tasks file (schema below) to score.", HelpName = "FILE" };
        var output = new Option<string?>("--output", "-o") { Description = "Write the JSON report to this file instead of stdout.", HelpName = "FILE" };
        var batchSize = new Option<int>("--batch-size") { Description = "Sequences (windows, context + choice pairs, prompts) per forward pass. Results do not depend on it.", DefaultValueFactory = _ => defaults.BatchSize, HelpName = "N" };
        var batchTokens = new Option<int>("--batch-tokens") { Description = "Tokens per forward pass at most (a longer sequence runs alone): bounds memory.", DefaultValueFactory = _ => defaults.MaxBatchTokens, HelpName = "N" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "New tokens per generation, unless an item gives max_tokens.", DefaultValueFactory = _ => defaults.MaxNewTokens, HelpName = "N" };
        var limit = new Option<int?>("--limit") { Description = "Score only the first N items of each task.", HelpName = "N" };
        var context = new Option<int?>("--context") { Description = $"Tokens the model sees at once (default: config.json's max_position_embeddings, at most {EvaluationOptions.DefaultContextCap}).", HelpName = "N" };
        var stride = new Option<int?>("--stride") { Description = "Perplexity: tokens between window starts (default: half the context); each window scores only tokens no earlier window scored.", HelpName = "N" };
        var ignoreCase = new Option<bool>("--ignore-case") { Description = "Exact match ignores letter case." };
        var noTrim = new Option<bool>("--no-trim") { Description = "Exact match keeps leading and trailing whitespace (trimmed by default)." };
        var samples = new Option<bool>("--samples") { Description = "Add every item's outcome to the report (log-likelihoods and picks, or the generated text)." };
        var threads = new Option<int?>("--threads", "-j") { Description = "Threads (default: all cores). Results do not depend on it.", HelpName = "N" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "No progress bar, and no summary line when the report goes to a file." };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Stack traces with errors." };

        var command = new Command("eval",
            "Measure a model: perplexity of a text (--text) and accuracy on multiple-choice and generation tasks (--tasks). " +
            "Prints a JSON report (model, tokens, perplexity, per-task accuracy, tokens/s, seconds). " + TasksHelp)
        {
            model, text, tasks, output, batchSize, batchTokens, maxTokens, limit, context, stride, ignoreCase, noTrim, samples, threads, quiet, verbose,
        };
        command.SetAction(parse => ErrorPolicy.Run(stderr, parse.GetValue(verbose), cancellation =>
        {
            var clock = Stopwatch.StartNew();
            string modelPath = parse.GetValue(model)!;
            string? textPath = parse.GetValue(text), tasksPath = parse.GetValue(tasks), outputPath = parse.GetValue(output);
            if (textPath is null && tasksPath is null) throw new AlloyException("nothing to evaluate; give --text FILE, --tasks FILE.jsonl or both");
            if (parse.GetValue(limit) is < 1) throw new AlloyException($"--limit: {parse.GetValue(limit)} items; give 1 or more");
            if (outputPath is not null) OutputFolder.CheckFileOutside(outputPath, modelPath);
            var options = new EvaluationOptions
            {
                BatchSize = parse.GetValue(batchSize), MaxBatchTokens = parse.GetValue(batchTokens), MaxNewTokens = parse.GetValue(maxTokens),
                Context = parse.GetValue(context), Stride = parse.GetValue(stride), IgnoreCase = parse.GetValue(ignoreCase), Trim = !parse.GetValue(noTrim),
            };
            options.Validate();

            // Read the inputs before loading the model, so a mistake in them is reported at once.
            string? corpus = textPath is null ? null : ReadText(textPath);
            var items = tasksPath is null ? null : TaskFile.Read(tasksPath);
            if (items is not null && parse.GetValue(limit) is { } perTask) items = TaskFile.Limit(items, perTask);

            int threadCount = parse.GetValue(threads) ?? Environment.ProcessorCount;
            var diagnostics = new Diagnostics { OnWarning = w => stderr.WriteLine($"warning: {w}") };
            var (llama, tokenizer) = RuntimeInputs.IsRecipe(modelPath)
                ? RuntimeInputs.MergeInMemory(modelPath, threadCount, diagnostics, cancellation)
                : RuntimeInputs.LoadModel(modelPath, threadCount);
            bool show = !parse.GetValue(quiet);
            var (perplexity, results) = Progress.Track(show, "loading", bytes: false, update =>
            {
                Action<EvaluationProgress>? progress = update is null ? null : p => update(p.Done, p.Total, $"{p.Stage}: {p.Done:N0}/{p.Total:N0} {p.Unit}");
                var ppl = corpus is null ? null : Perplexity.Measure(llama, tokenizer, corpus, options, progress, cancellation);
                var scored = items is null ? null : new TaskEvaluation(llama, tokenizer, options).Run(items, progress, cancellation);
                return (ppl, scored);
            });
            var report = new EvaluationReport
            {
                Model = modelPath, Parameters = llama.Parameters.ElementCount, Backend = llama.Compute.Backend.Name, Threads = llama.Compute.Threads,
                TextFile = textPath, Perplexity = perplexity, TasksFile = tasksPath, Tasks = results ?? [], Elapsed = clock.Elapsed,
            };
            string json = report.ToJson(parse.GetValue(samples));
            if (outputPath is null)
            {
                stdout.WriteLine(json);
                return ExitCodes.Success;
            }
            var folder = Path.GetDirectoryName(Path.GetFullPath(outputPath));
            if (folder is not null) Directory.CreateDirectory(folder);
            File.WriteAllText(outputPath, json + Environment.NewLine);
            if (show) stdout.WriteLine(Summary(report, outputPath));
            return ExitCodes.Success;
        }));
        return command;
    }

    /// <summary>One line: the perplexity and each task's score.</summary>
    public static string Summary(EvaluationReport report, string outputPath)
    {
        var parts = new List<string>();
        if (report.Perplexity is { } p) parts.Add($"perplexity {p.Value:G5} over {p.ScoredTokens:N0} tokens");
        parts.AddRange(report.Tasks.Select(t => t.Type == TaskFile.ChoiceType
            ? $"{t.Name} accuracy {t.Accuracy:P1} (norm {t.AccuracyNormalized:P1}) of {t.Items}"
            : $"{t.Name} exact match {t.Accuracy:P1} of {t.Items}"));
        return $"{string.Join("; ", parts)}; report in {outputPath} ({report.Elapsed.TotalSeconds:F1} s)";
    }

    private static string ReadText(string path)
    {
        if (!File.Exists(path)) throw new AlloyException($"--text: {path}: no such file");
        return File.ReadAllText(path);
    }
}
