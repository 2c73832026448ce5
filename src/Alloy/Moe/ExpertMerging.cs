using Alloy.LinearAlgebra;

namespace Alloy.Moe;

/// <summary>
/// One SwiGLU expert: gate and up [intermediate, hidden], down [hidden, intermediate], row-major float32; its output is
/// down · (silu(gate·x) ⊙ up·x).
/// </summary>
public sealed record ExpertWeights(float[] Gate, float[] Up, float[] Down, int Intermediate, int Hidden)
{
    /// <summary>
    /// The same function with the intermediate units reordered: unit u of the result is unit
    /// <paramref name="order"/>[u] of this expert (rows of gate and up, columns of down).
    /// </summary>
    public ExpertWeights Permuted(IReadOnlyList<int> order)
    {
        int n = Intermediate,
            h = Hidden;
        var gate = new float[Gate.Length];
        var up = new float[Up.Length];
        var down = new float[Down.Length];
        for (int u = 0; u < n; u++)
        {
            Array.Copy(Gate, order[u] * h, gate, u * h, h);
            Array.Copy(Up, order[u] * h, up, u * h, h);
            for (int r = 0; r < h; r++)
                down[r * n + u] = Down[r * n + order[u]];
        }
        return this with { Gate = gate, Up = up, Down = down };
    }
}

/// <summary>
/// MC-SMoE's merging stage (Li et al., "Merge, Then Compress", arXiv 2310.01334; the authors' UNITES-Lab/MC-SMoE
/// read for the details): experts are grouped around the most used ones by the similarity of their router logits, each
/// member's intermediate units are aligned to its group's leader by weight matching, and each group is averaged
/// weighted by how often the router chooses its members.
/// </summary>
public static class ExpertMerging
{
    /// <summary>
    /// How often each expert is chosen, as a share of all choices (the authors count top-k selections over the
    /// calibration tokens).
    /// </summary>
    public static double[] Frequencies(IReadOnlyList<long> selections)
    {
        double total = selections.Sum();
        if (!(total > 0))
            throw new AlloyException("no token was routed: the calibration data is empty");
        return [.. selections.Select(c => c / total)];
    }

    /// <summary>
    /// Similarity of two experts as the authors measure it by default: the cosine of their router-logit columns over
    /// the calibration tokens (<paramref name="logits"/> [tokens, experts]), mapped to [0, 1] as (cos + 1) / 2.
    /// </summary>
    public static double[,] RouterLogitSimilarity(ReadOnlySpan<float> logits, int tokens, int experts)
    {
        if (logits.Length != tokens * experts)
            throw new ArgumentException($"{logits.Length} logits for {tokens} tokens × {experts} experts");
        var dot = new double[experts, experts];
        for (int t = 0; t < tokens; t++)
        {
            var row = logits.Slice(t * experts, experts);
            for (int a = 0; a < experts; a++)
            for (int b = a; b < experts; b++)
                dot[a, b] += (double)row[a] * row[b];
        }
        var similarity = new double[experts, experts];
        for (int a = 0; a < experts; a++)
        for (int b = a; b < experts; b++)
        {
            double norms = Math.Sqrt(dot[a, a]) * Math.Sqrt(dot[b, b]);
            double cosine = norms > 0 ? dot[a, b] / norms : 0;
            similarity[a, b] = similarity[b, a] = (cosine + 1) / 2;
        }
        return similarity;
    }

    /// <summary>
    /// The group of each expert: the <paramref name="groups"/> most used experts lead groups 0 … K−1 in order of use
    /// (ties to the lower index), and every other expert joins the leader it is most similar to (ties to the more
    /// used leader). Returns the labels and the leaders.
    /// </summary>
    public static (int[] Labels, int[] Leaders) Group(
        IReadOnlyList<double> frequencies,
        double[,] similarity,
        int groups
    )
    {
        int experts = frequencies.Count;
        if (groups < 1 || groups > experts)
            throw new AlloyException($"--experts must be from 1 to the model's {experts} experts (got {groups})");
        var byUse = Enumerable.Range(0, experts).OrderByDescending(e => frequencies[e]).ThenBy(e => e).ToArray();
        var leaders = byUse[..groups];
        var labels = new int[experts];
        for (int g = 0; g < groups; g++)
            labels[leaders[g]] = g;
        foreach (int e in byUse[groups..])
        {
            int best = 0;
            for (int g = 1; g < groups; g++)
                if (similarity[e, leaders[g]] > similarity[e, leaders[best]])
                    best = g;
            labels[e] = best;
        }
        return (labels, leaders);
    }

    /// <summary>
    /// The order of <paramref name="target"/>'s intermediate units that best matches <paramref name="reference"/>'s:
    /// the assignment maximising Σ_u ⟨gate_r[u], gate_t[π(u)]⟩ + ⟨up_r[u], up_t[π(u)]⟩ + ⟨down_r[:, u],
    /// down_t[:, π(u)]⟩ (the authors' weight matching with the output weights included, for SwiGLU's two input
    /// projections).
    /// </summary>
    public static int[] Align(ExpertWeights reference, ExpertWeights target)
    {
        if (reference.Intermediate != target.Intermediate || reference.Hidden != target.Hidden)
            throw new ArgumentException("experts of different shapes cannot be aligned");
        int n = reference.Intermediate,
            h = reference.Hidden;
        // Gate_r·Gate_tᵀ + Up_r·Up_tᵀ + Down_rᵀ·Down_t, as three products into one [n, n] matrix.
        var products = new float[n * n];
        var backend = DenseBackend.Current;
        backend.Gemm(false, true, n, n, h, 1, reference.Gate, h, target.Gate, h, 0, products, n);
        backend.Gemm(false, true, n, n, h, 1, reference.Up, h, target.Up, h, 1, products, n);
        backend.Gemm(true, false, n, n, h, 1, reference.Down, n, target.Down, n, 1, products, n);
        var score = new double[n, n];
        for (int u = 0; u < n; u++)
        for (int v = 0; v < n; v++)
            score[u, v] = products[u * n + v];
        return LinearAssignment.Solve(score, maximize: true);
    }

    /// <summary>
    /// One group merged: every member aligned to <paramref name="members"/>[<paramref name="leader"/>], then the
    /// average weighted by the members' frequencies (a group nobody uses is averaged uniformly).
    /// </summary>
    public static ExpertWeights Merge(
        IReadOnlyList<ExpertWeights> members,
        IReadOnlyList<double> frequencies,
        int leader
    )
    {
        var reference = members[leader];
        var aligned = members.Select((m, i) => i == leader ? m : m.Permuted(Align(reference, m))).ToList();
        double total = frequencies.Sum();
        double[] weights =
            total > 0 ? [.. frequencies.Select(f => f / total)] : [.. frequencies.Select(_ => 1.0 / frequencies.Count)];
        float[] Average(Func<ExpertWeights, float[]> part)
        {
            var sum = new double[part(reference).Length];
            for (int i = 0; i < aligned.Count; i++)
            {
                var values = part(aligned[i]);
                for (int j = 0; j < sum.Length; j++)
                    sum[j] += weights[i] * values[j];
            }
            return [.. sum.Select(v => (float)v)];
        }
        return reference with { Gate = Average(e => e.Gate), Up = Average(e => e.Up), Down = Average(e => e.Down) };
    }
}
