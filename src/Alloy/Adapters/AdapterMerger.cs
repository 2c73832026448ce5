using Alloy.Checkpoints;
using Alloy.LinearAlgebra;
using Alloy.Methods.TaskVectors;
using Alloy.Output;
using Alloy.Tensors;

namespace Alloy.Adapters;

/// <summary>
/// PEFT's <c>add_weighted_adapter</c> combination types. The pruning types apply PEFT's element rules (per tensor)
/// to the A matrices and to the B matrices separately, with weight √|w·s| on each (the sign on A); their <c>_svd</c>
/// variants apply them to the updates s_t·B_t·A_t with weights w_t and then truncate like <see cref="Svd"/>.
/// </summary>
public enum CombinationType
{
    /// <summary>A = Σ sign(w)·√|w·s| A_t, B = Σ √|w·s| B_t: equal ranks; not the weighted sum of the updates.</summary>
    Linear,

    /// <summary>A = the rows w_t·s_t·A_t stacked, B = the columns B_t side by side: Σ w_t·s_t·B_t·A_t exactly.
    /// </summary>
    Cat,

    /// <summary>ΔW = Σ w_t·s_t·B_t·A_t, truncated by an SVD: B = U·S, A = Vᵀ (optionally clamped).</summary>
    Svd,

    /// <summary>Each tensor trimmed to its largest entries, a sign elected, the agreeing entries averaged.</summary>
    Ties,

    /// <summary>Each entry kept with probability <c>density</c> and rescaled, then the weighted sum.</summary>
    DareLinear,

    /// <summary>DARE's drop and rescale, then TIES's sign election and disjoint mean.</summary>
    DareTies,

    /// <summary>Each tensor trimmed to its largest <c>density</c>, then the weighted sum.</summary>
    MagnitudePrune,

    TiesSvd,
    DareLinearSvd,
    DareTiesSvd,
    MagnitudePruneSvd,
}

/// <summary>The options of <c>alloy merge-adapters</c>, with PEFT's defaults.</summary>
public sealed record AdapterMergeOptions
{
    public CombinationType Type { get; init; } = CombinationType.Svd;

    /// <summary>With svd: the merged rank (default: the largest input rank of the module).</summary>
    public int? SvdRank { get; init; }

    /// <summary>With svd: clamp both factors to the q-quantile of their values (PEFT's <c>svd_clamp</c>).</summary>
    public double? SvdClamp { get; init; }

    /// <summary>With the pruning types: the fraction of each tensor's entries kept.</summary>
    public double? Density { get; init; }

    /// <summary>With ties types: elect the sign of the count of signs (<c>frequency</c>) instead of the sum.</summary>
    public bool SignByCount { get; init; }

    /// <summary>Keys DARE's random drops (per module and adapter).</summary>
    public ulong Seed { get; init; }
}

/// <summary>
/// Merges PEFT LoRA adapters of one base into one adapter, module by module, with PEFT's combination types
/// (<c>add_weighted_adapter</c>): each input's update is w_t·s_t·B_t·A_t with its weight w_t and its own scale s_t
/// (α / r, per module). The output's scale is 1 for every module. Adapters with whole modules (modules_to_save) or
/// transposed updates (embeddings, fan-in-fan-out) are refused for now.
/// </summary>
public static class AdapterMerger
{
    public static IReadOnlyList<(string Module, int Rank)> Merge(
        IReadOnlyList<(string Path, double Weight)> inputs,
        string output,
        AdapterMergeOptions options,
        bool overwrite = false,
        Diagnostics? diagnostics = null,
        Action<int, int>? progress = null
    )
    {
        if (inputs.Count == 0)
            throw new AlloyException("give at least one adapter to merge");
        var adapters = new List<LoraAdapter>();
        try
        {
            foreach (var (path, _) in inputs)
                adapters.Add(LoraAdapter.Open(path));
            var updates = adapters.Select(a => a.Updates().ToDictionary(u => u.Weight, u => u.Delta)).ToList();
            for (int t = 0; t < adapters.Count; t++)
            {
                if (adapters[t].TensorNames.Any(n => n.EndsWith(".lora_B.bias", StringComparison.Ordinal)))
                    throw new AlloyException(
                        $"{inputs[t].Path}: it has bias updates (lora_B.bias), which are not merged yet"
                    );
                if (adapters[t].TensorNames.Count() != 2 * updates[t].Count)
                    throw new AlloyException(
                        $"{inputs[t].Path}: it saves whole modules (modules_to_save); only low-rank updates are merged"
                    );
                if (updates[t].Values.FirstOrDefault(d => d.Transposed) is not null)
                    throw new AlloyException(
                        $"{inputs[t].Path}: embedding or fan-in-fan-out updates are not merged yet"
                    );
            }
            using var folder = OutputFolder.Prepare(output, overwrite, inputs.Select(i => i.Path), diagnostics);
            var weights = updates.SelectMany(u => u.Keys).Distinct().ToList();
            var tensors = new List<AdapterTensor>();
            var modules = new List<(string Module, int Rank)>();
            foreach (var weight in weights)
            {
                var present = Enumerable.Range(0, adapters.Count).Where(t => updates[t].ContainsKey(weight)).ToList();
                var deltas = present.Select(t => (Delta: updates[t][weight], Weight: inputs[t].Weight)).ToList();
                var (a, b, rows, cols, rank) = Combine(weight, deltas, options);
                string module = weight[..^".weight".Length];
                var dtype = deltas[0].Delta.A.Info.DType;
                tensors.Add(new($"{AdapterFolder.Prefix}{module}.lora_A.weight", dtype, [rank, cols], a));
                tensors.Add(new($"{AdapterFolder.Prefix}{module}.lora_B.weight", dtype, [rows, rank], b));
                modules.Add((module, rank));
                progress?.Invoke(modules.Count, weights.Count);
            }
            AdapterFolder.Write(
                folder.Temporary,
                tensors,
                modules,
                [],
                null,
                $"# LoRA adapters merged by Alloy\n\n`{options.Type.ToString().ToLowerInvariant()}` of "
                    + string.Join(", ", inputs.Select(i => $"`{i.Path}` × {i.Weight}"))
                    + ".\n"
            );
            folder.Commit();
            return modules;
        }
        finally
        {
            foreach (var adapter in adapters)
                adapter.Dispose();
        }
    }

