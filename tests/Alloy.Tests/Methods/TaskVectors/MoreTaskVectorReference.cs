namespace Alloy.Tests.Methods.TaskVectors;

/// <summary>
/// Plain double-precision references for sce, ram, ramplus_tl, magmax and expo, written from mergekit's rules and the
/// papers' formulas (SCE, RAM, MagMax, ExPO) without the engine's primitives: whole arrays, sorts, no blocking.
/// </summary>
public static class MoreTaskVectorReference
{
    private static double[][] Tasks(float[] b, IReadOnlyList<float[]> models) =>
        models.Select(m => m.Select((v, j) => (double)(v - b[j])).ToArray()).ToArray();

    public static double[] Sce(float[] b, IReadOnlyList<float[]> models, double selectTopK = 1)
    {
        int n = b.Length;
        if (models.Count == 0 || selectTopK <= 0)
            return b.Select(v => (double)v).ToArray();
        var t = Tasks(b, models);
        if (selectTopK < 1)
        {
            var variance = new double[n];
            for (int j = 0; j < n; j++)
            {
                double mean = t.Average(x => x[j]);
                variance[j] = t.Average(x => (x[j] - mean) * (x[j] - mean));
            }
            int k = (int)(variance.Count(v => v != 0) * selectTopK);
            // Stable descending sort: equal variances keep position order, lower index first.
            var keep = Enumerable.Range(0, n).OrderByDescending(j => variance[j]).Take(k).ToHashSet();
            foreach (var x in t)
                for (int j = 0; j < n; j++)
                    if (!keep.Contains(j))
                        x[j] = 0;
        }
        var w = t.Select(x => x.Sum(v => v * v) / n).ToArray();
        double total = w.Sum();
        w = w.Select(v => Math.Abs(total) < 1e-6 ? 1.0 / w.Length : v / total).ToArray();
        var result = new double[n];
        for (int j = 0; j < n; j++)
        {
            double sign = t.Sum(x => x[j]) >= 0 ? 1 : -1;
            double num = 0,
                den = 0;
            for (int i = 0; i < t.Length; i++)
                if (Math.Sign(t[i][j]) == (int)sign)
                {
                    num += w[i] * t[i][j];
                    den += w[i];
                }
            result[j] = b[j] + num / Math.Max(den, 1e-6);
        }
        return result;
    }

    /// <summary>RAM, or RAM+ tensor-local when <paramref name="plus"/> is given as (r, alpha).</summary>
    public static double[] Ram(
        float[] b,
        IReadOnlyList<float[]> models,
        double epsilon = 1e-5,
        (double R, double Alpha)? plus = null
    )
    {
        int n = b.Length;
        var t = Tasks(b, models);
        var active = t.Select(x => x.Select(v => Math.Abs(v) > (float)epsilon).ToArray()).ToArray();
        var count = Enumerable.Range(0, n).Select(j => active.Count(a => a[j])).ToArray();
        var lambda = new double[t.Length];
        for (int i = 0; i < t.Length; i++)
        {
            lambda[i] = 1;
            if (plus is not { } p)
                continue;
            double shared = Enumerable.Range(0, n).Count(j => active[i][j] && count[j] > 1);
            double unique = Enumerable.Range(0, n).Count(j => active[i][j] && count[j] == 1);
            lambda[i] = 1 + p.R * Math.Min(Math.Max(shared / Math.Max(unique, epsilon), 0), p.Alpha);
        }
        var result = new double[n];
        for (int j = 0; j < n; j++)
        {
            result[j] = b[j];
            for (int i = 0; i < t.Length; i++)
                if (active[i][j])
                    result[j] += count[j] == 1 ? lambda[i] * t[i][j] : t[i][j] / count[j];
        }
        return result;
    }

    public static double[] MagMax(float[] b, IReadOnlyList<float[]> models, double scale = 0.5)
    {
        var t = Tasks(b, models);
        return b.Select(
                (v, j) =>
                {
                    // The last model among those of the largest magnitude.
                    double largest = t.Max(x => Math.Abs(x[j]));
                    return v + scale * t.Last(x => Math.Abs(x[j]) == largest)[j];
                }
            )
            .ToArray();
    }

    public static double[] Expo(float[] b, IReadOnlyList<float[]> models, double alpha = 0.1) =>
        b.Select(
                (v, j) =>
                {
                    double ft = models.Average(m => (double)m[j]);
                    return ft + alpha * (ft - v);
                }
            )
            .ToArray();
}

