using Alloy.Tensors;

namespace Alloy.Adapters;

/// <summary>
/// LoRA-LEGO (Zhao et al., arXiv 2409.16167) for one module. Every adapter's rank i is a unit, the vector
/// [c·B_t[:, i]; sign·c·A_t[i, :]] with c = √|w_t·s_t| (its weight and scale split over both halves, the sign on A,
/// as PEFT's linear); the units of all adapters are clustered by k-means (k-means++ seeding from the seed and the
/// module, Lloyd's iterations until no unit moves) and each cluster's mean is one rank of the merged adapter. Then
/// B and A are each rescaled so that their Frobenius norm is the mean of the inputs' (c·B_t and c·A_t).
/// </summary>
internal static class LoraLego
{
    /// <summary>Lloyd's iterations stop here if units still move (they rarely need more than a few dozen).</summary>
    public const int MaxIterations = 300;

    public static (float[] A, float[] B, int Rank) Merge(
        string weight,
        IReadOnlyList<LoraFactors> inputs,
        int rows,
        int cols,
        AdapterMergeOptions options
    )
    {
        var units = new List<double[]>();
        double targetB = 0,
            targetA = 0;
        foreach (var f in inputs)
        {
            double root = Math.Sqrt(Math.Abs(f.Coefficient)),
                sign = f.Coefficient < 0 ? -1 : 1;
            double squaresB = 0,
                squaresA = 0;
            for (int i = 0; i < f.Rank; i++)
            {
                var unit = new double[rows + cols];
                for (int r = 0; r < rows; r++)
                {
                    unit[r] = root * f.B[r * f.Rank + i];
                    squaresB += unit[r] * unit[r];
                }
                for (int c = 0; c < cols; c++)
                {
                    unit[rows + c] = sign * root * f.A[i * cols + c];
                    squaresA += unit[rows + c] * unit[rows + c];
                }
                units.Add(unit);
            }
            targetB += Math.Sqrt(squaresB) / inputs.Count;
            targetA += Math.Sqrt(squaresA) / inputs.Count;
        }
        int k = options.SvdRank ?? inputs.Max(f => f.Rank);
        if (k < 1 || k > units.Count)
            throw new AlloyException(
                $"'{weight}': lora_lego's rank (--svd-rank) must be from 1 to the module's {units.Count} rank-1 "
                    + $"units (got {k})"
            );
        var (centroids, _) = KMeans(units, k, RandomStream.For(options.Seed, weight + "/lora_lego", 0));

        double mergedB = 0,
            mergedA = 0;
        foreach (var centroid in centroids)
        {
            for (int r = 0; r < rows; r++)
                mergedB += centroid[r] * centroid[r];
            for (int c = 0; c < cols; c++)
                mergedA += centroid[rows + c] * centroid[rows + c];
        }
        // Averaging units that differ shrinks the norm; the calibration restores the inputs' mean norm.
        double scaleB = mergedB > 0 ? targetB / Math.Sqrt(mergedB) : 0,
            scaleA = mergedA > 0 ? targetA / Math.Sqrt(mergedA) : 0;
        var b = new float[rows * k];
        var a = new float[k * cols];
        for (int j = 0; j < k; j++)
        {
            for (int r = 0; r < rows; r++)
                b[r * k + j] = (float)(scaleB * centroids[j][r]);
            for (int c = 0; c < cols; c++)
                a[j * cols + c] = (float)(scaleA * centroids[j][rows + c]);
        }
        return (a, b, k);
    }

