using System.Security.Cryptography;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Alloy.LinearAlgebra;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// examples/experts (see its README.md): the committed experts score at the stated levels on their test files and the
/// base near zero; a merge of two experts beats each of them on the two tasks; and make-experts.sh is what made the
/// models — its commands' first training steps reproduce the committed logs, and the weights match SHA256SUMS.
/// </summary>
public sealed partial class ExpertExampleTests : IDisposable
{
    /// <summary>Test items per task (of 200): enough to tell 0.9 from 0.05, fast enough for the suite.</summary>
    private const int Items = 20;

    /// <summary>The level README.md states for every expert on its own task's test file.</summary>
    private const double ExpertLevel = 0.9;

    /// <summary>The most any model scores on a task it was not trained on (the base: on every task).</summary>
    private const double OtherLevel = 0.05;

    public static readonly string[] Tasks = ["increment", "cipher", "date", "length", "upper"];

    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    public static TheoryData<string> ExpertNames() => [.. Tasks];

    /// <summary>
    /// The base, one expert and one LoRA expert (their training depends on the committed base, so they check it too).
    /// </summary>
    public static TheoryData<string> ReproducedModels() => ["base", "date", "lora-date"];

    internal static string Experts(string relative) =>
        Path.Combine(ExampleTests.RepositoryRoot, "examples", "experts", relative);

    /// <summary>Exact match per task of <c>alloy eval MODEL --tasks FILE --limit N</c>.</summary>
    internal static Dictionary<string, double> Evaluate(string model, string tasks, int limit)
    {
        var result = AlloyCli.Run("eval", model, "--tasks", tasks, "--limit", limit.ToString(), "--quiet");
        Assert.True(result.ExitCode == 0, result.Stderr);
        return JsonNode.Parse(result.Stdout)!["tasks"]!
            .AsArray()
            .ToDictionary(t => (string)t!["name"]!, t => (double)t!["exact_match"]!);
    }

    [Theory]
    [MemberData(nameof(ExpertNames))]
    public void An_expert_scores_high_on_its_own_task_and_near_zero_on_the_others(string task)
    {
        var scores = Evaluate(Experts($"models/{task}"), Experts("data/test.jsonl"), Items);
        Assert.Equal(Tasks.Order(), scores.Keys.Order());
        Assert.True(scores[task] >= ExpertLevel, $"{task}: {scores[task]} on its own task");
        foreach (var other in Tasks.Where(t => t != task))
            Assert.True(scores[other] <= OtherLevel, $"{task}: {scores[other]} on {other}");
    }

    /// <summary>The same level for each LoRA expert, applied to the base as <c>base+lora-TASK</c>.</summary>
    [Theory]
    [MemberData(nameof(ExpertNames))]
    public void A_lora_expert_on_the_base_scores_high_on_its_own_task_and_near_zero_on_the_others(string task)
    {
        var scores = Evaluate(
            $"{Experts("models/base")}+{Experts($"models/lora-{task}")}",
            Experts("data/test.jsonl"),
            Items
        );
        Assert.True(scores[task] >= ExpertLevel, $"lora-{task}: {scores[task]} on its own task");
        foreach (var other in Tasks.Where(t => t != task))
            Assert.True(scores[other] <= OtherLevel, $"lora-{task}: {scores[other]} on {other}");
    }

    [Fact]
    public void The_base_scores_near_zero_on_every_task()
    {
        var scores = Evaluate(Experts("models/base"), Experts("data/test.jsonl"), Items);
        Assert.All(Tasks, task => Assert.True(scores[task] <= OtherLevel, $"base: {scores[task]} on {task}"));
    }

