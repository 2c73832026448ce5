namespace Alloy.Tests.Methods.Geometric;

/// <summary>
/// Plain double-precision statements of mergekit's geometric methods, written from the reference's description
/// (mergekit's definitions) and not from Alloy's code, so tests can compute expectations independently.
/// </summary>
public static class GeometricReference
{
    public static double[] ToDouble(float[] values) => values.Select(v => (double)v).ToArray();

    public static double Dot(double[] a, double[] b) => a.Zip(b, (x, y) => x * y).Sum();

    public static double Norm(double[] a) => Math.Sqrt(Dot(a, a));

    private static double[] Add(double[] a, double[] b) => a.Zip(b, (x, y) => x + y).ToArray();

    private static double[] Sub(double[] a, double[] b) => a.Zip(b, (x, y) => x - y).ToArray();

    private static double[] Mul(double[] a, double s) => a.Select(x => x * s).ToArray();

    private static double[] Lerp(double[] a, double[] b, double t) => Add(Mul(a, 1 - t), Mul(b, t));

    /// <summary>
    /// mergekit's slerp: whole-vector angle, lerp above |cos| 0.9995, coefficients on the raw vectors.
    /// </summary>
    public static double[] Slerp(double[] a, double[] b, double t)
    {
        double na = Norm(a),
            nb = Norm(b);
        var ua = na > 1e-8 ? Mul(a, 1 / na) : a;
        var ub = nb > 1e-8 ? Mul(b, 1 / nb) : b;
        double dot = Dot(ua, ub);
        if (Math.Abs(dot) > 0.9995)
            return Lerp(a, b, t);
        double theta = Math.Acos(dot);
        return Add(
            Mul(a, Math.Sin(theta - t * theta) / Math.Sin(theta)),
            Mul(b, Math.Sin(t * theta) / Math.Sin(theta))
        );
    }

    /// <summary>
    /// mergekit's nuslerp over a tensor of the given shape: one flat vector, vectors along the last axis, or (row_wise)
    /// along the first axis.
    /// </summary>
    public static double[] NuSlerp(double[] v0, double[] v1, double t, long[] shape, bool flatten, bool rowWise)
    {
        int n = v0.Length;
        var groups = new List<int[]>();
        if (flatten || shape.Length < 2)
            groups.Add(Enumerable.Range(0, n).ToArray());
        else if (!rowWise)
        {
            int length = (int)shape[^1];
            for (int r = 0; r < n / length; r++)
                groups.Add(Enumerable.Range(r * length, length).ToArray());
        }
        else
        {
            int rows = (int)shape[0],
                columns = n / rows;
            for (int j = 0; j < columns; j++)
                groups.Add(Enumerable.Range(0, rows).Select(i => i * columns + j).ToArray());
        }
        var result = new double[n];
        foreach (var group in groups)
        {
            var a = group.Select(i => v0[i]).ToArray();
            var b = group.Select(i => v1[i]).ToArray();
            var ua = Mul(a, 1 / Math.Max(Norm(a), 1e-7));
            var ub = Mul(b, 1 / Math.Max(Norm(b), 1e-7));
            double theta = Math.Acos(Math.Clamp(Dot(ua, ub), -1, 1));
            double sin = Math.Sin(theta);
            var r =
                Math.Abs(sin) < 1e-8
                    ? Lerp(a, b, t)
                    : Mul(Add(Mul(a, Math.Sin((1 - t) * theta)), Mul(b, Math.Sin(t * theta))), 1 / sin);
            for (int k = 0; k < group.Length; k++)
                result[group[k]] = r[k];
        }
        return result;
    }

    /// <summary>
    /// mergekit's multislerp, every step as written, the tangent projection and exponential map included.
    /// </summary>
    public static double[] MultiSlerp(
        IReadOnlyList<double[]> models,
        double[] weights,
        double[]? baseValues,
        bool normalize,
        double eps
    )
    {
        if (models.Count == 1)
            return models[0];
        var xs = models.Select(x => baseValues is null ? x : Sub(x, baseValues)).ToList();
        var w = normalize ? weights.Select(v => v / weights.Sum()).ToArray() : weights;
        var norms = xs.Select(Norm).ToArray();
        var units = xs.Select((x, i) => Mul(x, 1 / (norms[i] + eps))).ToList();
        var mean = new double[xs[0].Length];
        for (int i = 0; i < xs.Count; i++)
            mean = Add(mean, Mul(units[i], w[i]));
        double meanNorm = Norm(mean);
        double[] result;
        if (meanNorm < eps)
        {
            if (xs.Count != 2)
                throw new InvalidOperationException("antipodal");
            result = Add(Mul(xs[0], w[0]), Mul(xs[1], w[1]));
        }
        else
        {
            mean = Mul(mean, 1 / meanNorm);
            var tangent = new double[mean.Length];
            for (int i = 0; i < xs.Count; i++)
                tangent = Add(tangent, Mul(Sub(units[i], Mul(mean, Dot(units[i], mean))), w[i]));
            double r = Norm(tangent) + eps;
            result = Mul(
                Add(Mul(mean, Math.Cos(r)), Mul(tangent, Math.Sin(r) / r)),
                norms.Select((v, i) => v * w[i]).Sum()
            );
        }
        return baseValues is null ? result : Add(result, baseValues);
    }