    /// <summary>
    /// k-means of <paramref name="points"/> under the squared Euclidean distance: k-means++ seeding (the first
    /// centre uniform, each next drawn with probability proportional to its squared distance from the nearest centre
    /// chosen; draw j uses <paramref name="random"/> at index j), then Lloyd's iterations. A point goes to the
    /// nearest centre (the lowest index on ties); a cluster left empty takes the point farthest from its centre among
    /// clusters of two or more. Sequential, in a fixed order, so the result depends on nothing but the arguments.
    /// Returns each cluster's mean (a zero vector for a cluster that ends empty) and each point's cluster.
    /// </summary>
    internal static (double[][] Centroids, int[] Assignment) KMeans(
        IReadOnlyList<double[]> points,
        int k,
        RandomStream random
    )
    {
        int n = points.Count,
            dim = points[0].Length;
        var centres = new double[k][];
        var chosen = new bool[n];
        var nearest = new double[n];
        Array.Fill(nearest, double.PositiveInfinity);
        for (int c = 0; c < k; c++)
        {
            int pick;
            double total = 0;
            for (int i = 0; i < n; i++)
                total += chosen[i] ? 0 : nearest[i];
            if (c == 0)
                pick = Math.Min(n - 1, (int)(Unit(random, 0) * n));
            else if (!(total > 0))
                pick = Array.IndexOf(chosen, false); // every point sits on a centre: take the first unchosen
            else
            {
                double target = Unit(random, c) * total,
                    cumulative = 0;
                pick = -1;
                for (int i = 0; i < n && pick < 0; i++)
                {
                    if (chosen[i] || nearest[i] == 0)
                        continue;
                    cumulative += nearest[i];
                    if (cumulative > target)
                        pick = i;
                }
                if (pick < 0) // rounding ran past the end: the last point with a positive distance
                    pick = Enumerable.Range(0, n).Last(i => !chosen[i] && nearest[i] > 0);
            }
            chosen[pick] = true;
            centres[c] = (double[])points[pick].Clone();
            for (int i = 0; i < n; i++)
                nearest[i] = Math.Min(nearest[i], Distance(points[i], centres[c]));
        }

        var assignment = new int[n];
        Assign(points, centres, assignment);
        for (int iteration = 0; iteration < MaxIterations; iteration++)
        {
            Means(points, assignment, centres, dim);
            var counts = new int[k];
            foreach (int c in assignment)
                counts[c]++;
            for (int c = 0; c < k; c++)
            {
                if (counts[c] > 0)
                    continue;
                int far = -1;
                double farthest = -1;
                for (int i = 0; i < n; i++)
                {
                    double d = Distance(points[i], centres[assignment[i]]);
                    if (counts[assignment[i]] > 1 && d > farthest)
                        (far, farthest) = (i, d);
                }
                if (far < 0)
                    break;
                counts[assignment[far]]--;
                counts[c]++;
                assignment[far] = c;
                centres[c] = (double[])points[far].Clone();
            }
            if (!Assign(points, centres, assignment))
                break;
        }
        Means(points, assignment, centres, dim);
        return (centres, assignment);
    }

    /// <summary>Each point to its nearest centre; true when any point changed cluster.</summary>
    private static bool Assign(IReadOnlyList<double[]> points, double[][] centres, int[] assignment)
    {
        bool moved = false;
        for (int i = 0; i < points.Count; i++)
        {
            int best = 0;
            double bestDistance = Distance(points[i], centres[0]);
            for (int c = 1; c < centres.Length; c++)
            {
                double d = Distance(points[i], centres[c]);
                if (d < bestDistance)
                    (best, bestDistance) = (c, d);
            }
            moved |= assignment[i] != best;
            assignment[i] = best;
        }
        return moved;
    }

    private static void Means(IReadOnlyList<double[]> points, int[] assignment, double[][] centres, int dim)
    {
        var counts = new int[centres.Length];
        foreach (var centre in centres)
            Array.Clear(centre);
        for (int i = 0; i < points.Count; i++)
        {
            counts[assignment[i]]++;
            var centre = centres[assignment[i]];
            for (int d = 0; d < dim; d++)
                centre[d] += points[i][d];
        }
        for (int c = 0; c < centres.Length; c++)
        for (int d = 0; d < dim && counts[c] > 0; d++)
            centres[c][d] /= counts[c];
    }

    private static double Distance(double[] x, double[] y)
    {
        double sum = 0;
        for (int d = 0; d < x.Length; d++)
            sum += (x[d] - y[d]) * (x[d] - y[d]);
        return sum;
    }

    /// <summary>A uniform draw in [0, 1) with 53 bits.</summary>
    private static double Unit(RandomStream random, long index) => (random.Bits(index) >> 11) * (1.0 / (1UL << 53));
}
