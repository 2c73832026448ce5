using Alloy.Methods;
using Alloy.Tensors;

namespace Alloy.Tests.Methods.TaskVectors;

/// <summary>How the reference thins a task vector.</summary>
public enum RefSparsify
{
    None,
    Magnitude,
    Random,
    Outliers,
    Della,
}

/// <summary>One method of the family, as the reference computes it (mergekit's rules, plus Alloy's options).</summary>
public sealed record RefMethod(RefSparsify Sparsify, bool Consensus, bool Normalize, bool Rescale, bool Tall = false)
{
    public double Lambda { get; init; } = 1;
    public double Alpha { get; init; } = 1;
    public double K { get; init; } = 1;
    public bool Unweighted { get; init; }
    public bool ByCount { get; init; }
    public bool NormalizeByCount { get; init; }
    public double LinesAlpha { get; init; } = 1;
    public double LinesBeta { get; init; }

    public static RefMethod TaskArithmetic => new(RefSparsify.None, false, false, false);
    public static RefMethod Ties => new(RefSparsify.Magnitude, true, true, false);
    public static RefMethod DareTies => new(RefSparsify.Random, true, false, true);
    public static RefMethod DareLinear => new(RefSparsify.Random, false, false, true);
    public static RefMethod Breadcrumbs => new(RefSparsify.Outliers, false, false, false);
    public static RefMethod BreadcrumbsTies => new(RefSparsify.Outliers, true, false, false);
    public static RefMethod Della => new(RefSparsify.Della, true, true, true);
    public static RefMethod DellaLinear => new(RefSparsify.Della, false, false, true);
    public static RefMethod ConsensusTa => new(RefSparsify.None, false, false, false, Tall: true);
    public static RefMethod ConsensusTies => new(RefSparsify.Magnitude, true, true, false, Tall: true);
}

/// <summary>
/// A fine-tuned input of one tensor with its per-model parameters; ModelIndex keys its random stream.
/// </summary>
public sealed record RefModel(float[] Values, double Weight, int ModelIndex)
{
    public double Density { get; init; } = 1;
    public double Gamma { get; init; } = 0.01;
    public double Epsilon { get; init; } = 0.15;
    public double TallLambda { get; init; } = 1;

    /// <summary>A keep mask decided elsewhere (a model-wide trim), replacing the per-tensor magnitude trim.</summary>
    public bool[]? Keep { get; init; }
}

/// <summary>
/// Straightforward re-statements of the task-vector rules for tests: sorting instead of selection, double precision,
/// one loop per rule. Written from the specification (mergekit's rules and the papers' formulas: TIES, DARE,
/// Breadcrumbs, DELLA, TALL masks, LiNeS), not from the engine, so the two can disagree.
/// </summary>
public static class TaskVectorReference
{
    /// <summary>The task vector as the engine forms it: the float32 difference.</summary>
    public static float[] Delta(float[] x, float[] b) => x.Select((v, j) => v - b[j]).ToArray();

    /// <summary>Indices by magnitude, largest first; equal magnitudes: lower index first.</summary>
    public static int[] Descending(float[] d) =>
        Enumerable.Range(0, d.Length).OrderByDescending(j => Math.Abs(d[j])).ThenBy(j => j).ToArray();

    public static bool[] TopK(float[] d, long k)
    {
        var keep = new bool[d.Length];
        foreach (int j in Descending(d).Take((int)Math.Max(0, Math.Min(k, d.Length))))
            keep[j] = true;
        return keep;
    }

    /// <summary>
    /// Breadcrumbs: ascending ranks [n_bot, n − n_top), mergekit's counts, without its n_top = 0 bug.
    /// </summary>
    public static bool[] Breadcrumbs(float[] d, double density, double gamma)
    {
        int n = d.Length;
        long target = (long)(density * n),
            top = (long)(gamma * n),
            bottom = n - target - top;
        if (bottom < 0)
        {
            top += bottom;
            bottom = 0;
        }
        var ascending = Descending(d).Reverse().ToArray();
        var keep = new bool[n];
        for (long r = bottom; r < n - top; r++)
            keep[ascending[r]] = true;
        return keep;
    }

    /// <summary>DELLA keep probabilities along dimension 1, by ascending magnitude rank within each fiber.</summary>
    public static double[] DellaProbabilities(float[] d, long[] shape, double density, double epsilon)
    {
        long n = shape.Length == 1 ? shape[0] : shape[1];
        long inner = shape.Skip(2).Aggregate(1L, (a, b) => a * b);
        long outer = d.Length / (n * inner);
        var p = new double[d.Length];
        for (long o = 0; o < outer; o++)
        for (long c = 0; c < inner; c++)
        {
            var fiber = Enumerable.Range(0, (int)n).Select(j => (int)(o * n * inner + j * inner + c)).ToArray();
            // Ascending magnitude; equal magnitudes: the higher index is smaller.
            var ascending = fiber.OrderBy(j => Math.Abs(d[j])).ThenByDescending(j => j).ToArray();
            for (int r = 0; r < n; r++)
                p[ascending[r]] = n == 1 ? density : density - epsilon + 2 * epsilon * r / (n - 1);
        }
        return p;
    }

