using System.Text.Json.Nodes;
using Alloy.Cli;
using Alloy.Runtime;
using Alloy.Runtime.Evaluation;
using Alloy.Runtime.Models;
using Alloy.Tests.Support;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Tests.EndToEnd;

/// <summary><c>alloy eval</c> through <see cref="Program.Run"/> on the bundled example model and example data.</summary>
public sealed class EvalCommandTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    private static string Example(string relative) => Path.Combine(ExampleTests.RepositoryRoot, "examples", relative);

    private static string BaseModel => Example("models/base");

    [Fact]
    public void The_example_text_and_tasks_give_a_report_that_agrees_with_the_library()
    {
        var result = AlloyCli.Run("eval", BaseModel, "--text", Example("eval/text.txt"), "--tasks", Example("eval/tasks.jsonl"), "--quiet");
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
        var tasks = _work.Write("tasks.jsonl", string.Join('\n',
            """{"type": "choice", "task": "a", "context": "x", "choices": [" y", " z"], "answer": 1}""",
            """{"type": "choice", "task": "a", "id": "second", "context": "x", "choices": [" y", " z"], "answer": 0}""",
            """{"type": "generate", "task": "g", "id": 9, "prompt": "Hi", "answer": "there", "max_tokens": 3}"""));
        var output = _work["reports/eval.json"];
        var result = AlloyCli.Run("eval", BaseModel, "--tasks", tasks, "--limit", "1", "--samples", "--output", output, "-j", "1");
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
        var result = AlloyCli.Run(["eval", .. models, "--text", Example("eval/text.txt"), "--tasks", Example("eval/tasks.jsonl"), "--limit", "3", "--output", report, "--quiet"]);
        Assert.True(result.ExitCode == 0, result.Stderr);

        // Each model's report is the one it gets alone.
        var reports = JsonNode.Parse(File.ReadAllText(report))!["models"]!.AsArray();
        Assert.Equal(models, reports.Select(r => (string)r!["model"]!));
        var alone = models.Select(m => JsonNode.Parse(AlloyCli.Run("eval", m, "--text", Example("eval/text.txt"), "--tasks", Example("eval/tasks.jsonl"), "--limit", "3", "--quiet").Stdout)!).ToList();
        for (int m = 0; m < models.Length; m++)
        {
            Assert.Equal((double)alone[m]["perplexity"]!["perplexity"]!, (double)reports[m]!["perplexity"]!["perplexity"]!);
            static IEnumerable<double> Scores(JsonNode report) => report["tasks"]!.AsArray().Select(t => (double)(t!["accuracy"] ?? t["exact_match"])!);
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
            string expected = perplexities[m].ToString("G5", System.Globalization.CultureInfo.InvariantCulture) + (perplexities[m] == perplexities.Min() ? "*" : "");
            Assert.Equal(expected, cells[m + 1]);
        }
        Assert.StartsWith("arithmetic accuracy ", lines[2]);
        Assert.StartsWith("arithmetic accuracy (norm) ", lines[3]);
        Assert.Contains(lines, l => l.StartsWith("capitals exact match ", StringComparison.Ordinal));
        Assert.Equal(2 + 2 * 2 + 2, lines.Length);
        Assert.All(lines.Skip(1), l => Assert.Contains("*", l));

        // --json prints the same report instead of the table.
        var json = AlloyCli.Run(["eval", .. models, "--text", Example("eval/text.txt"), "--json", "--quiet"]);
        Assert.Equal(3, JsonNode.Parse(json.Stdout)!["models"]!.AsArray().Count);
    }

    [Fact]
    public void A_malformed_tasks_line_fails_with_one_line_naming_it()
    {
        var tasks = _work.Write("bad.jsonl", """{"type": "choice", "context": "x", "choices": [" y", " z"], "answer": 0}""" + "\n" +
            """{"type": "choice", "context": "x", "choices": [" y", " z"], "answer": 5}""" + "\n");
        var result = AlloyCli.Run("eval", BaseModel, "--tasks", tasks);
        Assert.Equal(ExitCodes.InputError, result.ExitCode);
        Assert.Equal($"error: {tasks}:2: \"answer\" is 5 but there are 2 choices (indices 0 to 1)", result.Stderr.Trim());
        Assert.Empty(result.Stdout);
    }

    [Theory]
    [InlineData("nothing to evaluate")]
    [InlineData("--text", "TEXT", "--batch-size", "0", "batch size must be at least 1")]
    [InlineData("--text", "TEXT", "--stride", "9", "--context", "8", "stride 9 is longer than the context 8")]
    [InlineData("--text", "/nonexistent/text.txt", "no such file")]
    [InlineData("--tasks", "/nonexistent/tasks.jsonl", "no such tasks file")]
    [InlineData("--limit", "0", "--tasks", "x", "--limit: 0")]
    public void Mistakes_fail_with_one_line(params string[] argsThenExpected)
    {
        var args = argsThenExpected[..^1].Select(a => a == "TEXT" ? Example("eval/text.txt") : a);
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
        foreach (var file in Directory.GetFiles(BaseModel)) File.Copy(file, Path.Combine(model, Path.GetFileName(file)));
        var before = Directory.GetFiles(model).Order().ToArray();
        var result = AlloyCli.Run("eval", model, "--text", Example("eval/text.txt"), "--output", Path.Combine(model, "eval.json"));
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
        foreach (var option in new[] { "--text", "--tasks", "--output", "--batch-size", "--max-tokens", "--limit", "--context", "--stride", "--samples", "\"type\": \"choice\"" })
            Assert.Contains(option, help.Stdout);
    }
}