    private static bool IsSvd(CombinationType type) =>
        type
            is CombinationType.Svd
                or CombinationType.TiesSvd
                or CombinationType.DareLinearSvd
                or CombinationType.DareTiesSvd
                or CombinationType.MagnitudePruneSvd;

    private static (float[] A, float[] B, int Rows, int Cols, int Rank) Combine(
        string weight,
        IReadOnlyList<(LoraDelta Delta, double Weight)> inputs,
        AdapterMergeOptions options
    )
    {
        var factors = inputs
            .Select(i =>
                (
                    A: i.Delta.A.ReadFloat32(),
                    B: i.Delta.B.ReadFloat32(),
                    i.Delta.Rank,
                    i.Delta.Scale,
                    i.Weight,
                    Coefficient: i.Weight * i.Delta.Scale
                )
            )
            .ToList();
        int rows = (int)inputs[0].Delta.B.Info.Shape[0],
            cols = (int)inputs[0].Delta.A.Info.Shape[1];
        var type = options.Type;
        if (type == CombinationType.Cat)
        {
            int rank = factors.Sum(f => f.Rank);
            var a = new float[rank * cols];
            var b = new float[rows * rank];
            int offset = 0;
            foreach (var f in factors)
            {
                for (int j = 0; j < f.A.Length; j++)
                    a[offset * cols + j] = (float)(f.Coefficient * f.A[j]);
                for (int i = 0; i < rows; i++)
                    Array.Copy(f.B, i * f.Rank, b, i * rank + offset, f.Rank);
                offset += f.Rank;
            }
            return (a, b, rows, cols, rank);
        }
        if (!IsSvd(type))
        {
            int rank = factors[0].Rank;
            if (factors.Any(f => f.Rank != rank))
                throw new AlloyException(
                    $"'{weight}': {Name(type)} needs adapters of equal rank (got "
                        + $"{string.Join(", ", factors.Select(f => f.Rank))}); use cat or an _svd type"
                );
            double[] roots = [.. factors.Select(f => Math.Sqrt(Math.Abs(f.Coefficient)))];
            double[] signed = [.. factors.Select((f, t) => Math.Sign(f.Coefficient) * roots[t])];
            var a = Elementwise(type, [.. factors.Select(f => f.A)], signed, options, weight + "/A");
            var b = Elementwise(type, [.. factors.Select(f => f.B)], roots, options, weight + "/B");
            return (a, b, rows, cols, rank);
        }
        // The _svd types: the element rule on the full updates s_t·B_t·A_t with weights w_t, then a truncated SVD.
        var updates = factors
            .Select(f =>
            {
                var delta = new float[rows * cols];
                DenseBackend.Current.Gemm(
                    false,
                    false,
                    rows,
                    cols,
                    f.Rank,
                    (float)f.Scale,
                    f.B,
                    f.Rank,
                    f.A,
                    cols,
                    0,
                    delta,
                    cols
                );
                return delta;
            })
            .ToArray();
        var merged = Elementwise(type, updates, [.. factors.Select(f => f.Weight)], options, weight);
        return Truncate(merged, rows, cols, options.SvdRank ?? factors.Max(f => f.Rank), options.SvdClamp);
    }

