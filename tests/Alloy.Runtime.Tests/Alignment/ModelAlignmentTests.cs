using Alloy.Alignment;
using Alloy.Runtime.Alignment;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Support;

namespace Alloy.Runtime.Tests.Alignment;

public sealed class ModelAlignmentTests
{
    public static TheoryData<string> Configs => ["llama-biases", "llama-tied", "qwen2-tied", "mistral", "mha", "mqa"];

    private static ModelConfig Config(string name) =>
        name switch
        {
            "llama-biases" => RandomModels.Config(ArchitectureFamily.Llama, biases: true),
            "llama-tied" => RandomModels.Config(ArchitectureFamily.Llama, biases: false, tied: true),
            "qwen2-tied" => RandomModels.Config(ArchitectureFamily.Qwen2, biases: true, tied: true),
            "mistral" => RandomModels.Config(ArchitectureFamily.Mistral, biases: false, window: 3),
            "mha" => RandomModels.Config() with { KeyValueHeads = 4 },
            _ => RandomModels.Config() with { KeyValueHeads = 1 },
        };

    private static float[] Logits(LlamaModel model)
    {
        var tokens = TestModels.Sequences(model.Config.VocabSize, 7, 5);
        var logits = model.Forward(TokenBatch.FromSequences(tokens.Select(t => (IReadOnlyList<int>)t)));
        return [.. Enumerable.Range(0, logits.Count).SelectMany(i => logits.Row(i).ToArray())];
    }

