using Alloy.Checkpoints;
using Alloy.LinearAlgebra;
using Alloy.Tensors;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Moe;

/// <summary>
/// The base model's hidden states for prompts, for the <c>hidden*</c> gate modes; Alloy.Runtime implements it
/// (PromptHiddenStates). Each result has one vector per layer: the embedding output and every decoder layer's output
/// but the last (transformers' <c>hidden_states[:-1]</c>), averaged over the prompts.
/// </summary>
public interface IPromptHiddenStates
{
    /// <summary>The last token's hidden state (gate modes hidden and hidden_last).</summary>
    float[][] LastToken(IReadOnlyList<string> prompts);

    /// <summary>The mean over the left-padded sequence, padding included (gate mode hidden_avg).</summary>
    float[][] Average(IReadOnlyList<string> prompts);
}

/// <summary>Prompts as mergekit-moe tokenizes them: the BOS token's text prepended, no other special tokens.</summary>
public static class MoePrompts
{
    /// <summary>The token ids of each prompt, unpadded.</summary>
    public static int[][] Tokenize(TextTokenizer tokenizer, IReadOnlyList<string> prompts)
    {
        string bos = tokenizer.Special.Bos is { } id ? tokenizer.TokenContent(id) ?? "" : "";
        return [.. prompts.Select(p => tokenizer.Encode(bos + p, addSpecialTokens: false))];
    }

    /// <summary>mergekit pads with BOS, or EOS when the tokenizer has no BOS.</summary>
    public static int PadId(TextTokenizer tokenizer) =>
        tokenizer.Special.Bos
        ?? tokenizer.Special.Eos
        ?? throw new AlloyException(
            $"{tokenizer.Source}: the tokenizer has neither a BOS nor an EOS token to pad with"
        );
}

/// <summary>
/// The router vectors, [layers][gated experts][hidden], as mergekit-moe's get_gate_params makes them.
/// </summary>
public static class MoeGates
{
    public static float[][][] Compute(
        string gateMode,
        IReadOnlyList<MoeExpert> experts,
        int layers,
        int hidden,
        ulong seed,
        Func<TextTokenizer> tokenizer,
        Func<StoredTensor> embedding,
        Func<IPromptHiddenStates> hiddenStates
    )
    {
        switch (gateMode)
        {
            case "random":
                // mergekit draws torch.randn; Alloy's seeded counter-based stream instead (same distribution).
                return Random(layers, experts.Count, hidden, seed, (s, i) => (float)s.Normal(i));
            case "uniform_random":
                float scale = (float)Math.Sqrt(1.0 / hidden);
                return Random(layers, experts.Count, hidden, seed, (s, i) => s.Uniform(i) * 2 * scale - scale);
        }
        Func<IReadOnlyList<string>, float[][]> vectors;
        if (gateMode == "cheap_embed")
        {
            var tok = tokenizer();
            var embed = embedding();
            vectors = prompts =>
            {
                var one = CheapEmbedding(embed, MoePrompts.Tokenize(tok, prompts));
                return [.. Enumerable.Repeat(one, layers)];
            };
        }
        else
        {
            var states = hiddenStates();
            vectors = gateMode == "hidden_avg" ? states.Average : states.LastToken;
        }
        var gates = new float[layers][][];
        for (int l = 0; l < layers; l++)
            gates[l] = new float[experts.Count][];
        for (int e = 0; e < experts.Count; e++)
        {
            var positive = vectors(experts[e].PositivePrompts ?? []);
            var negative = experts[e].NegativePrompts is { Count: > 0 } n ? vectors(n) : null;
            for (int l = 0; l < layers; l++)
            {
                var row = (float[])positive[l].Clone();
                if (negative is not null)
                    for (int h = 0; h < row.Length; h++)
                        row[h] -= negative[l][h];
                gates[l][e] = Normalized(row);
            }
        }
        return gates;
    }

    /// <summary>
    /// cheap_embed: the embedding rows of every token that is not padding, summed over the tokens and the prompts, and
    /// L2-normalised. mergekit pads the batch with the pad token and masks it, so the unpadded sum is the same.
    /// </summary>
    public static float[] CheapEmbedding(StoredTensor embed, int[][] sequences)
    {
        int hidden = (int)embed.Info.Shape[1];
        long vocab = embed.Info.Shape[0];
        var sum = new double[hidden];
        var row = new float[hidden];
        foreach (var id in sequences.SelectMany(s => s))
        {
            if ((ulong)id >= (ulong)vocab)
                throw new AlloyException($"token id {id} is outside the base model's embedding ({vocab} rows)");
            embed.ReadFloat32((long)id * hidden, row);
            for (int h = 0; h < hidden; h++)
                sum[h] += row[h];
        }
        return Normalized([.. sum.Select(v => (float)v)]);
    }

    /// <summary>v / max(‖v‖₂, 1e-8), as mergekit clamps the norm.</summary>
    public static float[] Normalized(float[] v)
    {
        double norm = Math.Sqrt(v.Sum(x => (double)x * x));
        double scale = 1.0 / Math.Max(norm, 1e-8);
        return [.. v.Select(x => (float)(x * scale))];
    }

    private static float[][][] Random(
        int layers,
        int experts,
        int hidden,
        ulong seed,
        Func<RandomStream, long, float> draw
    )
    {
        var gates = new float[layers][][];
        for (int l = 0; l < layers; l++)
        {
            var stream = RandomStream.For(seed, $"moe.gate.layer{l}", 0);
            gates[l] = new float[experts][];
            for (int e = 0; e < experts; e++)
                gates[l][e] = [.. Enumerable.Range(0, hidden).Select(h => draw(stream, (long)e * hidden + h))];
        }
        return gates;
    }

    /// <summary>The 2-norm condition number σ_max / σ_min of one layer's [experts, hidden] gate matrix.</summary>
    public static double ConditionNumber(float[][] rows)
    {
        int m = rows.Length,
            n = rows[0].Length,
            r = Math.Min(m, n);
        var a = rows.SelectMany(x => x).ToArray();
        var s = new float[r];
        JacobiSvd.Run(a, m, n, new float[m * r], s, new float[r * n]);
        double max = s.Max(),
            min = s.Min();
        return min == 0 ? double.PositiveInfinity : max / min;
    }

    /// <summary>mergekit's warning when a layer's gate matrix has a condition number above 5.</summary>
    public static void WarnDegenerate(float[][][] gates, Diagnostics diagnostics, double threshold = 5.0)
    {
        var bad = Enumerable.Range(0, gates.Length).Where(l => ConditionNumber(gates[l]) > threshold).ToList();
        if (bad.Count == 0)
            return;
        string which =
            bad.Count == gates.Length && bad.Count > 2 ? "all layers have"
            : bad.Count == 1 ? $"layer {bad[0]} has"
            : bad.Count == 2 ? $"layers {bad[0]} and {bad[1]} have"
            : $"layers {string.Join(", ", bad[..^1])}, and {bad[^1]} have";
        diagnostics.Warn(
            $"{which} degenerate routing (gate condition number > {threshold}): the prompts may be too similar, and "
                + "some experts will be underused"
        );
    }
}