    /// <summary>
    /// PEFT's element rules (merge_utils) over same-shaped tensors with weights: task arithmetic, magnitude pruning,
    /// DARE, TIES and DARE-TIES; pruning is per tensor, the sign election uses the pruned, unweighted tensors (an
    /// exact 0 elects +), and the disjoint merge divides by the number of agreeing tensors.
    /// </summary>
    private static float[] Elementwise(
        CombinationType type,
        float[][] tensors,
        double[] weights,
        AdapterMergeOptions options,
        string key
    )
    {
        var pruned = tensors.Select(t => (float[])t.Clone()).ToArray();
        bool magnitude =
            type
            is CombinationType.Ties
                or CombinationType.TiesSvd
                or CombinationType.MagnitudePrune
                or CombinationType.MagnitudePruneSvd;
        bool dare =
            type
            is CombinationType.DareLinear
                or CombinationType.DareTies
                or CombinationType.DareLinearSvd
                or CombinationType.DareTiesSvd;
        bool ties =
            type
            is CombinationType.Ties
                or CombinationType.TiesSvd
                or CombinationType.DareTies
                or CombinationType.DareTiesSvd;
        if (magnitude || dare)
        {
            double density = options.Density
                ?? throw new AlloyException($"--combination-type {Name(type)} needs --density");
            if (!(density > 0 && density <= 1))
                throw new AlloyException($"--density must be in (0, 1] (got {density})");
            for (int t = 0; t < pruned.Length; t++)
            {
                if (magnitude)
                    Sparsify.Magnitude(pruned[t], density);
                else
                {
                    Sparsify.Random(pruned[t], density, RandomStream.For(options.Seed, key, t), 0);
                    for (int j = 0; j < pruned[t].Length; j++)
                        pruned[t][j] = (float)(pruned[t][j] / density);
                }
            }
        }
        var merged = new float[pruned[0].Length];
        if (ties)
        {
            double[] ones = [.. pruned.Select(_ => 1.0)];
            SignConsensus.Elect(pruned, ones, options.SignByCount, merged);
            SignConsensus.DisjointMerge(pruned, weights, ones, merged, merged, DisjointDivisor.AgreeingCount);
            return merged;
        }
        for (int t = 0; t < pruned.Length; t++)
        for (int j = 0; j < merged.Length; j++)
            merged[j] += (float)(weights[t] * pruned[t][j]);
        return merged;
    }

    /// <summary>The best rank-r factors of ΔW [rows, cols]: B = U·S, A = Vᵀ, optionally clamped (PEFT's svd).</summary>
    private static (float[] A, float[] B, int Rows, int Cols, int Rank) Truncate(
        float[] delta,
        int rows,
        int cols,
        int wanted,
        double? clamp
    )
    {
        int k = Math.Min(rows, cols);
        int rank = Math.Min(wanted, k);
        if (rank < 1)
            throw new AlloyException($"--svd-rank must be at least 1 (got {wanted})");
        var (u, s, vt) = (new float[rows * k], new float[k], new float[k * cols]);
        DenseBackend.Current.Svd(delta, rows, cols, u, s, vt);
        var a = vt.AsSpan(0, rank * cols).ToArray();
        var b = new float[rows * rank];
        for (int i = 0; i < rows; i++)
        for (int r = 0; r < rank; r++)
            b[i * rank + r] = u[i * k + r] * s[r];
        if (clamp is { } q)
        {
            float high = Quantile([.. b, .. a], q);
            for (int j = 0; j < a.Length; j++)
                a[j] = Math.Clamp(a[j], -high, high);
            for (int j = 0; j < b.Length; j++)
                b[j] = Math.Clamp(b[j], -high, high);
        }
        return (a, b, rows, cols, rank);
    }

    /// <summary>PEFT's name of a combination type (dare_ties_svd …).</summary>
    public static string Name(CombinationType type) =>
        string.Concat(
            type.ToString()
                .Select(
                    (c, i) =>
                        char.IsUpper(c) && i > 0 ? "_" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()
                )
        );

    /// <summary>torch.quantile's linear interpolation between the closest ranks.</summary>
    private static float Quantile(float[] values, double q)
    {
        if (!(q >= 0 && q <= 1))
            throw new AlloyException($"--svd-clamp must be a quantile from 0 to 1 (got {q})");
        Array.Sort(values);
        double position = q * (values.Length - 1);
        int low = (int)Math.Floor(position);
        int high = Math.Min(low + 1, values.Length - 1);
        return (float)(values[low] + (position - low) * (values[high] - values[low]));
    }
}
