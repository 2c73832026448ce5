using System.Text.Json.Nodes;
using Alloy.Checkpoints;
using Alloy.Cli;
using Alloy.Moe;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Tests.Support;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Tests.Moe;

/// <summary>alloy moe end to end on synthetic models: expert tensors, configs, gates, validation, warnings.</summary>
public sealed class MoeTests : IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly string _models;

    public MoeTests() => _models = AlloyCli.Synth(_temp["models"], fineTunes: 3);

    public void Dispose() => _temp.Dispose();

    private string Model(string name) => Path.Combine(_models, name);

    private const string TwoExperts = """
        experts:
          - source_model: {1}
            positive_prompts: ["math and numbers"]
          - source_model: {2}
            positive_prompts: ["stories about dragons"]
            negative_prompts: ["math"]
            residual_scale: 0.5
        """;

    private string Config(string gateMode, string experts = TwoExperts, string extra = "")
    {
        var text =
            $"base_model: {Model("base")}\ngate_mode: {gateMode}\n{extra}"
            + experts
                .Replace("{1}", Model("finetune-1"))
                .Replace("{2}", Model("finetune-2"))
                .Replace("{3}", Model("finetune-3"));
        return _temp.Write($"moe-{Guid.NewGuid():N}.yml", text);
    }

    private CliResult Build(string config, string output, params string[] extra)
    {
        var result = AlloyCli.Run(["moe", config, output, "--quiet", .. extra]);
        Assert.True(result.ExitCode == 0, $"alloy moe failed ({result.ExitCode}): {result.Stderr}");
        return result;
    }

    private static float[] Read(Checkpoint c, string name) =>
        (c.Find(name) ?? throw new Xunit.Sdk.XunitException($"missing {name}")).ReadFloat32();

    private static void BitEqual(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} values, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}[{i}] = {actual[i]}, expected {expected[i]}");
    }

    [Fact]
    public void Fused_mixtral_holds_each_expert_bit_for_bit_and_the_base_elsewhere()
    {
        var output = _temp["fused"];
        Build(Config("cheap_embed"), output);
        using var moe = Checkpoint.Open(output);
        using var baseModel = Checkpoint.Open(Model("base"));
        using var e1 = Checkpoint.Open(Model("finetune-1"));
        using var e2 = Checkpoint.Open(Model("finetune-2"));
        var experts = new[] { e1, e2 };
        int layers = 2;
        for (int l = 0; l < layers; l++)
        {
            string mlp = $"model.layers.{l}.mlp";
            var gateUp = Read(moe, $"{mlp}.experts.gate_up_proj");
            var down = Read(moe, $"{mlp}.experts.down_proj");
            var gateInfo = e1.Find($"{mlp}.gate_proj.weight")!.Info;
            Assert.Equal(
                [2, 2 * gateInfo.Shape[0], gateInfo.Shape[1]],
                moe.Find($"{mlp}.experts.gate_up_proj")!.Info.Shape
            );
            var downInfo = e1.Find($"{mlp}.down_proj.weight")!.Info;
            Assert.Equal([2, downInfo.Shape[0], downInfo.Shape[1]], moe.Find($"{mlp}.experts.down_proj")!.Info.Shape);
            int g = (int)gateInfo.ElementCount,
                d = (int)downInfo.ElementCount;
            for (int e = 0; e < 2; e++)
            {
                BitEqual(Read(experts[e], $"{mlp}.gate_proj.weight"), gateUp.AsSpan(2 * e * g, g), $"gate {l}/{e}");
                BitEqual(Read(experts[e], $"{mlp}.up_proj.weight"), gateUp.AsSpan((2 * e + 1) * g, g), $"up {l}/{e}");
                var source = Read(experts[e], $"{mlp}.down_proj.weight");
                // residual_scale multiplies down_proj exactly: one float32 product, as torch computes it.
                var expected = e == 1 ? source.Select(x => x * 0.5f).ToArray() : source;
                BitEqual(expected, down.AsSpan(e * d, d), $"down {l}/{e}");
            }
            Assert.Equal([2, 32], moe.Find($"{mlp}.gate.weight")!.Info.Shape);
        }
        foreach (var t in baseModel.Tensors.Where(t => !t.Name.Contains(".mlp.")))
            BitEqual(t.ReadFloat32(), Read(moe, t.Name), t.Name);
        Assert.DoesNotContain(moe.Tensors, t => t.Name.EndsWith("mlp.gate_proj.weight"));
        Assert.Equal(
            File.ReadAllText(Directory.GetFiles(_temp.Path, "moe-*.yml")[0]),
            File.ReadAllText(Path.Combine(output, "mergekit_moe_config.yml"))
        );
    }

    [Fact]
    public void Mixtral_config_has_the_fields_mergekit_writes()
    {
        var output = _temp["config"];
        Build(Config("random", extra: "experts_per_token: 1\ndtype: bfloat16\n"), output);
        var written = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!.AsObject();
        var baseConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(Model("base"), "config.json")))!.AsObject();
        // From mergekit/moe/mixtral.py: MixtralConfig of the base's fields, then these assignments.
        var expected = new JsonObject
        {
            ["architectures"] = new JsonArray("MixtralForCausalLM"),
            ["model_type"] = "mixtral",
            ["num_local_experts"] = 2,
            ["num_experts_per_tok"] = 1,
            ["sliding_window"] = null,
            ["torch_dtype"] = "bfloat16",
            ["router_aux_loss_coef"] = 0.001,
            ["output_router_logits"] = false,
        };
        foreach (var (key, value) in expected)
            Assert.True(JsonNode.DeepEquals(value, written[key]), $"{key}: {written[key]?.ToJsonString()}");
        foreach (var key in new[] { "hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size" })
            Assert.True(JsonNode.DeepEquals(baseConfig[key], written[key]), key);
        using var moe = Checkpoint.Open(output);
        Assert.All(moe.Tensors, t => Assert.Equal(Alloy.Tensors.DType.BF16, t.Info.DType));
        var tokenizerConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "tokenizer_config.json")))!;
        Assert.Equal("left", tokenizerConfig["padding_side"]!.GetValue<string>());
        var tokenizer = TextTokenizer.Load(Model("base"));
        Assert.Equal(tokenizer.TokenContent(tokenizer.Special.Bos!.Value), tokenizerConfig["pad_token"]!.ToString());
    }

    [Fact]
    public void Per_expert_layout_names_and_shapes()
    {
        var output = _temp["per-expert"];
        Build(Config("random"), output, "--mixtral-layout", "per-expert");
        using var moe = Checkpoint.Open(output);
        using var e2 = Checkpoint.Open(Model("finetune-2"));
        foreach (var (w, p) in new[] { ("w1", "gate_proj"), ("w2", "down_proj"), ("w3", "up_proj") })
        {
            var source = e2.Find($"model.layers.1.mlp.{p}.weight")!;
            var moved = moe.Find($"model.layers.1.block_sparse_moe.experts.1.{w}.weight")!;
            Assert.Equal(source.Info.Shape, moved.Info.Shape);
            var expected =
                p == "down_proj" ? source.ReadFloat32().Select(x => x * 0.5f).ToArray() : source.ReadFloat32();
            BitEqual(expected, moved.ReadFloat32(), w);
        }
        Assert.Equal([2, 32], moe.Find("model.layers.0.block_sparse_moe.gate.weight")!.Info.Shape);
        Assert.DoesNotContain(moe.Tensors, t => t.Name.Contains(".mlp."));
    }

    [Fact]
    public void Qwen_moe_has_the_shared_expert_its_gate_and_zero_attention_biases()
    {
        var output = _temp["qwen"];
        var shared = TwoExperts + "\nshared_experts:\n  - source_model: {3}\n    positive_prompts: [\"anything\"]\n";
        Build(Config("cheap_embed", shared), output);
        using var moe = Checkpoint.Open(output);
        using var e3 = Checkpoint.Open(Model("finetune-3"));
        using var e1 = Checkpoint.Open(Model("finetune-1"));
        foreach (var p in new[] { "gate_proj", "up_proj", "down_proj" })
        {
            BitEqual(
                Read(e3, $"model.layers.0.mlp.{p}.weight"),
                Read(moe, $"model.layers.0.mlp.shared_expert.{p}.weight"),
                p
            );
            BitEqual(
                Read(e1, $"model.layers.0.mlp.{p}.weight"),
                Read(moe, $"model.layers.0.mlp.experts.0.{p}.weight"),
                p
            );
        }
        Assert.Equal([1, 32], moe.Find("model.layers.1.mlp.shared_expert_gate.weight")!.Info.Shape);
        Assert.Equal([2, 32], moe.Find("model.layers.1.mlp.gate.weight")!.Info.Shape);
        // 4 heads of 8 for q, 2 key/value heads for k and v.
        Assert.Equal(new float[32], Read(moe, "model.layers.0.self_attn.q_proj.bias"));
        Assert.Equal(new float[16], Read(moe, "model.layers.0.self_attn.k_proj.bias"));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!;
        Assert.Equal("qwen2_moe", config["model_type"]!.GetValue<string>());
        Assert.Equal(2, config["num_experts"]!.GetValue<int>());
        Assert.Equal(1, config["decoder_sparse_step"]!.GetValue<int>());
        Assert.True(config["norm_topk_prob"]!.GetValue<bool>());
        Assert.False(config["use_sliding_window"]!.GetValue<bool>());
        Assert.Equal(
            config["intermediate_size"]!.GetValue<int>(),
            config["shared_expert_intermediate_size"]!.GetValue<int>()
        );
        Assert.Equal(config["intermediate_size"]!.GetValue<int>(), config["moe_intermediate_size"]!.GetValue<int>());
    }

    [Fact]
    public void A_shared_expert_without_prompts_gives_deepseek()
    {
        var output = _temp["deepseek"];
        Build(Config("cheap_embed", TwoExperts + "\nshared_experts:\n  - source_model: {3}\n"), output);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!;
        Assert.Equal("deepseek", config["model_type"]!.GetValue<string>());
        Assert.Equal(2, config["n_routed_experts"]!.GetValue<int>());
        Assert.Equal(1, config["n_shared_experts"]!.GetValue<int>());
        Assert.Equal(0, config["first_k_dense_replace"]!.GetValue<int>());
        Assert.Equal("softmax", config["scoring_func"]!.GetValue<string>());
        Assert.Contains("deepseek-moe-16b-base", config["auto_map"]!["AutoModelForCausalLM"]!.GetValue<string>());
        using var moe = Checkpoint.Open(output);
        Assert.NotNull(moe.Find("model.layers.0.mlp.shared_experts.down_proj.weight"));
        Assert.NotNull(moe.Find("model.layers.0.mlp.experts.1.down_proj.weight"));
    }

    [Fact]
    public void Cheap_embed_rows_are_the_normalised_sums_of_the_prompts_embeddings()
    {
        var output = _temp["cheap"];
        Build(Config("cheap_embed"), output);
        var tokenizer = TextTokenizer.Load(Model("base"));
        using var baseModel = Checkpoint.Open(Model("base"));
        var embed = Read(baseModel, "model.embed_tokens.weight");
        int hidden = 32;
        double[] Sum(string prompt)
        {
            var ids = tokenizer.Encode(tokenizer.TokenContent(tokenizer.Special.Bos!.Value) + prompt, false);
            Assert.Equal(tokenizer.Special.Bos!.Value, ids[0]);
            var sum = new double[hidden];
            foreach (var id in ids)
                for (int h = 0; h < hidden; h++)
                    sum[h] += embed[id * hidden + h];
            return sum;
        }
        double[] Unit(double[] v) => [.. v.Select(x => x / Math.Sqrt(v.Sum(y => y * y)))];
        var row0 = Unit(Sum("math and numbers"));
        // With negatives: mergekit normalises each side, subtracts, and normalises again.
        var row1 = Unit([.. Unit(Sum("stories about dragons")).Zip(Unit(Sum("math")), (a, b) => a - b)]);
        using var moe = Checkpoint.Open(output);
        for (int l = 0; l < 2; l++)
        {
            var gate = Read(moe, $"model.layers.{l}.mlp.gate.weight");
            for (int h = 0; h < hidden; h++)
            {
                Assert.Equal(row0[h], gate[h], 1e-6);
                Assert.Equal(row1[h], gate[hidden + h], 1e-6);
            }
        }
    }

    [Fact]
    public void Hidden_rows_are_the_runtime_hidden_states_of_the_prompts()
    {
        var output = _temp["hidden"];
        var experts = """
            experts:
              - source_model: {1}
                positive_prompts: ["one two three", "four"]
              - source_model: {2}
                positive_prompts: ["the cat sat"]
            """;
        Build(Config("hidden", experts), output);
        var model = LlamaModel.Load(Model("base"));
        var tokenizer = TextTokenizer.Load(Model("base"));
        string bos = tokenizer.TokenContent(tokenizer.Special.Bos!.Value)!;
        // Layer l's feature is the input of block l; each prompt run alone (its last token), averaged, normalised.
        double[][] Features(string[] prompts)
        {
            var sum = new double[2][];
            for (int l = 0; l < 2; l++)
                sum[l] = new double[32];
            foreach (var p in prompts)
            {
                var ids = tokenizer.Encode(bos + p, false);
                var state = model.CreateState(keepActivations: true);
                model.Forward(TokenBatch.FromSequences(ids), state);
                for (int l = 0; l < 2; l++)
                {
                    var row = state.Blocks[l].Input.Row(ids.Length - 1);
                    for (int h = 0; h < 32; h++)
                        sum[l][h] += row[h] / prompts.Length;
                }
            }
            return [.. sum.Select(v => v.Select(x => x / Math.Sqrt(v.Sum(y => y * y))).ToArray())];
        }
        var expected = new[] { Features(["one two three", "four"]), Features(["the cat sat"]) };
        using var moe = Checkpoint.Open(output);
        for (int l = 0; l < 2; l++)
        {
            var gate = Read(moe, $"model.layers.{l}.mlp.gate.weight");
            for (int e = 0; e < 2; e++)
            for (int h = 0; h < 32; h++)
                Assert.Equal(expected[e][l][h], gate[e * 32 + h], 1e-4);
        }
    }

    [Fact]
    public void Random_gates_are_deterministic_per_seed()
    {
        var config = Config("random");
        Build(config, _temp["r1"], "--seed", "7");
        Build(config, _temp["r2"], "--seed", "7");
        Build(config, _temp["r3"], "--seed", "8");
        float[] Gate(string folder)
        {
            using var c = Checkpoint.Open(folder);
            return Read(c, "model.layers.1.mlp.gate.weight");
        }
        Assert.Equal(Gate(_temp["r1"]), Gate(_temp["r2"]));
        Assert.NotEqual(Gate(_temp["r1"]), Gate(_temp["r3"]));
        // randn is not normalised: rows of 32 standard normals have norms near √32, not 1.
        var g = Gate(_temp["r1"]);
        Assert.InRange(Math.Sqrt(g.Take(32).Sum(x => (double)x * x)), 2.5, 9);
    }

    [Theory]
    [InlineData("random", "experts_per_token: 3\n", "experts_per_token is 3")]
    [InlineData("random", "experts_per_token: 0\n", "experts_per_token must be at least 1")]
    [InlineData("hidden_avg", "", "expert 1 has no positive_prompts")]
    [InlineData("uniform_random", "", "expert 1 has no positive_prompts")]
    [InlineData("cheap_embed", "", "same positive and negative prompts")]
    [InlineData("cheap_embed", "", "every expert is the same model")]
    [InlineData("hiden", "", "did you mean 'hidden'")]
    [InlineData("random", "architecture: qwen\n", "exactly one shared expert")]
    public void Bad_configs_fail_with_one_line(string gateMode, string extra, string message)
    {
        var experts = message switch
        {
            "expert 1 has no positive_prompts" =>
                "experts:\n  - source_model: {1}\n    positive_prompts: [a]\n  - source_model: {2}\n",
            "same positive and negative prompts" => "experts:\n" + Expert("{1}", "a") + Expert("{2}", "a"),
            "every expert is the same model" => "experts:\n" + Expert("{1}", "a") + Expert("{1}", "b"),
            _ => TwoExperts,
        };
        var output = _temp["bad"];
        var result = AlloyCli.Run("moe", Config(gateMode, experts, extra), output, "--quiet");
        Assert.Equal(ExitCodes.InputError, result.ExitCode);
        var errors = result.Stderr.Split('\n').Where(l => l.StartsWith("error:")).ToList();
        Assert.Single(errors);
        Assert.Contains(message, errors[0]);
        Assert.DoesNotContain("   at ", result.Stderr);
        Assert.False(Directory.Exists(output));
    }

    private static string Expert(string model, string prompt) =>
        $"  - source_model: {model}\n    positive_prompts: [{prompt}]\n";

    [Fact]
    public void The_flag_allows_experts_that_are_all_one_model()
    {
        var experts = "experts:\n" + Expert("{1}", "a") + Expert("{1}", "b");
        Build(Config("cheap_embed", experts), _temp["same"], "--i-understand-this-is-not-useful-without-training");
        Assert.True(File.Exists(Path.Combine(_temp["same"], "config.json")));
    }

    [Fact]
    public void Three_experts_and_similar_prompts_warn()
    {
        var experts = TwoExperts + "\n  - source_model: {3}\n    positive_prompts: [\"math and numbers!\"]\n";
        var result = Build(Config("cheap_embed", experts), _temp["warn"]);
        Assert.Contains("3 experts is not a power of two", result.Stderr);
        // Expert 3's prompt nearly repeats expert 1's: the gate rows are nearly parallel.
        Assert.Contains("degenerate routing", result.Stderr);
        var clean = Build(Config("random"), _temp["clean"]);
        Assert.DoesNotContain("warning", clean.Stderr);
    }

    [Fact]
    public void Condition_number_matches_the_singular_values()
    {
        // Rows (1, 0) and (0, 3): singular values 3 and 1.
        Assert.Equal(
            3.0,
            MoeGates.ConditionNumber([
                [1f, 0f, 0f],
                [0f, 3f, 0f],
            ]),
            1e-6
        );
        var diagnostics = new Diagnostics();
        MoeGates.WarnDegenerate(
            [
                [
                    [1f, 0f],
                    [0f, 1f],
                ],
                [
                    [1f, 0f],
                    [1f, 0.01f],
                ],
            ],
            diagnostics
        );
        Assert.Equal(
            [
                "layer 1 has degenerate routing (gate condition number > 5): the prompts may be too similar, "
                    + "and some experts will be underused",
            ],
            diagnostics.Warnings
        );
    }
}
