using System.Text.Json.Nodes;
using Alloy.Checkpoints;
using Alloy.LinearAlgebra;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Support;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Runtime.Tests.Models;

/// <summary>
/// Mixtral and Qwen2-MoE beyond the PyTorch logits (ReferenceLogitsTests): both expert layouts load to the same
/// model, results do not depend on threads, routing is counted, a save keeps the layout, and what the runtime does not
/// run is refused with one line.
/// </summary>
public sealed class MixtureOfExpertsTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    private static float[] AllLogits(LlamaModel model, out int tokens)
    {
        var expected = Reference.Load("mixtral");
        var logits = model.Forward(
            TokenBatch.FromSequences([.. expected.Sequences.Select(s => (IReadOnlyList<int>)s)])
        );
        tokens = logits.Count;
        var all = logits;
        return [.. Enumerable.Range(0, all.Count).SelectMany(i => all.Row(i).ToArray())];
    }

    [Fact]
    public void The_fused_and_the_per_expert_layouts_give_identical_logits()
    {
        var fused = LlamaModel.Load(Reference.Folder("mixtral"));
        var perExpert = LlamaModel.Load(Reference.Folder("mixtral-per-expert"));
        Assert.Equal(ExpertLayout.Fused, fused.Config.Moe!.Layout);
        Assert.Equal(ExpertLayout.PerExpert, perExpert.Config.Moe!.Layout);
        Assert.Equal([4, 48, 32], fused.Parameters["model.layers.0.mlp.experts.gate_up_proj"].Shape);
        Assert.NotNull(perExpert.Parameters.Find("model.layers.1.block_sparse_moe.experts.3.w2.weight"));
        Assert.Equal(AllLogits(fused, out _), AllLogits(perExpert, out _));
    }

    public static TheoryData<string, string> ModelsAndBackends()
    {
        var data = new TheoryData<string, string>();
        foreach (var model in new[] { "mixtral", "qwen2-moe" })
        foreach (var backend in Reference.BackendNames)
            data.Add(model, backend);
        return data;
    }

    /// <summary>Forward passes and gradients on 1 and 3 threads, bit for bit.</summary>
    [Theory]
    [MemberData(nameof(ModelsAndBackends))]
    public void Logits_and_gradients_are_the_same_at_any_thread_count(string name, string backend)
    {
        (float[] Logits, float[] Gradient) Run(int threads)
        {
            var model = LlamaModel.Load(
                Reference.Folder(name),
                new RuntimeOptions { Threads = threads, Backend = Reference.Backend(backend) }
            );
            var loss = new Alloy.Runtime.Training.LossGradients(model);
            var examples = RandomModels.Examples(model.Config.VocabSize, 1, 40, 33, 7, 50);
            loss.Accumulate(examples, 0.01);
            var gradient = model.Parameters.SelectMany(p => (IEnumerable<float>)loss.Gradients[p]).ToArray();
            return (AllLogits(model, out _), gradient);
        }
        var one = Run(1);
        var three = Run(3);
        Assert.Equal(one.Logits, three.Logits);
        Assert.Equal(one.Gradient, three.Gradient);
        Assert.Contains(one.Gradient, g => g != 0);
    }

    [Fact]
    public void Routing_is_counted_per_layer_and_expert()
    {
        var model = LlamaModel.Load(Reference.Folder("qwen2-moe"));
        var before = model.Routing!.Snapshot();
        AllLogits(model, out int tokens);
        var table = model.Routing.Snapshot().Since(before);
        Assert.Equal(2, table.Layers.Count);
        foreach (var layer in table.Layers)
        {
            Assert.Equal(4, layer.Count);
            Assert.Equal(2L * tokens, layer.Sum()); // top-2 of every token
            Assert.True(layer.Count(c => c > 0) >= 2, "routing uses more than one expert");
        }
        AllLogits(model, out _);
        Assert.Equal(
            table.Layers.Select(l => l.Select(c => 2 * c)),
            model.Routing.Snapshot().Since(before).Layers.Select(l => l.AsEnumerable())
        );
        Assert.Null(LlamaModel.Load(Reference.Folder("llama-gqa")).Routing);
    }

    /// <summary>Shares are fractions of a layer's choices.</summary>
    [Fact]
    public void Shares_are_fractions_of_a_layers_choices()
    {
        var table = new RoutingTable([
            [2, 1, 1, 0],
        ]);
        Assert.Equal(0.5, table.Share(0, 0));
        Assert.Equal(0, table.Share(0, 3));
    }

    [Fact]
    public void A_saved_model_keeps_its_expert_layout()
    {
        foreach (var name in new[] { "mixtral", "mixtral-per-expert" })
        {
            var model = LlamaModel.Load(Reference.Folder(name));
            string folder = _temp[name];
            ModelSaver.Save(model, Reference.Folder(name), folder, DType.F32);
            using (var checkpoint = Checkpoint.Open(folder))
                Assert.Equal(
                    model.Parameters.Select(p => p.Name).Order(),
                    checkpoint.Tensors.Select(t => t.Name).Order()
                );
            Assert.Equal(AllLogits(model, out _), AllLogits(LlamaModel.Load(folder), out _));
        }
    }

    public static TheoryData<string, string, string> ConfigProblems() =>
        new()
        {
            {
                "mixtral",
                "router_jitter_noise=0.01",
                "router_jitter_noise is 0.01; Alloy.Runtime routes without noise"
            },
            { "mixtral", "num_experts_per_tok=5", "num_experts_per_tok (5) is more than the 4 experts" },
            { "mixtral", "num_local_experts=0", "'num_local_experts' must be a positive whole number, not 0" },
            { "qwen2-moe", "decoder_sparse_step=2", "decoder_sparse_step is 2; Alloy.Runtime runs Qwen2-MoE models" },
            { "qwen2-moe", "mlp_only_layers=[1]", "mlp_only_layers lists [1]; Alloy.Runtime runs Qwen2-MoE models" },
            {
                "qwen2-moe",
                "shared_expert_intermediate_size=0",
                "'shared_expert_intermediate_size' must be a positive"
            },
            { "qwen2-moe", "use_sliding_window=true", "use_sliding_window is true" },
            { "qwen2-moe", "norm_topk_prob=1", "'norm_topk_prob' must be true or false, not 1" },
        };

    [Theory]
    [MemberData(nameof(ConfigProblems))]
    public void A_wrong_mixture_config_is_refused_with_one_line(string model, string edit, string expected)
    {
        string path = Path.Combine(Reference.Folder(model), "config.json");
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        config[edit[..edit.IndexOf('=')]] = JsonNode.Parse(edit[(edit.IndexOf('=') + 1)..]);
        var e = Assert.Throws<AlloyException>(() => ModelConfig.FromJson(config, path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void The_config_is_read_with_each_familys_meaning()
    {
        var mixtral = LlamaModel.Load(Reference.Folder("mixtral")).Config;
        Assert.Equal((4, 2, 24, true, (int?)null), Summary(mixtral.Moe!));
        Assert.Equal(8, mixtral.SlidingWindow);
        var qwen = LlamaModel.Load(Reference.Folder("qwen2-moe")).Config;
        Assert.Equal((4, 2, 16, false, (int?)40), Summary(qwen.Moe!));
        Assert.True(qwen.QkvBias);
        static (int, int, int, bool, int?) Summary(MoeConfig m) =>
            (m.Experts, m.TopK, m.IntermediateSize, m.NormalizeTopK, m.SharedIntermediateSize);
    }
}
