using System.Text.Json;
using Alloy.Checkpoints;
using Alloy.Runtime;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;
using Alloy.Tensors;
using Alloy.Tests.EndToEnd;
using Alloy.Tests.Support;

namespace Alloy.Tests.Adapters;

/// <summary>
/// LoRA adapters made by <c>alloy train --lora-rank</c>: one learns a tiny expert's task and is scored with
/// <c>alloy eval BASE+ADAPTER</c>; its folder reads as PEFT reads it; and a merge that applies an adapter
/// (<c>model+adapter</c>) equals the same merge of the adapted model written out in full.
/// </summary>
public sealed class AdapterTrainingTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    /// <summary>
    /// 100 steps of 16 on the date task's training file (0.4 passes, about 10 s) with a rank-8 adapter on every linear
    /// layer: every one of 20 test items right (seen: 20/20), the other tasks still at zero as for the base.
    /// </summary>
    [Fact]
    public void An_adapter_trained_with_alloy_train_learns_a_task_and_is_scored_on_its_base()
    {
        string baseModel = ExpertExampleTests.Experts("models/base");
        string adapter = _work["date-lora"];
        var train = AlloyCli.Run(
            "train",
            baseModel,
            "--data",
            ExpertExampleTests.Experts("data/date/train.jsonl"),
            "--out",
            adapter,
            "--steps",
            "100",
            "--batch-size",
            "16",
            "--lr",
            "3e-3",
            "--warmup",
            "10",
            "--weight-decay",
            "0",
            "--lora-rank",
            "8",
            "--lora-alpha",
            "16",
            "--lora-targets",
            "all-linear",
            "--quiet"
        );
        Assert.True(train.ExitCode == 0, train.Stderr);
        Assert.Contains("wrote the adapter", train.Stdout);

        var scores = ExpertExampleTests.Evaluate(
            $"{baseModel}+{adapter}",
            ExpertExampleTests.Experts("data/test.jsonl"),
            20
        );
        Assert.True(scores["date"] >= 0.95, $"date: {scores["date"]}");
        Assert.All(scores.Where(s => s.Key != "date"), s => Assert.Equal(0, s.Value));

        // The folder as PEFT reads it: the config's fields, and A [r, in] / B [out, r] under PEFT's names.
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(adapter, "adapter_config.json")));
        var root = config.RootElement;
        Assert.Equal("LORA", root.GetProperty("peft_type").GetString());
        Assert.Equal(8, root.GetProperty("r").GetInt32());
        Assert.Equal(16, root.GetProperty("lora_alpha").GetDouble());
        Assert.Equal(
            ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"],
            root.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()).Order()
        );
        Assert.Empty(root.GetProperty("rank_pattern").EnumerateObject());
        using var weights = Checkpoint.Open(Path.Combine(adapter, "adapter_model.safetensors"));
        Assert.Equal(4 * 7 * 2, weights.Tensors.Count);
        var a = weights.Find("base_model.model.model.layers.3.mlp.down_proj.lora_A.weight")!;
        var b = weights.Find("base_model.model.model.layers.3.mlp.down_proj.lora_B.weight")!;
        Assert.Equal([8L, 384], a.Info.Shape);
        Assert.Equal([128L, 8], b.Info.Shape);
        Assert.Equal(DType.F32, a.Info.DType);
        Assert.True(File.Exists(Path.Combine(adapter, "metrics.jsonl")));
    }

    [Fact]
    public void Applying_a_trained_adapter_in_a_merge_equals_merging_the_adapted_model_written_in_full()
    {
        var synth = AlloyCli.Synth(_work["synth"], fineTunes: 1);
        string baseModel = Path.Combine(synth, "base");
        var model = LlamaModel.Load(baseModel, new RuntimeOptions { Threads = 2 });
        var lora = new TrainableLora(
            model,
            new LoraOptions
            {
                Rank = 4,
                Alpha = 8,
                Targets = ["q_proj", "v_proj", "up_proj"],
            }
        );
        int vocab = model.Config.VocabSize;
        var examples = Enumerable
            .Range(0, 8)
            .Select(i => new TrainingExample([.. Enumerable.Range(0, 12).Select(j => (i * 7 + j * 3) % vocab)], 1))
            .ToList();
        new Trainer(
            model,
            new TrainingOptions
            {
                Steps = 5,
                BatchSize = 4,
                LearningRate = 1e-2,
            },
            lora
        ).Run(examples);
        lora.Save(Directory.CreateDirectory(_work["adapter"]).FullName, baseModel, DType.F32, "test adapter\n");
        ModelSaver.Save(model, baseModel, _work["adapted"], DType.F32);

        string Recipe(string first) =>
            $"merge_method: task_arithmetic\nbase_model: {baseModel}\nmodels:\n"
            + $"  - model: {first}\n    parameters: {{weight: 0.7}}\n"
            + $"  - model: {Path.Combine(synth, "finetune-1")}\n    parameters: {{weight: 0.5}}\ndtype: float32\n";
        AlloyCli.Merge(_work.Write("applied.yml", Recipe($"{baseModel}+{_work["adapter"]}")), _work["applied"]);
        AlloyCli.Merge(_work.Write("written.yml", Recipe(_work["adapted"])), _work["written"]);

        var applied = TestCheckpoints.ReadAll(_work["applied"]);
        var written = TestCheckpoints.ReadAll(_work["written"]);
        Assert.Equal(written.Keys.Order(), applied.Keys.Order());
        foreach (var (name, values) in written)
        {
            // The adapter's update rounds differently in the runtime's product and the merge's reader: float32 ulps.
            double difference = values.Zip(applied[name]).Max(p => Math.Abs(p.First - p.Second));
            Assert.True(difference <= 1e-6, $"{name}: {difference}");
        }
        // The adapter learnt something for the merges to agree on.
        const string Query = "model.layers.1.self_attn.q_proj.weight";
        Assert.NotEqual(
            TestCheckpoints.Read(Path.Combine(baseModel, "model.safetensors"), Query),
            TestCheckpoints.Read(Path.Combine(_work["adapted"], "model.safetensors"), Query)
        );
    }

    [Theory]
    [InlineData("--lora-alpha 16", "--lora-alpha and --lora-targets need --lora-rank")]
    [InlineData("--lora-rank 0", "--lora-rank must be at least 1")]
    [InlineData("--lora-rank 4 --lora-targets c_attn", "--lora-targets c_attn matches no linear layer")]
    public void Bad_adapter_options_are_one_line_errors(string options, string expected)
    {
        string model = AlloyCli.FreshModel(_work["fresh"]);
        string data = _work.Write("data.txt", "abc\nabd\n");
        var result = AlloyCli.Run([
            "train",
            model,
            "--data",
            data,
            "--out",
            _work["out"],
            "--quiet",
            .. options.Split(' '),
        ]);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains(expected, result.Stderr);
        Assert.Single(result.Stderr.Trim().Split('\n'));
        Assert.False(Directory.Exists(_work["out"]) && Directory.EnumerateFileSystemEntries(_work["out"]).Any());
    }
}
