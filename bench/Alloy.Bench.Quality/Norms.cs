using Alloy.Runtime.Models;

namespace Alloy.Bench.Quality;

/// <summary>
/// How far each expert moved from the base, per kind of layer: ‖θ_expert − θ_base‖ / ‖θ_base‖ over the tensors of that
/// kind (Frobenius norms, summed in double), the number docs/quality.md sets beside the merge results.
/// </summary>
public static class Norms
{
    public static readonly string[] Kinds = ["embeddings", "attention q/k/v/o", "MLP", "norms", "head", "all"];

    public static string KindOf(string name) =>
        name.Contains("embed_tokens", StringComparison.Ordinal) ? "embeddings"
        : name.Contains("self_attn", StringComparison.Ordinal) ? "attention q/k/v/o"
        : name.Contains("mlp", StringComparison.Ordinal) ? "MLP"
        : name.Contains("norm", StringComparison.Ordinal) ? "norms"
        : name.Contains("lm_head", StringComparison.Ordinal) ? "head"
        : "other";

    /// <summary>
    /// Relative norm per kind (in <see cref="Kinds"/> order; NaN for a kind the model lacks, e.g. a tied head).
    /// </summary>
    public static double[] Relative(LlamaModel baseModel, LlamaModel expert)
    {
        var delta = new double[Kinds.Length];
        var size = new double[Kinds.Length];
        foreach (var p in baseModel.Parameters)
        {
            var e = expert.Parameters[p.Name].Data;
            double d = 0,
                b = 0;
            for (int j = 0; j < e.Length; j++)
            {
                double x = e[j] - (double)p.Data[j];
                d += x * x;
                b += (double)p.Data[j] * p.Data[j];
            }
            foreach (int k in new[] { Array.IndexOf(Kinds, KindOf(p.Name)), Kinds.Length - 1 })
            {
                if (k < 0)
                    continue;
                delta[k] += d;
                size[k] += b;
            }
        }
        return [.. delta.Zip(size, (d, b) => b > 0 ? Math.Sqrt(d / b) : double.NaN)];
    }

    /// <summary>The cosine between every two experts' task vectors θ_expert − θ_base (summed in double).</summary>
    public static double[][] Cosines(LlamaModel baseModel, IReadOnlyList<LlamaModel> experts)
    {
        int n = experts.Count;
        var dot = new double[n, n];
        foreach (var p in baseModel.Parameters)
        {
            var deltas = experts.Select(e => e.Parameters[p.Name].Data).ToList();
            for (int j = 0; j < p.Data.Length; j++)
            for (int a = 0; a < n; a++)
            {
                double da = deltas[a][j] - (double)p.Data[j];
                for (int b = a; b < n; b++)
                    dot[a, b] += da * (deltas[b][j] - (double)p.Data[j]);
            }
        }
        return
        [
            .. Enumerable
                .Range(0, n)
                .Select(a =>
                    Enumerable
                        .Range(0, n)
                        .Select(b => dot[Math.Min(a, b), Math.Max(a, b)] / Math.Sqrt(dot[a, a] * dot[b, b]))
                        .ToArray()
                ),
        ];
    }
}
