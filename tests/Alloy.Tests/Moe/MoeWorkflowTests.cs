using System.Text.Json.Nodes;
using Alloy.Tests.Support;

namespace Alloy.Tests.Moe;

/// <summary>
/// A mixture of experts made, trained, scored and compressed with the CLI alone: <c>alloy moe</c>, <c>alloy train
/// --only router</c>, <c>alloy eval</c> (with routing counts) and <c>alloy moe-compress</c>.
/// </summary>
public sealed class MoeWorkflowTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void A_moe_is_built_its_router_alone_trained_scored_with_routing_and_compressed()
    {
        string models = AlloyCli.Synth(_temp["models"], fineTunes: 3);
        string config = _temp.Write(
            "moe.yml",
            $"""
            base_model: {models}/base
            gate_mode: cheap_embed
            experts_per_token: 2
            experts:
              - source_model: {models}/finetune-1
                positive_prompts: ["one two three"]
              - source_model: {models}/finetune-2
                positive_prompts: ["the cat sat"]
              - source_model: {models}/finetune-3
                positive_prompts: ["x y z"]
            """
        );
        var built = AlloyCli.Run("moe", config, _temp["moe"], "--quiet");
        Assert.True(built.ExitCode == 0, built.Stderr);

        string data = _temp.Write(
            "data.txt",
            string.Join("\n", Enumerable.Range(0, 24).Select(i => $"the cat sat on mat {i % 5} and {i % 3}"))
        );
        var trained = AlloyCli.Run(
            "train",
            _temp["moe"],
            "--data",
            data,
            "--out",
            _temp["routed"],
            "--only",
            "router",
            "--steps",
            "20",
            "--lr",
            "1e-2",
            "--dtype",
            "float32",
            "--quiet"
        );
        Assert.True(trained.ExitCode == 0, trained.Stderr);
        // The routers moved and nothing else did (the base and experts are float32, so the save is exact).
        var before = TestCheckpoints.ReadAll(_temp["moe"]);
        var after = TestCheckpoints.ReadAll(_temp["routed"]);
        Assert.Equal(before.Keys.Order(), after.Keys.Order());
        foreach (var (name, values) in before)
        {
            bool router = name.EndsWith("mlp.gate.weight", StringComparison.Ordinal);
            Assert.True(router != values.SequenceEqual(after[name]), $"{name}: router {router}");
        }

        string tasks = _temp.Write(
            "tasks.jsonl",
            """
            {"type": "generate", "task": "cat", "prompt": "the cat", "answer": " sat", "max_tokens": 4}
            {"type": "generate", "task": "cat", "prompt": "on mat", "answer": " 1", "max_tokens": 3}
            """
        );
        var scored = AlloyCli.Run("eval", _temp["routed"], "--tasks", tasks, "--quiet");
        Assert.True(scored.ExitCode == 0, scored.Stderr);
        var report = JsonNode.Parse(scored.Stdout)!;
        var routing = report["tasks"]![0]!["routing"]!.AsArray();
        Assert.Equal(2, routing.Count); // a layer each
        // Two experts per token, so each layer's choices are twice the tokens the task ran.
        var counts = routing.Select(l => l!["counts"]!.AsArray().Sum(c => (long)c!)).ToList();
        Assert.Equal(counts[0], counts[1]);
        Assert.True(counts[0] > 0 && counts[0] % 2 == 0);

        var compressed = AlloyCli.Run(
            "moe-compress",
            _temp["routed"],
            _temp["small"],
            "--experts",
            "2",
            "--data",
            data,
            "--quiet"
        );
        Assert.True(compressed.ExitCode == 0, compressed.Stderr);
        Assert.Contains("layer 1: {", compressed.Stdout);
        var small = JsonNode.Parse(File.ReadAllText(Path.Combine(_temp["small"], "config.json")))!;
        Assert.Equal(2, (int)small["num_local_experts"]!);
        Assert.Equal(2, (int)small["num_experts_per_tok"]!);
        Assert.Equal(
            [2L, 2 * 64, 32],
            TestCheckpoints.Shape(
                Path.Combine(_temp["small"], "model.safetensors"),
                "model.layers.0.mlp.experts.gate_up_proj"
            )
        );
        var again = AlloyCli.Run("eval", _temp["small"], "--tasks", tasks, "--quiet");
        Assert.True(again.ExitCode == 0, again.Stderr);
    }

    [Fact]
    public void Moe_compress_refuses_a_dense_model_in_one_line()
    {
        string models = AlloyCli.Synth(_temp["models"], fineTunes: 0);
        string data = _temp.Write("data.txt", "a b c\n");
        var dense = AlloyCli.Run("moe-compress", $"{models}/base", _temp["out"], "--experts", "1", "--data", data);
        Assert.Equal(1, dense.ExitCode);
        Assert.Contains("not a mixture of experts", dense.Stderr);
        Assert.Single(dense.Stderr.Trim().Split('\n'));
    }
}
