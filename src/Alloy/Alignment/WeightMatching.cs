using Alloy.LinearAlgebra;

namespace Alloy.Alignment;

/// <summary>How much one kind of permutation brought the model closer to the reference.</summary>
/// <param name="Sites">The tensors (weight matching) or activation sites (activation matching) compared.</param>
/// <param name="Before">Cosine similarity of those tensors (or mean correlation of matched features) before.</param>
/// <param name="After">The same after alignment.</param>
public sealed record AlignmentGain(PermutationKind Kind, int Sites, double Before, double After);

/// <summary>
/// Git Re-Basin's weight matching (Ainsworth et al. 2023, algorithm 1): coordinate descent over the permutations in a
/// seeded random order; each step fixes every other permutation and solves for one exactly, as the linear assignment
/// maximising Σ over the (tensor, axis) pairs it acts on of ⟨reference unit i, model unit j⟩; it stops when a sweep
/// improves no step by more than 1e-12 (at most 100 sweeps). A layer's key/value heads and its query heads within
/// each group are one step (<see cref="HeadAssignment"/>), the joint optimum where Git Re-Basin would alternate.
/// </summary>
public static class WeightMatching
{
    public const int MaxSweeps = 100;
    private const double Tolerance = 1e-12;

    /// <summary>
    /// The permutations that, applied to <paramref name="model"/>, bring it closest to <paramref name="reference"/>,
    /// and the number of sweeps. <paramref name="progress"/> hears (sweep, steps done in it, steps per sweep).
    /// </summary>
    public static (Dictionary<string, int[]> Permutations, int Sweeps) Match(
        PermutationSpec spec,
        IReadOnlyDictionary<string, float[]> reference,
        IReadOnlyDictionary<string, float[]> model,
        ulong seed = 0,
        Action<int, int, int>? progress = null,
        CancellationToken cancellation = default
    )
    {
        var perms = spec.Identity();
        var steps = spec.Permutations.Where(e => e.Kind != PermutationKind.QueryHeads).ToList();
        var groups = spec.Permutations.Where(e => e.Kind == PermutationKind.QueryHeads).ToLookup(e => e.Layer);
        for (int sweep = 0; sweep < MaxSweeps; sweep++)
        {
            bool improved = false;
            var order = Tensors.RandomStream.For(seed, "weight_matching", sweep).Permutation(steps.Count);
            for (int n = 0; n < order.Length; n++)
            {
                cancellation.ThrowIfCancellationRequested();
                var entry = steps[order[n]];
                improved |=
                    entry.Kind == PermutationKind.KeyValueHeads
                        ? HeadStep(spec, reference, model, perms, entry, [.. groups[entry.Layer]])
                        : Step(spec, reference, model, perms, entry);
                progress?.Invoke(sweep, n + 1, order.Length);
            }
            if (!improved)
                return (perms, sweep + 1);
        }
        return (perms, MaxSweeps);
    }

    private static bool Step(
        PermutationSpec spec,
        IReadOnlyDictionary<string, float[]> reference,
        IReadOnlyDictionary<string, float[]> model,
        Dictionary<string, int[]> perms,
        PermutationEntry entry
    )
    {
        var cost = new double[entry.Size, entry.Size];
        foreach (var slice in entry.Slices)
            AddSimilarity(spec, reference, model, perms, e => e == entry, slice, entry.Size, cost);
        var current = perms[entry.Name];
        var best = LinearAssignment.Solve(cost, maximize: true);
        if (LinearAssignment.Total(cost, best) <= LinearAssignment.Total(cost, current) + Tolerance)
            return false;
        perms[entry.Name] = best;
        return true;
    }