/// <summary>
/// PCB-Merging as pcb-merging.py writes it, with full sorts, in double (0/0 cases as Alloy documents them).
/// </summary>
public static class PcbReference
{
    private static double Sorted(IEnumerable<double> row, int index)
    {
        var s = row.Order().ToArray();
        return s[Math.Clamp(index, 0, s.Length - 1)];
    }

    public static double[] Merge(
        float[] b,
        IReadOnlyList<float[]> models,
        double[] lambdas,
        double ratio = 0.1,
        double clampRatio = 0.0001
    )
    {
        int n = b.Length,
            tasks = models.Count;
        var tau = models.Select(m => m.Select((v, j) => (double)(v - b[j])).ToArray()).ToArray();
        var sum = Enumerable.Range(0, n).Select(j => tau.Sum(t => t[j])).ToArray();
        var clamped = new double[tasks][];
        var scale = new double[tasks][];
        for (int t = 0; t < tasks; t++)
        {
            var abs = tau[t].Select(Math.Abs).ToArray();
            double lo = Sorted(abs, (int)(n * clampRatio)),
                hi = Sorted(abs, (int)(n * (1 - clampRatio) - 1));
            var a = abs.Select(v => Math.Min(Math.Max(v, lo), hi)).ToArray();
            clamped[t] = a.Select((v, j) => Math.Sign(tau[t][j]) * v).ToArray();
            double min = a.Min(),
                max = a.Max();
            var score = a.Select(
                    (v, j) =>
                    {
                        double self = max > min ? (v - min) / (max - min) : 0;
                        return Math.Exp(tasks * self * self) * Math.Tanh(tau[t][j] * sum[j]);
                    }
                )
                .ToArray();
            double threshold = Sorted(score, (int)(n * (1 - ratio))),
                top = score.Max();
            scale[t] = score
                .Select(v => top > threshold ? (Math.Max(v, threshold) - threshold) / (top - threshold) : 1)
                .ToArray();
        }
        return Enumerable
            .Range(0, n)
            .Select(j =>
            {
                double num = 0,
                    den = 0;
                for (int t = 0; t < tasks; t++)
                {
                    num += lambdas[t] * scale[t][j] * clamped[t][j];
                    den += scale[t][j];
                }
                return b[j] + num / Math.Max(den, 1e-12);
            })
            .ToArray();
    }
}

/// <summary>
/// EMR-Merging's unified model, masks and rescalers from the paper's formulas and its reference code's sums of
/// per-tensor means, in double.
/// </summary>
public static class EmrReference
{
    public static double[] Unified(float[] b, IReadOnlyList<float[]> models) =>
        b.Select(
                (v, j) =>
                {
                    var tau = models.Select(m => (double)(m[j] - v)).ToArray();
                    int gamma = tau.Sum() > 0 ? 1 : -1;
                    return v + gamma * tau.Where(t => t * gamma > 0).Select(Math.Abs).DefaultIfEmpty(0).Max();
                }
            )
            .ToArray();

    /// <summary>Task <paramref name="task"/>'s mask [τₜγ &gt; 0].</summary>
    public static bool[] Mask(float[] b, IReadOnlyList<float[]> models, int task) =>
        b.Select(
                (v, j) =>
                {
                    var tau = models.Select(m => (double)(m[j] - v)).ToArray();
                    return tau[task] * (tau.Sum() > 0 ? 1 : -1) > 0;
                }
            )
            .ToArray();

    /// <summary>
    /// Every task's rescaler over several tensors (base, fine-tunes): Σ mean|τₜ| / Σ mean|Mₜ ⊙ τ_uni|.
    /// </summary>
    public static double[] Rescalers(IReadOnlyList<(float[] Base, IReadOnlyList<float[]> Models)> tensors) =>
        Enumerable
            .Range(0, tensors[0].Models.Count)
            .Select(t =>
            {
                double taskMeans = 0,
                    maskedMeans = 0;
                foreach (var (b, models) in tensors)
                {
                    var unified = Unified(b, models);
                    var mask = Mask(b, models, t);
                    taskMeans += b.Select((v, j) => Math.Abs((double)(models[t][j] - v))).Average();
                    maskedMeans += b.Select((v, j) => mask[j] ? Math.Abs(unified[j] - v) : 0).Average();
                }
                return taskMeans / maskedMeans;
            })
            .ToArray();
}
