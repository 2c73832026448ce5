using Alloy.Checkpoints;
using Alloy.LinearAlgebra;
using Alloy.Output;
using Alloy.Tensors;

namespace Alloy.Adapters;

/// <summary>PEFT's <c>add_weighted_adapter</c> combination types that Alloy has so far.</summary>
public enum CombinationType
{
    /// <summary>A = Σ sign(w)·√|w·s| A_t, B = Σ √|w·s| B_t: equal ranks; not the weighted sum of the updates.</summary>
    Linear,

    /// <summary>A = the rows w_t·s_t·A_t stacked, B = the columns B_t side by side: Σ w_t·s_t·B_t·A_t exactly.
    /// </summary>
    Cat,

    /// <summary>ΔW = Σ w_t·s_t·B_t·A_t, truncated by an SVD: B = U·S, A = Vᵀ (optionally clamped).</summary>
    Svd,
}

/// <summary>The options of <c>alloy merge-adapters</c>, with PEFT's defaults.</summary>
public sealed record AdapterMergeOptions
{
    public CombinationType Type { get; init; } = CombinationType.Svd;

    /// <summary>With svd: the merged rank (default: the largest input rank of the module).</summary>
    public int? SvdRank { get; init; }

    /// <summary>With svd: clamp both factors to the q-quantile of their values (PEFT's <c>svd_clamp</c>).</summary>
    public double? SvdClamp { get; init; }
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
        Diagnostics? diagnostics = null
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

    private static (float[] A, float[] B, int Rows, int Cols, int Rank) Combine(
        string weight,
        IReadOnlyList<(LoraDelta Delta, double Weight)> inputs,
        AdapterMergeOptions options
    )
    {
        var factors = inputs
            .Select(i => (A: Read(i.Delta.A), B: Read(i.Delta.B), i.Delta.Rank, Coefficient: i.Weight * i.Delta.Scale))
            .ToList();
        int rows = (int)inputs[0].Delta.B.Info.Shape[0],
            cols = (int)inputs[0].Delta.A.Info.Shape[1];
        switch (options.Type)
        {
            case CombinationType.Cat:
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
            case CombinationType.Linear:
            {
                int rank = factors[0].Rank;
                if (factors.Any(f => f.Rank != rank))
                    throw new AlloyException(
                        $"'{weight}': linear needs adapters of equal rank (got "
                            + $"{string.Join(", ", factors.Select(f => f.Rank))}); use cat or svd"
                    );
                var a = new float[rank * cols];
                var b = new float[rows * rank];
                foreach (var f in factors)
                {
                    double root = Math.Sqrt(Math.Abs(f.Coefficient));
                    double signed = Math.Sign(f.Coefficient) * root;
                    for (int j = 0; j < a.Length; j++)
                        a[j] += (float)(signed * f.A[j]);
                    for (int j = 0; j < b.Length; j++)
                        b[j] += (float)(root * f.B[j]);
                }
                return (a, b, rows, cols, rank);
            }
            default:
            {
                var delta = new float[rows * cols];
                foreach (var f in factors)
                    DenseBackend.Current.Gemm(
                        false,
                        false,
                        rows,
                        cols,
                        f.Rank,
                        (float)f.Coefficient,
                        f.B,
                        f.Rank,
                        f.A,
                        cols,
                        1,
                        delta,
                        cols
                    );
                int k = Math.Min(rows, cols);
                int rank = Math.Min(options.SvdRank ?? factors.Max(f => f.Rank), k);
                if (rank < 1)
                    throw new AlloyException($"--svd-rank must be at least 1 (got {options.SvdRank})");
                var (u, s, vt) = (new float[rows * k], new float[k], new float[k * cols]);
                DenseBackend.Current.Svd(delta, rows, cols, u, s, vt);
                var a = vt.AsSpan(0, rank * cols).ToArray();
                var b = new float[rows * rank];
                for (int i = 0; i < rows; i++)
                for (int r = 0; r < rank; r++)
                    b[i * rank + r] = u[i * k + r] * s[r];
                if (options.SvdClamp is { } q)
                {
                    float high = Quantile([.. b, .. a], q);
                    for (int j = 0; j < a.Length; j++)
                        a[j] = Math.Clamp(a[j], -high, high);
                    for (int j = 0; j < b.Length; j++)
                        b[j] = Math.Clamp(b[j], -high, high);
                }
                return (a, b, rows, cols, rank);
            }
        }
    }

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

    private static float[] Read(StoredTensor tensor)
    {
        var values = new float[tensor.Info.ElementCount];
        TensorConvert.ToFloat32(tensor.Bytes(0, checked((int)tensor.Info.ByteLength)), tensor.Info.DType, values);
        return values;
    }
}