    /// <summary>Keeps entry j when the (seed, tensor, model) stream's uniform at j is below its probability.</summary>
    public static bool[] Bernoulli(ulong seed, string tensor, int modelIndex, int n, Func<int, double> probability)
    {
        var random = RandomStream.For(seed, tensor, modelIndex);
        return Enumerable.Range(0, n).Select(j => random.Uniform(j) < probability(j)).ToArray();
    }

    public static double[] Masked(float[] d, bool[] keep, bool rescale)
    {
        var masked = d.Select((v, j) => keep[j] ? (double)v : 0).ToArray();
        double before = d.Sum(v => Math.Abs((double)v)),
            after = masked.Sum(Math.Abs);
        return rescale && before >= 1e-7 && after >= 1e-7 ? masked.Select(v => v * before / after).ToArray() : masked;
    }

    /// <summary>The sparsified task vector of one model (mergekit: unchanged at density ≥ 1).</summary>
    public static double[] Sparsified(
        RefMethod method,
        RefModel model,
        float[] b,
        long[] shape,
        string tensor,
        ulong seed
    )
    {
        var d = Delta(model.Values, b);
        if (method.Sparsify == RefSparsify.None || model.Density >= 1)
            return d.Select(v => (double)v).ToArray();
        bool[] keep;
        switch (method.Sparsify)
        {
            case RefSparsify.Magnitude:
                keep = model.Keep ?? TopK(d, (long)(model.Density * d.Length));
                break;
            case RefSparsify.Random:
                keep = Bernoulli(seed, tensor, model.ModelIndex, d.Length, _ => model.Density);
                break;
            case RefSparsify.Outliers:
                keep = Breadcrumbs(d, model.Density, model.Gamma);
                break;
            default:
                var p = DellaProbabilities(d, shape, model.Density, model.Epsilon);
                keep =
                    model.Density <= 0
                        ? new bool[d.Length]
                        : Bernoulli(seed, tensor, model.ModelIndex, d.Length, j => p[j]);
                break;
        }
        return Masked(d, keep, method.Rescale);
    }

    /// <summary>The merged tensor, base + scale·τ_merged.</summary>
    public static double[] Merge(
        RefMethod method,
        float[] b,
        IReadOnlyList<RefModel> models,
        long[]? shape = null,
        string tensor = "t.weight",
        ulong seed = 0,
        TensorPosition? position = null
    )
    {
        int n = b.Length;
        shape ??= [n];
        var sparse = models.Select(m => Sparsified(method, m, b, shape, tensor, seed)).ToList();
        var w = models.Select(m => m.Weight).ToArray();
        var merged = new double[n];
        for (int j = 0; j < n; j++)
        {
            if (!method.Consensus)
            {
                double sum = 0;
                for (int i = 0; i < models.Count; i++)
                    sum += w[i] * sparse[i][j];
                double den = method.Normalize && Math.Abs(w.Sum()) >= 1e-8 ? w.Sum() : 1;
                merged[j] = sum / den;
                continue;
            }
            var votes = Enumerable
                .Range(0, models.Count)
                .Select(i => (method.Unweighted ? 1 : w[i]) * sparse[i][j])
                .ToArray();
            double election = method.ByCount ? votes.Sum(v => (double)Math.Sign(v)) : votes.Sum();
            int sign = election >= 0 ? 1 : -1;
            double num = 0,
                weightSum = 0;
            int count = 0;
            for (int i = 0; i < models.Count; i++)
            {
                if (Math.Sign(votes[i]) != sign)
                    continue;
                num += w[i] * sparse[i][j];
                weightSum += w[i];
                count++;
            }
            double divisor =
                method.NormalizeByCount ? count
                : method.Normalize ? weightSum
                : 1;
            merged[j] = divisor == 0 ? num : num / divisor;
        }
        if (method.Tall)
        {
            var deltas = models.Select(m => Delta(m.Values, b)).ToList();
            for (int j = 0; j < n; j++)
            {
                float mtl = (float)merged[j];
                int agree = Enumerable
                    .Range(0, models.Count)
                    .Count(i => Math.Abs(deltas[i][j]) > models[i].TallLambda * Math.Abs(mtl - deltas[i][j]));
                if (agree < method.K)
                    merged[j] = 0;
            }
        }
        double scale =
            (method.Tall ? method.Alpha : method.Lambda) * Lines(position, method.LinesAlpha, method.LinesBeta);
        return Enumerable.Range(0, n).Select(j => b[j] + scale * merged[j]).ToArray();
    }

    /// <summary>
    /// LiNeS: α + β·ℓ/(L − 1) in layer ℓ of L (a single layer counts as the last), α outside the layers.
    /// </summary>
    public static double Lines(TensorPosition? position, double alpha, double beta) =>
        position is { Layer: { } layer, LayerCount: > 0 } p
            ? alpha + beta * (p.LayerCount > 1 ? layer / (double)(p.LayerCount - 1) : 1)
            : alpha;
}
