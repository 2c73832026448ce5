using static Alloy.Tests.Support.ReferenceLinearAlgebra;

namespace Alloy.Tests.Methods;

/// <summary>
/// The SVD merges written out directly from their papers' and reference implementations' definitions, in double, on
/// task vectors τₜ (double[rows, cols]); each returns the merged task vector to add to the base.
/// </summary>
public static class SvdMergeReference
{
    public static double[,] Sum(IReadOnlyList<double[,]> tasks) =>
        tasks.Skip(1).Aggregate(tasks[0], (a, b) => Add(a, b));

    public static double[,] Mean(IReadOnlyList<double[,]> tasks) => Scale(Sum(tasks), 1.0 / tasks.Count);

    /// <summary>TSV-M: top ⌊r/T⌋ triplets per task, concatenated, U and V replaced by their polar factors.</summary>
    public static double[,] Tsv(IReadOnlyList<double[,]> tasks)
    {
        int m = tasks[0].GetLength(0),
            n = tasks[0].GetLength(1),
            r = Math.Min(m, n),
            keep = r / tasks.Count,
            total = keep * tasks.Count;
        if (keep == 0)
            return new double[m, n];
        var uCat = new double[m, total];
        var sCat = new double[total];
        var vtCat = new double[total, n];
        for (int t = 0; t < tasks.Count; t++)
        {
            var (u, s, vt) = Svd(tasks[t]);
            for (int q = 0; q < keep; q++)
            {
                for (int i = 0; i < m; i++)
                    uCat[i, t * keep + q] = u[i, q];
                for (int j = 0; j < n; j++)
                    vtCat[t * keep + q, j] = vt[q, j];
                sCat[t * keep + q] = s[q];
            }
        }
        return Reconstruct(Polar(uCat), sCat, Polar(vtCat), total);
    }

    /// <summary>Iso-C: the sum of the task vectors with its spectrum flattened to the mean singular value.</summary>
    public static double[,] IsoC(IReadOnlyList<double[,]> tasks, double scaling = 1)
    {
        var (u, s, vt) = Svd(Sum(tasks));
        return Scale(Multiply(u, vt), scaling * s.Average());
    }

    /// <summary>Iso-CTS with the reference's split of the r directions into common and per-task blocks.</summary>
    public static double[,] IsoCts(IReadOnlyList<double[,]> tasks, double fraction, double scaling = 1)
    {
        int m = tasks[0].GetLength(0),
            n = tasks[0].GetLength(1),
            r = Math.Min(m, n),
            count = tasks.Count;
        int common = (int)(r * fraction);
        int perTask = (int)Math.Round((r - common) / (double)count, MidpointRounding.ToEven);
        common = r - perTask * count;
        var (u, s, vt) = Svd(Sum(tasks));
        var uc = Columns(u, 0, common);
        var uComb = new double[m, r];
        var sComb = new double[r];
        var vtComb = new double[r, n];
        void Place(double[,] bu, double[] bs, double[,] bvt, int count2, int at)
        {
            for (int q = 0; q < count2; q++)
            {
                for (int i = 0; i < m; i++)
                    uComb[i, at + q] = bu[i, q];
                for (int j = 0; j < n; j++)
                    vtComb[at + q, j] = bvt[q, j];
                sComb[at + q] = bs[q];
            }
        }
        Place(u, s, vt, common, 0);
        for (int t = 0; t < count; t++)
        {
            var projected = Add(tasks[t], Multiply(uc, Multiply(Transpose(uc), tasks[t])), -1);
            var (tu, ts, tvt) = Svd(projected);
            Place(tu, ts, tvt, perTask, common + t * perTask);
        }
        return Scale(Multiply(Polar(uComb), Polar(vtComb)), scaling * sComb.Average());
    }

    /// <summary>
    /// STAR: each task keeps the fewest top singular values reaching eta % of its nuclear norm, rescaled; then the
    /// mean.
    /// </summary>
    public static double[,] Star(IReadOnlyList<double[,]> tasks, double eta)
    {
        var result = new double[tasks[0].GetLength(0), tasks[0].GetLength(1)];
        foreach (var task in tasks)
        {
            var (u, s, vt) = Svd(task);
            double total = s.Sum();
            if (total == 0)
                continue;
            int rank = 0;
            double kept = 0;
            while (kept < total * eta / 100)
                kept += s[rank++];
            result = Add(result, Reconstruct(u, s, vt, rank, total / kept / tasks.Count));
        }
        return result;
    }

    /// <summary>CART for a layer matrix: mean τ + λ·Σₜ LowRank_k(τₜ − mean τ), k = max(1, ⌊ratio·r⌋).</summary>
    public static double[,] Cart(IReadOnlyList<double[,]> tasks, double ratio, double prior)
    {
        var mean = Mean(tasks);
        int r = Math.Min(mean.GetLength(0), mean.GetLength(1));
        int rank =
            ratio == 0 ? 0
            : ratio == 1 ? r
            : Math.Max(1, (int)(ratio * r));
        var result = mean;
        foreach (var task in tasks)
        {
            var (u, s, vt) = Svd(Add(task, mean, -1));
            result = Add(result, Reconstruct(u, s, vt, rank, prior));
        }
        return result;
    }
}
