using Alloy.LinearAlgebra;

namespace Alloy.Alignment;

/// <summary>
/// Pearson correlations between n features of one model and n features of another over the same samples (tokens),
/// accumulated batch by batch: sums in double, each batch's cross products by one GEMM.
/// </summary>
public sealed class CrossCorrelation(int features)
{
    private readonly double[] _sumX = new double[features],
        _sumY = new double[features],
        _squaresX = new double[features],
        _squaresY = new double[features];
    private readonly double[,] _products = new double[features, features];
    private float[] _batch = [];

    public int Features => features;

    public long Samples { get; private set; }

    /// <summary>Adds <paramref name="rows"/> samples: row-major rows × n matrices of both models' features.</summary>
    public void Add(ReadOnlySpan<float> x, ReadOnlySpan<float> y, int rows)
    {
        int n = features;
        if (_batch.Length < n * n)
            _batch = new float[n * n];
        DenseBackend.Current.Gemm(true, false, n, n, rows, 1, x, n, y, n, 0, _batch, n);
        for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            _products[i, j] += _batch[i * n + j];
        for (int r = 0; r < rows; r++)
        for (int i = 0; i < n; i++)
        {
            double a = x[r * n + i],
                b = y[r * n + i];
            _sumX[i] += a;
            _squaresX[i] += a * a;
            _sumY[i] += b;
            _squaresY[i] += b * b;
        }
        Samples += rows;
    }

    /// <summary>corr[i, j] between feature i of the first model and j of the second; 0 where one is constant.</summary>
    public double[,] Result()
    {
        int n = features;
        double count = Math.Max(1, Samples);
        var result = new double[n, n];
        for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
        {
            double meanX = _sumX[i] / count,
                meanY = _sumY[j] / count;
            double covariance = _products[i, j] / count - meanX * meanY,
                varianceX = _squaresX[i] / count - meanX * meanX,
                varianceY = _squaresY[j] / count - meanY * meanY;
            result[i, j] = varianceX > 0 && varianceY > 0 ? covariance / Math.Sqrt(varianceX * varianceY) : 0;
        }
        return result;
    }
}

/// <summary>
/// Correlations of two models' activations on the same data, feature by feature: the residual stream (every block's
/// input and the last block's output, pooled), each layer's MLP intermediate silu(gate)·up, and each layer's attention
/// context (heads·head_dim features, before o_proj).
/// </summary>
public sealed record ActivationCorrelations(
    double[,] Residual,
    IReadOnlyList<double[,]> Mlp,
    IReadOnlyList<double[,]> Context
);

/// <summary>
/// Git Re-Basin's activation matching: each permutation solved once, independently, as the linear assignment that
/// maximises the summed correlation of the features it pairs. A head is compared with a head through the sum of the
/// correlations of their dimensions in order (a head has no inner symmetry), and heads are paired under grouped-query
/// sharing by <see cref="HeadAssignment"/>.
/// </summary>
public static class ActivationMatching
{
    public static Dictionary<string, int[]> Match(PermutationSpec spec, ActivationCorrelations c)
    {
        var perms = spec.Identity();
        foreach (var entry in spec.Permutations)
        {
            switch (entry.Kind)
            {
                case PermutationKind.Residual:
                    perms[entry.Name] = LinearAssignment.Solve(c.Residual, maximize: true);
                    break;
                case PermutationKind.Mlp:
                    perms[entry.Name] = LinearAssignment.Solve(c.Mlp[entry.Layer], maximize: true);
                    break;
                case PermutationKind.KeyValueHeads:
                    int k = spec.Shape.KeyValueHeads,
                        g = spec.Shape.GroupSize;
                    var (outer, query, _) = HeadAssignment.Solve(
                        new double[k, k],
                        HeadCorrelation(spec.Shape, c.Context[entry.Layer]),
                        g
                    );
                    perms[entry.Name] = outer;
                    if (g > 1)
                        for (int a = 0; a < k; a++)
                            perms[$"model.layers.{entry.Layer}.self_attn.query_heads.{a}"] = query[a];
                    break;
            }
        }
        return perms;
    }

    /// <summary>Σ over d of corr(reference head i dimension d, model head j dimension d), heads × heads.</summary>
    public static double[,] HeadCorrelation(DecoderShape shape, double[,] context)
    {
        int h = shape.Heads,
            hd = shape.HeadDim;
        var heads = new double[h, h];
        for (int i = 0; i < h; i++)
        for (int j = 0; j < h; j++)
        for (int d = 0; d < hd; d++)
            heads[i, j] += context[i * hd + d, j * hd + d];
        return heads;
    }

    /// <summary>
    /// For each kind of permutation, the mean correlation of the features it pairs, before (the identity) and after.
    /// </summary>
    public static IReadOnlyList<AlignmentGain> Gains(
        PermutationSpec spec,
        ActivationCorrelations c,
        IReadOnlyDictionary<string, int[]> perms
    )
    {
        var s = spec.Shape;
        double Mean(double[,] corr, Func<int, int> pair)
        {
            int n = corr.GetLength(0);
            return Enumerable.Range(0, n).Average(i => corr[i, pair(i)]);
        }
        int g = s.GroupSize;
        // Query head i = (group a, place j) of the aligned model is head (kv[a], query[a][j]) of the model.
        int Head(int layer, int i)
        {
            int a = i / g,
                j = i % g;
            int b = perms[$"model.layers.{layer}.self_attn.kv_heads"][a];
            return b * g + (g > 1 ? perms[$"model.layers.{layer}.self_attn.query_heads.{a}"][j] : 0);
        }
        var layers = Enumerable.Range(0, s.Layers).ToList();
        return
        [
            new(
                PermutationKind.Residual,
                s.Layers + 1,
                Mean(c.Residual, i => i),
                Mean(c.Residual, i => perms["residual"][i])
            ),
            new(
                PermutationKind.Mlp,
                s.Layers,
                layers.Average(l => Mean(c.Mlp[l], i => i)),
                layers.Average(l => Mean(c.Mlp[l], i => perms[$"model.layers.{l}.mlp"][i]))
            ),
            new(
                PermutationKind.KeyValueHeads,
                s.Layers,
                layers.Average(l => Mean(c.Context[l], i => i)),
                layers.Average(l => Mean(c.Context[l], i => Head(l, i / s.HeadDim) * s.HeadDim + i % s.HeadDim))
            ),
        ];
    }
}