    [Fact]
    public void Task_arithmetic_of_two_experts_beats_each_of_them_on_the_two_tasks()
    {
        // merge-date-upper.yml: base + 1.0 · (τ_date + τ_upper).
        AlloyCli.Merge(Experts("merge-date-upper.yml"), _work["merged"]);
        var tasks = _work.Write(
            "tasks.jsonl",
            File.ReadAllText(Experts("data/date/test.jsonl")) + File.ReadAllText(Experts("data/upper/test.jsonl"))
        );
        var merged = Evaluate(_work["merged"], tasks, 2 * Items);
        var date = Evaluate(Experts("models/date"), tasks, 2 * Items);
        var upper = Evaluate(Experts("models/upper"), tasks, 2 * Items);

        double Average(Dictionary<string, double> s) => (s["date"] + s["upper"]) / 2;
        Assert.True(Average(merged) > Average(date), $"merged {Average(merged)}, date expert {Average(date)}");
        Assert.True(Average(merged) > Average(upper), $"merged {Average(merged)}, upper expert {Average(upper)}");
        // README.md's claim: the merge keeps at least 80 % of each expert's accuracy on its own task, on average.
        double normalized = (merged["date"] / date["date"] + merged["upper"] / upper["upper"]) / 2;
        Assert.True(normalized >= 0.8, $"normalised accuracy {normalized}");
    }

    [Fact]
    public void RegMean_plus_plus_of_two_experts_keeps_both_skills()
    {
        // merge-regmean-plusplus.yml: Gram matrices from each expert's training prompts, gathered behind the merged
        // blocks; README.md's claim: date 1.00, upper 1.00.
        var result = AlloyCli.Merge(
            Experts("merge-regmean-plusplus.yml"),
            _work["regmean"],
            "--statistics-cache",
            _work["cache"]
        );
        Assert.Contains("computing RegMean++ Gram matrices of 2 models", result.Stderr);
        var tasks = _work.Write(
            "tasks.jsonl",
            File.ReadAllText(Experts("data/date/test.jsonl")) + File.ReadAllText(Experts("data/upper/test.jsonl"))
        );
        var merged = Evaluate(_work["regmean"], tasks, 2 * Items);
        Assert.True(
            merged["date"] >= 0.95 && merged["upper"] >= 0.95,
            $"date {merged["date"]}, upper {merged["upper"]}"
        );
    }

    /// <summary>
    /// The README's demonstration: its main command merges two experts, and its eval command prints the table the
    /// README shows under it. Paths in the commands are the repository's; out/date-upper becomes a temporary folder of
    /// the same name (the table's column header).
    /// </summary>
    [Fact]
    public void The_READMEs_merge_and_eval_commands_run_and_print_the_table_it_shows()
    {
        string readme = File.ReadAllText(Path.Combine(ExampleTests.RepositoryRoot, "README.md"));
        var blocks = CodeBlock()
            .Matches(readme[readme.IndexOf("## Two commands", StringComparison.Ordinal)..])
            .Select(m => (Language: m.Groups[1].Value, Text: m.Groups[2].Value))
            .ToList();
        const string Prefix = "dotnet run --project src/Alloy.Cli -- ";
        string output = _work["date-upper"];
        string[] Arguments(string command)
        {
            Assert.StartsWith(Prefix, command);
            return
            [
                .. command[Prefix.Length..]
                    .Replace("\\\n", " ")
                    .Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(a =>
                        a == "out/date-upper" ? output
                        : Path.Exists(Path.Combine(ExampleTests.RepositoryRoot, a))
                            ? Path.Combine(ExampleTests.RepositoryRoot, a)
                        : a
                    ),
            ];
        }

        var merge = Arguments(blocks[0].Text.Trim());
        Assert.Equal("merge", merge[0]);
        var merged = AlloyCli.Run(merge);
        Assert.True(merged.ExitCode == 0, merged.Stderr);
        int eval = blocks.FindIndex(b => b.Language == "sh" && b.Text.Contains(" -- eval ", StringComparison.Ordinal));
        var table = AlloyCli.Run([.. Arguments(blocks[eval].Text.Trim()), "--quiet"]);
        Assert.True(table.ExitCode == 0, table.Stderr);
        Assert.Equal(blocks[eval + 1].Text, table.Stdout);
    }