    /// <summary>mergekit's karcher with weights αᵢ (mergekit itself always uses αᵢ = 1/N).</summary>
    public static double[] Karcher(IReadOnlyList<double[]> xs, double[] alphas, int maxIter, double tol)
    {
        if (xs.Count == 1)
            return xs[0];
        var norms = xs.Select(Norm).ToArray();
        var valid = Enumerable.Range(0, xs.Count).Where(i => norms[i] > tol).ToList();
        if (valid.Count == 0)
            return new double[xs[0].Length];
        double alphaSum = valid.Sum(i => alphas[i]);
        var units = valid.Select(i => Mul(xs[i], 1 / norms[i])).ToList();
        var a = valid.Select(i => alphas[i] / alphaSum).ToArray();
        var u = new double[xs[0].Length];
        for (int k = 0; k < units.Count; k++)
            u = Add(u, Mul(units[k], a[k]));
        u = Norm(u) < tol ? units[0] : Mul(u, 1 / Norm(u));
        for (int iteration = 0; iteration < maxIter; iteration++)
        {
            var tangent = new double[u.Length];
            for (int k = 0; k < units.Count; k++)
            {
                double cos = Math.Clamp(Dot(u, units[k]), -1, 1);
                double theta = Math.Acos(cos);
                if (theta < tol)
                    continue;
                tangent = Add(tangent, Mul(Sub(units[k], Mul(u, cos)), a[k] * theta / Math.Sin(theta)));
            }
            double step = Norm(tangent);
            if (step < tol)
                break;
            u = Add(Mul(u, Math.Cos(step)), Mul(tangent, Math.Sin(step) / step));
            if (Norm(u) > tol)
                u = Mul(u, 1 / Norm(u));
        }
        return Mul(u, alphas.Select((al, i) => al * norms[i]).Sum());
    }

    /// <summary>
    /// mergekit's model_stock (mean of pairwise cosines), per tensor or per row of <paramref name="rowLength"/>.
    /// </summary>
    public static double[] ModelStock(double[] baseValues, IReadOnlyList<double[]> models, int rowLength)
    {
        int n = models.Count;
        var result = new double[baseValues.Length];
        for (int start = 0; start < baseValues.Length; start += rowLength)
        {
            var b = baseValues[start..(start + rowLength)];
            var offsets = models.Select(m => Sub(m[start..(start + rowLength)], b)).ToList();
            var cosines = new List<double>();
            for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
                cosines.Add(
                    Math.Clamp(Dot(offsets[i], offsets[j]) / Math.Max(Norm(offsets[i]) * Norm(offsets[j]), 1e-6), -1, 1)
                );
            double cos = cosines.Average();
            double t = n * cos / (1 + (n - 1) * cos);
            for (int k = 0; k < rowLength; k++)
                result[start + k] = t * models.Average(m => m[start + k]) + (1 - t) * b[k];
        }
        return result;
    }

    public static double[] Nearswap(double[] a, double[] b, double t) =>
        a.Select(
                (x, i) =>
                {
                    double w = Math.Clamp(t / Math.Max(Math.Abs(x - b[i]), 1e-6), 0, 1);
                    return w * b[i] + (1 - w) * x;
                }
            )
            .ToArray();

    /// <summary>
    /// arcee_fusion with a full sort for the quantiles: the other model's value where |Δ|·KL(row) reaches
    /// Q(0.5) + 1.5·(Q(0.75) − Q(0.25)), the base's elsewhere.
    /// </summary>
    public static float[] ArceeFusion(float[] b, float[] x, int rowLength)
    {
        int n = b.Length;
        var kl = new double[n / rowLength];
        for (int r = 0; r < kl.Length; r++)
        {
            var p = Softmax(x.Skip(r * rowLength).Take(rowLength).ToArray());
            var q = Softmax(b.Skip(r * rowLength).Take(rowLength).ToArray());
            kl[r] = p.Zip(q, (pi, qi) => (pi + 1e-8) * Math.Log((pi + 1e-8) / (qi + 1e-8))).Sum();
        }
        var importance = Enumerable
            .Range(0, n)
            .Select(i => (float)(Math.Abs(x[i] - b[i]) * kl[i / rowLength]))
            .ToArray();
        var sorted = importance.Order().ToArray();
        float Q(double q) => sorted[(long)Math.Floor(q * (n - 1))];
        float threshold = Q(0.5) + 1.5f * (Q(0.75) - Q(0.25));
        return Enumerable.Range(0, n).Select(i => importance[i] >= threshold ? x[i] : b[i]).ToArray();
    }

    private static double[] Softmax(float[] row)
    {
        double max = row.Max();
        var e = row.Select(v => Math.Exp(v - max)).ToArray();
        double sum = e.Sum();
        return e.Select(v => v / sum).ToArray();
    }
}
