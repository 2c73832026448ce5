using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Support;

namespace Alloy.Runtime.Tests.Models;

/// <summary>
/// Logits of the reference models (Fixtures/make_reference.py: Llama with GQA, sharded f32; Qwen2 with biases and
/// tied embeddings, bf16; Llama 3 RoPE scaling with head_dim given; linear RoPE scaling with Llama's biases; Mistral's
/// sliding window, f16 .bin; Mixtral in the fused and the per-expert layout; Qwen2-MoE with a shared expert and
/// norm_topk_prob false) against PyTorch, on a padded batch of three sequences, on both GEMM backends.
/// </summary>
public sealed class ReferenceLogitsTests
{
    /// <summary>
    /// The tolerance of the issue: 1e-4 relative, per token row (see <see cref="Reference.WorstRowError"/>).
    /// </summary>
    private const double Tolerance = 1e-4;

    public static TheoryData<string, string> Cases() => Reference.ModelsAndBackends();

    [Theory]
    [MemberData(nameof(Cases))]
    public void Logits_of_a_padded_batch_match_pytorch(string name, string backend)
    {
        var model = LlamaModel.Load(
            Reference.Folder(name),
            new RuntimeOptions { Backend = Reference.Backend(backend) }
        );
        var expected = Reference.Load(name);
        foreach (bool left in new[] { false, true })
        {
            var batch = Padded(expected.Sequences, left);
            var logits = model.Forward(batch);
            Assert.Equal(expected.Sequences.Sum(s => s.Length), logits.Count);
            var actual = Enumerable.Range(0, logits.Count).SelectMany(i => logits.Row(i).ToArray()).ToArray();
            double error = Reference.WorstRowError(actual, expected.Logits, model.Config.VocabSize);
            Assert.True(
                error <= Tolerance,
                $"{name} on {backend}, {(left ? "left" : "right")} padding: relative error {error:E2}"
            );
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Rope_frequencies_match_transformers(string name)
    {
        var model = LlamaModel.Load(Reference.Folder(name));
        var expected = Reference.Load(name).InverseFrequencies;
        Assert.Equal(expected.Length, model.Rope.InverseFrequencies.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(
                Math.Abs(model.Rope.InverseFrequencies[i] - expected[i]) <= 2e-7 * expected[i],
                $"{name}: frequency {i} is {model.Rope.InverseFrequencies[i]}, PyTorch {expected[i]}"
            );
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Greedy_generation_matches_pytorch(string name)
    {
        var model = LlamaModel.Load(Reference.Folder(name));
        var expected = Reference.Load(name);
        var generated = Generation.Greedy(model, [expected.Prompt], expected.Greedy.Length, stopTokens: []);
        Assert.Equal(expected.Greedy, generated[0]);
    }

    public static TheoryData<string> Names() => [.. Reference.ModelNames];

    /// <summary>
    /// The sequences padded to a common width with token 0, on the left or the right, with their attention mask.
    /// </summary>
    internal static TokenBatch Padded(IReadOnlyList<int[]> sequences, bool left)
    {
        int width = sequences.Max(s => s.Length);
        var ids = new int[sequences.Count][];
        var mask = new int[sequences.Count][];
        for (int b = 0; b < sequences.Count; b++)
        {
            ids[b] = new int[width];
            mask[b] = new int[width];
            int start = left ? width - sequences[b].Length : 0;
            sequences[b].CopyTo(ids[b], start);
            Array.Fill(mask[b], 1, start, sequences[b].Length);
        }
        return TokenBatch.FromPadded(ids, mask);
    }
}