    /// <summary>The original, and a copy with every symmetry applied at once (each a random draw).</summary>
    private static (LlamaModel Original, LlamaModel Permuted, Dictionary<string, int[]> Perms) Pair(string name)
    {
        var original = RandomModels.Create(Config(name), seed: 11);
        var perms = ModelAlignment.Spec(original.Config).Random(seed: 5);
        // A draw of a small permutation may be the identity: reverse it, so that every permutation moves something.
        foreach (var p in perms.Values)
            if (p.Length > 1 && p.SequenceEqual(Enumerable.Range(0, p.Length)))
                Array.Reverse(p);
        return (original, ModelAlignment.Permute(original, perms), perms);
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void EverySymmetryAtOnceLeavesTheLogitsUnchanged(string name)
    {
        var (original, permuted, perms) = Pair(name);
        // Every permutation of more than one unit moves, and so does every tensor it acts on.
        var moving = ModelAlignment.Spec(original.Config).Permutations.Where(p => p.Size > 1).ToList();
        foreach (var p in moving)
            Assert.NotEqual(Enumerable.Range(0, p.Size), perms[p.Name]);
        foreach (var tensor in moving.SelectMany(p => p.Slices).Select(s => s.Tensor).Distinct())
            Assert.False(
                original.Parameters[tensor].Data.SequenceEqual(permuted.Parameters[tensor].Data),
                $"{tensor} did not move"
            );

        var (expected, actual) = (Logits(original), Logits(permuted));
        for (int i = 0; i < expected.Length; i++)
            Assert.True(
                Math.Abs(expected[i] - actual[i]) <= 1e-5f * (1 + Math.Abs(expected[i])),
                $"logit {i}: {actual[i]} against {expected[i]}"
            );
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void IndexMapsReadTheSameTensorsAsApplying(string name)
    {
        var (original, permuted, perms) = Pair(name);
        var spec = ModelAlignment.Spec(original.Config);
        foreach (var p in original.Parameters)
        {
            var gather = spec.Gather(p.Name, perms);
            int columns = p.Columns;
            var read = new float[p.Data.Length];
            for (int i = 0; i < read.Length; i++)
            {
                int r = i / columns,
                    c = i % columns;
                read[i] = p.Data[(gather?.Rows?[r] ?? r) * columns + (gather?.Columns?[c] ?? c)];
            }
            Assert.Equal(permuted.Parameters[p.Name].Data, read);
        }
    }

    [Fact]
    public void ReorderingDimensionsInsideHeadsChangesTheLogits()
    {
        // Why heads move whole: swapping dimensions 0 and 1 of every query and key head alike keeps q·k without RoPE,
        // but RoPE rotates dimension pairs (i, i + head_dim/2), so the scores, and the logits, change.
        var original = RandomModels.Create(Config("llama-tied"), seed: 11);
        var swapped = ModelAlignment.Permute(original, ModelAlignment.Spec(original.Config).Identity());
        int hd = original.Config.HeadDim,
            columns = original.Config.HiddenSize;
        foreach (
            var p in swapped.Parameters.Where(p => p.Name.EndsWith("q_proj.weight") || p.Name.EndsWith("k_proj.weight"))
        )
            for (int head = 0; head < p.Rows / hd; head++)
            for (int c = 0; c < columns; c++)
                (p.Data[head * hd * columns + c], p.Data[(head * hd + 1) * columns + c]) = (
                    p.Data[(head * hd + 1) * columns + c],
                    p.Data[head * hd * columns + c]
                );
        var (expected, actual) = (Logits(original), Logits(swapped));
        Assert.Contains(expected.Zip(actual), pair => Math.Abs(pair.First - pair.Second) > 1e-3);
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void WeightMatchingRecoversTheSymmetries(string name)
    {
        var (original, permuted, perms) = Pair(name);
        var spec = ModelAlignment.Spec(original.Config);
        var (found, sweeps) = WeightMatching.Match(
            spec,
            ModelAlignment.Tensors(original),
            ModelAlignment.Tensors(permuted),
            seed: 2
        );
        Assert.InRange(sweeps, 2, WeightMatching.MaxSweeps - 1);
        AssertRecovered(original, ModelAlignment.Permute(permuted, found));
        // Residual and MLP permutations found are the inverses of the ones drawn.
        foreach (var p in spec.Permutations.Where(p => p.Kind is PermutationKind.Residual or PermutationKind.Mlp))
            for (int i = 0; i < p.Size; i++)
                Assert.Equal(i, perms[p.Name][found[p.Name][i]]);
        var gains = WeightMatching.Gains(
            spec,
            ModelAlignment.Tensors(original),
            ModelAlignment.Tensors(permuted),
            found
        );
        Assert.All(gains, g => Assert.Equal(1, g.After, 6));
        Assert.All(gains, g => Assert.True(g.Before < 0.9, $"{g.Kind} was {g.Before} before"));
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void ActivationMatchingRecoversTheSymmetries(string name)
    {
        var (original, permuted, _) = Pair(name);
        var spec = ModelAlignment.Spec(original.Config);
        var examples = RandomModels.Examples(original.Config.VocabSize, 0, 12, 9, 15, 11, 8, 14);
        var correlations = ModelAlignment.Correlate(original, permuted, examples, batchSize: 4);
        var found = ActivationMatching.Match(spec, correlations);
        AssertRecovered(original, ModelAlignment.Permute(permuted, found));
        var gains = ActivationMatching.Gains(spec, correlations, found);
        Assert.All(gains, g => Assert.Equal(1, g.After, 4));
        Assert.All(gains, g => Assert.True(g.Before < 0.9, $"{g.Kind} was {g.Before} before"));
    }

    [Fact]
    public void MismatchedModelsAreRefusedWithOneLine()
    {
        var error = Assert.Throws<AlloyException>(() =>
            ModelAlignment.CheckCompatible(
                Config("llama-biases"),
                Config("llama-biases") with
                {
                    IntermediateSize = 32,
                }
            )
        );
        Assert.Equal(
            "the model and the reference differ in intermediate_size (32 against 24); alignment permutes the units of "
                + "models of one architecture and shape",
            error.Message
        );
        var moe = Assert.Throws<AlloyException>(() =>
            ModelAlignment.Spec(RandomModels.Moe(ArchitectureFamily.Mixtral))
        );
        Assert.Contains("mixture of experts", moe.Message);
    }

    private static void AssertRecovered(LlamaModel original, LlamaModel aligned)
    {
        foreach (var p in original.Parameters)
            Assert.True(p.Data.SequenceEqual(aligned.Parameters[p.Name].Data), $"{p.Name} was not recovered");
    }
}