    [GeneratedRegex(@"```(\w*)\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CodeBlock();

    /// <summary>
    /// make-experts.sh's commands, stopped after 10 steps: every step of them is inside the warmup, whose learning rate
    /// does not depend on the number of steps, so they are the first 10 steps of the script's runs and log the same
    /// losses, learning rates and gradient norms as the committed logs (steps 1 and 10), to the printed digits. The
    /// other experts' commands differ only in the task's name (README.md has the step for checking them all).
    /// </summary>
    [Theory]
    [MemberData(nameof(ReproducedModels))]
    public void The_first_steps_of_the_script_reproduce_its_committed_log(string model)
    {
        const string Steps = "10";
        string[] common =
        [
            "--seed",
            "0",
            "--dtype",
            "bfloat16",
            "--log-every",
            "10",
            "--steps",
            Steps,
            "--batch-size",
            "32",
        ];
        string[] command;
        if (model == "base")
        {
            var synth = AlloyCli.Run(
                "synth",
                _work["init"],
                "--fine-tunes",
                "0",
                "--layers",
                "4",
                "--hidden",
                "128",
                "--intermediate",
                "384",
                "--heads",
                "4",
                "--kv-heads",
                "4",
                "--dtype",
                "float32",
                "--seed",
                "1"
            );
            Assert.True(synth.ExitCode == 0, synth.Stderr);
            command =
            [
                "train",
                _work["init/base"],
                "--data",
                Experts("data/base.jsonl"),
                "--out",
                _work["out"],
                "--lr",
                "2e-3",
                "--warmup",
                "100",
                "--weight-decay",
                "0.1",
                .. common,
            ];
        }
        else
        {
            bool lora = model.StartsWith("lora-", StringComparison.Ordinal);
            string task = lora ? model["lora-".Length..] : model;
            var data = _work.Write(
                $"{task}.jsonl",
                File.ReadAllText(Experts($"data/{task}/train.jsonl"))
                    + File.ReadAllText(Experts($"data/{task}/replay.jsonl"))
            );
            string[] adapter = ["--lora-rank", "16", "--lora-alpha", "32", "--lora-targets", "all-linear"];
            command =
            [
                "train",
                Experts("models/base"),
                "--data",
                data,
                "--out",
                _work["out"],
                "--lr",
                lora ? "2e-3" : "3e-4",
                "--warmup",
                "20",
                "--weight-decay",
                "0",
                .. common,
                .. lora ? adapter : [],
            ];
        }
        CliResult result;
        using (DenseBackend.Use(DenseBackend.Managed))
            result = AlloyCli.Run(command); // as the script's ALLOY_LINALG=managed
        Assert.True(result.ExitCode == 0, result.Stderr);

        var logged = Normalize(File.ReadAllLines(Experts($"logs/{model}.log")));
        var run = Normalize(result.Stderr.Split('\n'));
        Assert.Equal(3, run.Count); // the header and steps 1 and 10
        Assert.Equal(run, logged.Take(run.Count));
    }

    /// <summary>
    /// A log's header and step lines without the step count ("step 10/4000" → "step 10"), which a shorter run changes.
    /// </summary>
    private static List<string> Normalize(IEnumerable<string> lines) =>
        [
            .. lines
                .Where(l =>
                    l.StartsWith("training on ", StringComparison.Ordinal)
                    || l.StartsWith("step ", StringComparison.Ordinal)
                )
                .Select(l => StepCount().Replace(l, "$1")),
        ];

    [GeneratedRegex(@"(\bstep \d+)/\d+|(?<=, )\d+ (?=steps of)")]
    private static partial Regex StepCount();

    [Fact]
    public void The_committed_weights_are_the_ones_the_script_recorded()
    {
        var recorded = File.ReadAllLines(Experts("SHA256SUMS"))
            .Where(l => l.Length > 0)
            .Select(l => l.Split("  ", 2))
            .ToDictionary(p => p[1], p => p[0]);
        Assert.Equal(
            Tasks
                .Prepend("base")
                .Select(m => $"models/{m}/model.safetensors")
                .Concat(Tasks.Select(t => $"models/lora-{t}/adapter_model.safetensors"))
                .Order(),
            recorded.Keys.Order()
        );
        foreach (var (file, hash) in recorded)
            Assert.Equal(hash, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Experts(file)))));
    }
}
