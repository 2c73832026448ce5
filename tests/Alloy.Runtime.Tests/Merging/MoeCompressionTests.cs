using Alloy.Moe;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Merging;
using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Support;
using Alloy.Runtime.Training;
using Alloy.Tests.Support;

namespace Alloy.Runtime.Tests.Merging;

/// <summary>
/// <see cref="MoeCompression"/> on the Mixtral and Qwen2-MoE fixtures: keeping every expert reorders the experts and
/// their router rows together and changes no logit; fewer experts are the usage-weighted merges of the groups, with
/// the leaders' router rows; a saved compressed model says how many experts it has.
/// </summary>
public sealed class MoeCompressionTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    private static TrainingExample[] Data(LlamaModel model) =>
        RandomModels.Examples(model.Config.VocabSize, 1, 40, 33, 27, 19);

    private static float[] Logits(LlamaModel model)
    {
        var sequences = Data(model).Select(e => (IReadOnlyList<int>)e.Tokens).ToArray();
        var logits = model.Forward(TokenBatch.FromSequences(sequences));
        return [.. Enumerable.Range(0, logits.Count).SelectMany(i => logits.Row(i).ToArray())];
    }

    [Theory]
    [InlineData("mixtral")]
    [InlineData("qwen2-moe")]
    public void Keeping_every_expert_only_reorders_them_and_changes_no_logit(string name)
    {
        var model = LlamaModel.Load(Reference.Folder(name));
        int experts = model.Config.Moe!.Experts;
        var (same, layers) = MoeCompression.Compress(model, Data(model), experts);
        Assert.Equal(experts, same.Config.Moe!.Experts);
        // The leaders are the experts in order of use; with as many groups as experts each is alone.
        Assert.All(layers, l => Assert.Equal(Enumerable.Range(0, experts), l.Leaders.Order()));
        Assert.Contains(layers, l => !l.Leaders.SequenceEqual(Enumerable.Range(0, experts)));
        var (before, after) = (Logits(model), Logits(same));
        double worst = before.Zip(after).Max(p => Math.Abs(p.First - p.Second));
        Assert.True(worst < 1e-5, $"largest logit change {worst}");
    }

    [Fact]
    public void Fewer_experts_are_the_usage_weighted_merges_of_their_groups_with_the_leaders_router_rows()
    {
        var model = LlamaModel.Load(Reference.Folder("mixtral"));
        var config = model.Config;
        var moe = config.Moe!;
        var (small, layers) = MoeCompression.Compress(model, Data(model), 2);
        Assert.Equal(2, small.Config.Moe!.Experts);
        Assert.Equal(2, small.Config.Moe!.TopK);
        for (int layer = 0; layer < config.Layers; layer++)
        {
            string prefix = $"model.layers.{layer}.";
            var (frequencies, labels, leaders) = (
                layers[layer].Frequencies,
                layers[layer].Labels,
                layers[layer].Leaders
            );
            Assert.Equal(1, frequencies.Sum(), 9);
            var router = model.Parameters[moe.RouterName(config.Family, prefix)];
            var newRouter = small.Parameters[small.Config.Moe.RouterName(config.Family, prefix)];
            for (int g = 0; g < 2; g++)
            {
                Assert.Equal(
                    router.Data.AsSpan(leaders[g] * config.HiddenSize, config.HiddenSize).ToArray(),
                    newRouter.Data.AsSpan(g * config.HiddenSize, config.HiddenSize).ToArray()
                );
                // The merged expert, recomputed from the original experts by ExpertMerging.
                var members = Enumerable.Range(0, moe.Experts).Where(e => labels[e] == g).ToList();
                var expected = ExpertMerging.Merge(
                    [.. members.Select(e => MoeCompression.Expert(model, layer, e))],
                    [.. members.Select(e => frequencies[e])],
                    members.IndexOf(leaders[g])
                );
                var actual = MoeCompression.Expert(small, layer, g);
                Assert.Equal(expected.Gate, actual.Gate);
                Assert.Equal(expected.Down, actual.Down);
            }
        }
        // Attention and norms are the model's own.
        Assert.Equal(
            model.Parameters["model.layers.1.self_attn.q_proj.weight"].Data,
            small.Parameters["model.layers.1.self_attn.q_proj.weight"].Data
        );

        ModelSaver.Save(small, Reference.Folder("mixtral"), _temp["small"], Tensors.DType.F32);
        var reloaded = LlamaModel.Load(_temp["small"]);
        Assert.Equal(2, reloaded.Config.Moe!.Experts);
        Assert.Equal(Logits(small), Logits(reloaded));
    }

    [Fact]
    public void Bad_requests_are_refused_in_one_line()
    {
        var model = LlamaModel.Load(Reference.Folder("mixtral"));
        Assert.Contains(
            "from 1 to the model's 4",
            Assert.Throws<AlloyException>(() => MoeCompression.Compress(model, Data(model), 5)).Message
        );
        Assert.Throws<AlloyException>(() => MoeCompression.Compress(model, [], 2));
        var dense = RandomModels.Create(RandomModels.Config());
        Assert.Contains(
            "not a mixture of experts",
            Assert.Throws<AlloyException>(() => MoeCompression.Compress(dense, Data(dense), 1)).Message
        );
    }
}
