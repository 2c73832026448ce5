using Alloy.Moe;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Runtime.Merging;

/// <summary>
/// The base model's hidden states for mergekit-moe's <c>hidden*</c> gates. Prompts are tokenized as mergekit does (BOS
/// text prepended) and left-padded with the pad token to the longest prompt of the set. Layer l's feature is the input
/// of decoder block l: the embedding output for l = 0, else block l − 1's output (transformers' hidden_states[:-1]).
/// </summary>
/// <remarks>
/// The runtime packs sequences without padding, and RoPE attention depends only on relative positions, so a prompt's
/// real tokens are computed as mergekit's masked, left-padded batch computes them. The padding rows, which
/// hidden_avg averages in, are computed as a sequence of pad tokens of their own (they see only earlier pads):
/// transformers masks every key of those rows, and what it then computes depends on its version and attention kernel.
/// mergekit runs the model in bfloat16; Alloy in float32.
/// </remarks>
public sealed class PromptHiddenStates(LlamaModel model, TextTokenizer tokenizer) : IPromptHiddenStates
{
    public float[][] LastToken(IReadOnlyList<string> prompts) => Features(prompts, average: false);

    public float[][] Average(IReadOnlyList<string> prompts) => Features(prompts, average: true);

    private float[][] Features(IReadOnlyList<string> prompts, bool average)
    {
        var sequences = MoePrompts.Tokenize(tokenizer, prompts);
        if (sequences.Any(s => s.Length == 0))
            throw new AlloyException("a prompt has no tokens (the tokenizer has no BOS and the prompt is empty)");
        int longest = sequences.Max(s => s.Length);
        int pad = MoePrompts.PadId(tokenizer);
        // Sequence i is prompt i; with averaging, prompt i's padding follows as a sequence of its own when it has any.
        var batch = new List<int[]>(sequences);
        var padOf = new int[sequences.Length];
        for (int i = 0; i < sequences.Length; i++)
        {
            padOf[i] = -1;
            if (average && sequences[i].Length < longest)
            {
                padOf[i] = batch.Count;
                batch.Add([.. Enumerable.Repeat(pad, longest - sequences[i].Length)]);
            }
        }
        var tokens = TokenBatch.FromSequences(batch);
        var state = model.CreateState(keepActivations: true);
        model.Forward(tokens, state, LogitSelection.Last);
        var layout = state.Layout!;
        int layers = model.Config.Layers,
            hidden = model.Config.HiddenSize;
        var result = new float[layers][];
        for (int l = 0; l < layers; l++)
        {
            var input = state.Blocks[l].Input;
            var sum = new double[hidden];
            for (int i = 0; i < sequences.Length; i++)
            {
                if (!average)
                {
                    Add(sum, input.Row(layout.RowOf(i, sequences[i].Length - 1)), 1.0);
                    continue;
                }
                // The mean over the padded length: padding rows count, as in mergekit.
                foreach (int s in padOf[i] < 0 ? [i] : new[] { padOf[i], i })
                    for (int t = 0; t < layout.Length(s); t++)
                        Add(sum, input.Row(layout.RowOf(s, t)), 1.0 / longest);
            }
            result[l] = [.. sum.Select(v => (float)(v / sequences.Length))];
        }
        return result;
    }

    private static void Add(double[] sum, ReadOnlySpan<float> row, double weight)
    {
        for (int h = 0; h < sum.Length; h++)
            sum[h] += row[h] * weight;
    }
}