    private static bool HeadStep(
        PermutationSpec spec,
        IReadOnlyDictionary<string, float[]> reference,
        IReadOnlyDictionary<string, float[]> model,
        Dictionary<string, int[]> perms,
        PermutationEntry keyValue,
        IReadOnlyList<PermutationEntry> groups
    )
    {
        int k = keyValue.Size,
            g = spec.Shape.GroupSize,
            hd = spec.Shape.HeadDim;
        bool Skip(PermutationEntry e) => e == keyValue || groups.Contains(e);
        // Tensors the query groups act on are compared head by head; the rest (k_proj, v_proj) key/value head by head.
        var grouped = groups.SelectMany(e => e.Slices.Select(s => s.Tensor)).ToHashSet(StringComparer.Ordinal);
        var kv = new double[k, k];
        var heads = new double[k * g, k * g];
        foreach (var slice in keyValue.Slices)
            if (grouped.Contains(slice.Tensor))
                AddSimilarity(spec, reference, model, perms, Skip, slice with { Block = hd }, k * g, heads);
            else
                AddSimilarity(spec, reference, model, perms, Skip, slice, k, kv);
        var currentQuery = Enumerable
            .Range(0, k)
            .Select(a => groups.Count == 0 ? [0] : perms[groups[a].Name])
            .ToArray();
        double current = HeadAssignment.Value(kv, heads, g, perms[keyValue.Name], currentQuery);
        var (outer, query, total) = HeadAssignment.Solve(kv, heads, g);
        if (total <= current + Tolerance)
            return false;
        perms[keyValue.Name] = outer;
        for (int a = 0; a < groups.Count; a++)
            perms[groups[a].Name] = query[a];
        return true;
    }

    /// <summary>
    /// cost[i, j] += ⟨reference unit i, model unit j⟩ over one slice, the model's tensor having every permutation but
    /// the skipped ones applied.
    /// </summary>
    private static void AddSimilarity(
        PermutationSpec spec,
        IReadOnlyDictionary<string, float[]> reference,
        IReadOnlyDictionary<string, float[]> model,
        Dictionary<string, int[]> perms,
        Func<PermutationEntry, bool> skip,
        AxisSlice slice,
        int n,
        double[,] cost
    )
    {
        var shape = spec.TensorShapes[slice.Tensor];
        var permuted = spec.ApplyTo(slice.Tensor, model[slice.Tensor], perms, skip);
        var a = PermutationSpec.Units(reference[slice.Tensor], shape, slice.Axis, slice.Offset, slice.Block, n);
        var b = PermutationSpec.Units(permuted, shape, slice.Axis, slice.Offset, slice.Block, n);
        AddProducts(a, b, n, cost);
    }

    /// <summary>cost += A·Bᵀ for two n-row matrices stored flat.</summary>
    internal static void AddProducts(float[] a, float[] b, int n, double[,] cost)
    {
        int length = a.Length / n;
        var product = new float[n * n];
        DenseBackend.Current.Gemm(false, true, n, n, length, 1, a, length, b, length, 0, product, n);
        for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            cost[i, j] += product[i * n + j];
    }

    /// <summary>
    /// For each kind of permutation, the cosine similarity between the reference and the model over the tensors that
    /// kind acts on, before and after applying <paramref name="perms"/>.
    /// </summary>
    public static IReadOnlyList<AlignmentGain> Gains(
        PermutationSpec spec,
        IReadOnlyDictionary<string, float[]> reference,
        IReadOnlyDictionary<string, float[]> model,
        IReadOnlyDictionary<string, int[]> perms
    )
    {
        var aligned = spec.Apply(model, perms);
        var kinds = new[]
        {
            new[] { PermutationKind.Residual },
            [PermutationKind.Mlp],
            [PermutationKind.KeyValueHeads, PermutationKind.QueryHeads],
        };
        return
        [
            .. kinds
                .Select(k => (Kind: k[0], Tensors: spec.TensorsOf(k)))
                .Where(k => k.Tensors.Count > 0)
                .Select(k => new AlignmentGain(
                    k.Kind,
                    k.Tensors.Count,
                    Cosine(reference, model, k.Tensors),
                    Cosine(reference, aligned, k.Tensors)
                )),
        ];
    }

    private static double Cosine(
        IReadOnlyDictionary<string, float[]> a,
        IReadOnlyDictionary<string, float[]> b,
        IEnumerable<string> names
    )
    {
        double dot = 0,
            aa = 0,
            bb = 0;
        foreach (var name in names)
        {
            var (x, y) = (a[name], b[name]);
            for (int i = 0; i < x.Length; i++)
            {
                dot += (double)x[i] * y[i];
                aa += (double)x[i] * x[i];
                bb += (double)y[i] * y[i];
            }
        }
        return aa == 0 || bb == 0 ? 0 : dot / Math.Sqrt(aa * bb);
    }
}
