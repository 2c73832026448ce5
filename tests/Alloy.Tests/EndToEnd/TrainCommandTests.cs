using System.Globalization;
using System.Text.RegularExpressions;
using Alloy.Checkpoints;
using Alloy.Cli;
using Alloy.Runtime.Models;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// <c>alloy train</c>, <c>alloy fisher</c> and <c>alloy regmean</c> through the CLI's entry point, on a model made by
/// <c>alloy synth</c>: training lowers the loss and writes a model that loads and merges; bad input fails in one line.
/// </summary>
public sealed class TrainCommandTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    private string FreshModel() => AlloyCli.FreshModel(_work["synth"], seed: 4);

    /// <summary>Digit sums as prompt/completion pairs: only the answer and EOS are scored.</summary>
    private string AdditionData()
    {
        var lines = new List<string>();
        for (int a = 0; a < 10; a++)
        for (int b = 0; b < 10; b++)
            lines.Add($"{{\"prompt\": \"{a}+{b}=\", \"completion\": \"{(a + b) % 10}\"}}");
        return _work.Write("sums.jsonl", string.Join("\n", lines) + "\n");
    }

    [Fact]
    public void Train_lowers_the_loss_and_writes_a_model_that_loads_and_merges()
    {
        var model = FreshModel();
        var result = AlloyCli.Run(
            "train",
            model,
            "--data",
            AdditionData(),
            "--out",
            _work["trained"],
            "--steps",
            "60",
            "--batch-size",
            "20",
            "--lr",
            "3e-3",
            "--warmup",
            "5",
            "--seed",
            "1",
            "--dtype",
            "bfloat16"
        );
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains("training on 100 examples (200 scored tokens), 60 steps of 20", result.Stderr);
        var losses = Regex
            .Matches(result.Stderr, @"step (\d+)/60 .* loss ([0-9.]+)")
            .Select(m => double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture))
            .ToList();
        Assert.True(losses.Count >= 20, result.Stderr);
        Assert.True(losses[^1] < 0.5 * losses[0], result.Stderr);
        Assert.Matches(
            @"^trained 60 steps \(12\.00 epochs\) in [0-9.]+ s: loss [0-9.]+ → [0-9.]+; wrote .*trained \(bfloat16\)\n$",
            result.Stdout
        );

        var trained = LlamaModel.Load(_work["trained"]);
        Assert.Equal(32, trained.Config.HiddenSize);
        Assert.Contains("\"torch_dtype\": \"bfloat16\"", File.ReadAllText(_work["trained/config.json"]));
        Assert.True(File.Exists(_work["trained/tokenizer.json"]));

        var config = _work.Write(
            "merge.yml",
            $"merge_method: linear\nmodels:\n  - model: {model}\n    parameters: {{weight: 0.5}}\n  - model: "
                + $"{_work["trained"]}\n    parameters: {{weight: 0.5}}\ndtype: float32\n"
        );
        AlloyCli.Merge(config, _work["merged"]);
        Assert.Equal(32, LlamaModel.Load(_work["merged"]).Config.HiddenSize);
    }

    [Fact]
    public void Log_every_prints_a_line_every_n_steps_and_the_first_and_last()
    {
        var model = FreshModel();
        var result = AlloyCli.Run(
            "train",
            model,
            "--data",
            AdditionData(),
            "--out",
            _work["trained"],
            "--steps",
            "23",
            "--batch-size",
            "20",
            "--log-every",
            "5"
        );
        Assert.True(result.ExitCode == 0, result.Stderr);
        var logged = Regex
            .Matches(result.Stderr, @"^step (\d+)/23 ", RegexOptions.Multiline)
            .Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
        Assert.Equal([1, 5, 10, 15, 20, 23], logged);
    }

    [Fact]
    public void Fisher_and_regmean_write_statistics_named_after_the_parameters()
    {
        var model = FreshModel();
        var data = _work.Write("text.txt", "hello world\n\nthe quick brown fox\njumps over the lazy dog\n");
        var fisher = AlloyCli.Run(
            "fisher",
            model,
            "--data",
            data,
            "--out",
            _work["stats/fisher.safetensors"],
            "--quiet"
        );
        Assert.True(fisher.ExitCode == 0, fisher.Stderr);
        Assert.Contains("diagonal_fisher, 3 examples", fisher.Stdout);
        var regmean = AlloyCli.Run(
            "regmean",
            model,
            "--data",
            data,
            "--out",
            _work["stats/grams.safetensors"],
            "--batch-size",
            "2",
            "--quiet"
        );
        Assert.True(regmean.ExitCode == 0, regmean.Stderr);
        // bytes + BOS + EOS
        int tokens = "hello world".Length + "the quick brown fox".Length + "jumps over the lazy dog".Length + 3 * 2;
        Assert.Contains($"regmean_gram, {tokens} tokens", regmean.Stdout);

        using var fisherFile = SafetensorsFile.Open(_work["stats/fisher.safetensors"]);
        Assert.Equal("3", fisherFile.Metadata["examples"]);
        Assert.Equal([272L, 32L], fisherFile.Tensors.Single(t => t.Name == "model.embed_tokens.weight").Info.Shape);
        using var gramFile = SafetensorsFile.Open(_work["stats/grams.safetensors"]);
        Assert.Equal(
            [64L, 64L],
            gramFile.Tensors.Single(t => t.Name == "model.layers.1.mlp.down_proj.weight").Info.Shape
        );
        Assert.Equal([32L, 32L], gramFile.Tensors.Single(t => t.Name == "lm_head.weight").Info.Shape);

        var again = AlloyCli.Run(
            "fisher",
            model,
            "--data",
            data,
            "--out",
            _work["stats/fisher.safetensors"],
            "--quiet"
        );
        Assert.Equal(ExitCodes.InputError, again.ExitCode);
        Assert.Contains("exists; pass --overwrite", again.Stderr);
        var inside = AlloyCli.Run(
            "regmean",
            model,
            "--data",
            data,
            "--out",
            Path.Combine(model, "grams.safetensors"),
            "--quiet"
        );
        Assert.Equal(ExitCodes.InputError, inside.ExitCode);
        Assert.Contains("never writes into an input model's folder", inside.Stderr);
    }

    [Fact]
    public void Train_logs_every_step_and_the_validation_loss_and_draws_the_loss_curve()
    {
        var model = FreshModel();
        string data = AdditionData();
        string validation = _work.Write(
            "held.jsonl",
            "{\"prompt\": \"3+4=\", \"completion\": \"7\"}\n{\"prompt\": \"9+9=\", \"completion\": \"8\"}\n"
        );
        var result = AlloyCli.Run(
            "train",
            model,
            "--data",
            data,
            "--validation",
            validation,
            "--eval-every",
            "10",
            "--out",
            _work["trained"],
            "--steps",
            "30",
            "--batch-size",
            "20",
            "--lr",
            "3e-3",
            "--warmup",
            "5",
            "--seed",
            "1"
        );
        Assert.True(result.ExitCode == 0, result.Stderr);

        var entries = File.ReadAllLines(_work["trained/metrics.jsonl"])
            .Select(l => System.Text.Json.Nodes.JsonNode.Parse(l)!.AsObject())
            .ToList();
        Assert.Equal(31, entries.Count);
        Assert.Equal(["step", "validation_loss"], entries[0].Select(p => p.Key));
        Assert.Equal(0, (int)entries[0]["step"]!);
        for (int step = 1; step <= 30; step++)
        {
            var entry = entries[step];
            Assert.Equal(step, (int)entry["step"]!);
            Assert.Equal(
                Alloy.Runtime.Training.LearningRateSchedule.At(step - 1, 30, 3e-3, 0, 5),
                (double)entry["learning_rate"]!,
                12
            );
            Assert.True(
                (double)entry["loss"]! > 0 && (double)entry["grad_norm"]! > 0 && (double)entry["tokens_per_second"]! > 0
            );
            // 20 examples of "BOS a+b=c EOS": 7 tokens each.
            Assert.Equal(140, (int)entry["tokens"]!);
            Assert.Equal(step % 10 == 0, entry.ContainsKey("validation_loss"));
        }
        double first = (double)entries[0]["validation_loss"]!,
            last = (double)entries[30]["validation_loss"]!;
        Assert.True(last < first, $"validation loss {first} → {last}");
        Assert.EndsWith(
            string.Create(
                CultureInfo.InvariantCulture,
                $", validation loss {last:F4}; wrote {_work["trained"]} (float32)\n"
            ),
            result.Stdout
        );

        // loss.png: a PNG of 800 × 450 pixels (the IHDR chunk's big-endian width and height).
        var png = File.ReadAllBytes(_work["trained/loss.png"]);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 13, 10, 26, 10 }, png[..8]);
        Assert.Equal("IHDR", System.Text.Encoding.ASCII.GetString(png, 12, 4));
        Assert.Equal(
            (800, 450),
            (
                System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(16)),
                System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(20))
            )
        );
        Assert.True(png.Length > 10_000, $"{png.Length} bytes");
    }

    [Theory]
    [InlineData("bad-json", "sums.jsonl:2: invalid JSON at line 1")]
    [InlineData("no-fields", "sums.jsonl:1: expected a \"text\" field, or \"prompt\" and \"completion\" fields")]
    [InlineData("csv", "expected a .txt file")]
    [InlineData("missing", "does not exist")]
    [InlineData("steps-and-epochs", "give --steps or --epochs, not both")]
    [InlineData("dtype", "--dtype: 'int8' is not one of float32, bfloat16, float16")]
    [InlineData("output-inside-model", "never writes into an input model's folder")]
    [InlineData("eval-every-alone", "--eval-every needs --validation FILE")]
    [InlineData("validation-missing", "nothing.txt")]
    [InlineData("log-every", "--log-every must be at least 1 (got 0)")]
    public void Bad_input_fails_in_one_line_and_writes_nothing(string problem, string expected)
    {
        var model = FreshModel();
        string data = problem switch
        {
            "bad-json" => _work.Write("sums.jsonl", "{\"text\": \"ok\"}\n{\"text\": \n"),
            "no-fields" => _work.Write("sums.jsonl", "{\"prompt\": \"1+1=\"}\n"),
            "csv" => _work.Write("sums.csv", "a,b\n"),
            "missing" => _work["nothing.txt"],
            _ => _work.Write("ok.txt", "some text\n"),
        };
        string output = problem == "output-inside-model" ? Path.Combine(model, "out") : _work["out"];
        string[] extra = problem switch
        {
            "steps-and-epochs" => ["--steps", "2", "--epochs", "1"],
            "dtype" => ["--dtype", "int8"],
            "eval-every-alone" => ["--eval-every", "5"],
            "validation-missing" => ["--validation", _work["nothing.txt"]],
            "log-every" => ["--log-every", "0"],
            _ => [],
        };
        var result = AlloyCli.Run(["train", model, "--data", data, "--out", output, .. extra]);
        Assert.Equal(ExitCodes.InputError, result.ExitCode);
        var lines = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(expected, lines[0]);
        Assert.False(Directory.Exists(output));
        Assert.Empty(Directory.GetDirectories(_work.Path, ".out.alloy-tmp-*"));
    }
}
