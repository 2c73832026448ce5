using Alloy.Runtime.Merging;
using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Support;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Tests.Merging;

/// <summary>
/// RegMean++'s block-by-block Grams on two small models that share their embedding and block 0 and differ from block
/// 1 on: what lies behind each block decides its Grams.
/// </summary>
public sealed class RegMeanPlusPlusTests
{
    [Fact]
    public void Each_blocks_grams_are_taken_behind_the_blocks_merged_before_it()
    {
        var config = RandomModels.Config(biases: false);
        var a = RandomModels.Create(config, seed: 3);
        var other = RandomModels.Create(config, seed: 4);
        var b = new LlamaModel(
            config,
            new ParameterSet(
                a.Parameters.Select(p =>
                {
                    bool own =
                        p.Name.StartsWith("model.layers.1.", StringComparison.Ordinal) || p.Name == "lm_head.weight";
                    return new Parameter(p.Name, p.Shape, [.. (own ? other.Parameters[p.Name] : p).Data]);
                })
            ),
            new RuntimeOptions { Threads = 2 }
        );
        var examples = new[]
        {
            RandomModels.Examples(config.VocabSize, 1, 9, 14),
            RandomModels.Examples(config.VocabSize, 1, 11, 6, 8),
        };
        var plusPlus = RegMeanPlusPlusGrams.Compute(
            [a, b],
            [examples[0], examples[1]],
            [1, 1],
            0.95,
            new RuntimeOptions { Threads = 2 }
        );
        var models = new[] { a, b };
        for (int t = 0; t < 2; t++)
        {
            var plain = ParameterStatistics.Grams(models[t], examples[t], 8);
            Assert.Equal(plain.Count, plusPlus[t].Count);
            Assert.Equal(plain.Tensors.Select(g => g.Name), plusPlus[t].Tensors.Select(g => g.Name));
            foreach (var (p, q) in plain.Tensors.Zip(plusPlus[t].Tensors))
            {
                double error = p.Values.Zip(q.Values, (x, y) => Math.Abs(x - y)).Max() / p.Values.Max(Math.Abs);
                if (p.Name == "lm_head.weight")
                    // Behind merged block 1, which is neither model's own: the head's inputs change.
                    Assert.True(error > 1e-3, $"model {t}: the head's Grams ignore the merged block 1 ({error})");
                else
                    // Blocks 0 and 1 lie behind the shared embedding and block 0, merged into themselves.
                    Assert.True(error < 1e-4, $"model {t}, {p.Name}: {error}");
            }
        }
    }
}
