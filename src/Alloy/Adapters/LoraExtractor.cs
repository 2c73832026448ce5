using System.Text.RegularExpressions;
using Alloy.Checkpoints;
using Alloy.LinearAlgebra;
using Alloy.Output;
using Alloy.Tensors;

namespace Alloy.Adapters;

/// <summary>The options of <c>alloy extract-lora</c>, with mergekit-extract-lora's defaults.</summary>
public sealed record LoraExtractionOptions
{
    /// <summary>The largest rank of a module's update.</summary>
    public int MaxRank { get; init; } = 128;

    /// <summary>√S on both factors (A = √S·Vᵀ, B = U·√S); else A = S·Vᵀ, B = U.</summary>
    public bool DistributeScale { get; init; } = true;

    /// <summary>Singular values at or below this are dropped (0: none).</summary>
    public double SvEpsilon { get; init; }

    /// <summary>Modules, by their last name component (<c>lm_head</c>), saved whole instead of decomposed.</summary>
    public IReadOnlyList<string> SaveModules { get; init; } = [];

    /// <summary>Only modules whose name matches one of these regular expressions (none: every module).</summary>
    public IReadOnlyList<string> Include { get; init; } = [];

    /// <summary>Modules whose name matches one of these regular expressions are left out.</summary>
    public IReadOnlyList<string> Exclude { get; init; } = [];

    /// <summary>Leave out what cannot be decomposed (norms) instead of saving it whole.</summary>
    public bool SkipUndecomposable { get; init; }

    /// <summary>
    /// Beyond mergekit: when set, each module gets the smallest rank whose singular values keep this share of its
    /// update's energy Σ S² (still at most <see cref="MaxRank"/>).
    /// </summary>
    public double? Energy { get; init; }

    /// <summary>Decompose the embedding too (PEFT's <c>lora_embedding_A/B</c>) instead of saving it whole.</summary>
    public bool EmbedLora { get; init; }

    /// <summary>Modules decomposed at once (the output does not depend on it).</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;
}

/// <summary>One decomposed module: its rank, the share of its update's energy (Σ S²) kept, and the Frobenius norm of
/// what was dropped (the error of the low-rank update, by Eckart–Young).</summary>
public sealed record ExtractedModule(string Module, int Rank, double KeptEnergy, double Error);

/// <summary>
/// mergekit-extract-lora: a fine-tune as a PEFT LoRA adapter of its base. Each linear weight's update ΔW = W_ft −
/// W_base is factored by a thin SVD in float32 and truncated to its largest singular values; embeddings, norms and
/// the modules asked for are saved whole (<c>modules_to_save</c>); the adapter's rank is the largest a module got, with
/// <c>rank_pattern</c> and <c>alpha_pattern</c> (α = rank, so every module's scale is 1) for the others. One tensor is
/// in memory at a time.
/// </summary>
public static class LoraExtractor
{
    private const string Prefix = AdapterFolder.Prefix;

    public static IReadOnlyList<ExtractedModule> Extract(
        string fineTuned,
        string baseModel,
        string output,
        LoraExtractionOptions options,
        bool overwrite = false,
        Diagnostics? diagnostics = null,
        Action<int, int>? progress = null
    )
    {
        if (options.MaxRank < 1)
            throw new AlloyException($"--max-rank must be at least 1 (got {options.MaxRank})");
        if (options.Energy is { } energy && !(energy > 0 && energy <= 1))
            throw new AlloyException($"the energy to keep must be in (0, 1] (got {energy})");
        var include = options.Include.Select(Pattern).ToList();
        var exclude = options.Exclude.Select(Pattern).ToList();
        using var tuned = Checkpoint.Open(fineTuned);
        using var @base = Checkpoint.Open(baseModel);
        using var folder = OutputFolder.Prepare(output, overwrite, [fineTuned, baseModel], diagnostics);

        // What each kept tensor becomes, computed later in parallel: its tensors in the adapter, and its report line.
        var work = new List<Func<(AdapterTensor[] Factors, ExtractedModule? Module)>>();
        var saved = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var tensor in tuned.Tensors)
        {
            string name = tensor.Info.Name;
            int dot = name.LastIndexOf('.');
            string module = dot < 0 ? name : name[..dot];
            if (include.Count > 0 && !include.Any(p => p.IsMatch(module)) || exclude.Any(p => p.IsMatch(module)))
                continue;
            var original = @base.Find(name)
                ?? throw new AlloyException($"base model '{baseModel}' has no tensor '{name}'");
            var shape = tensor.Info.Shape;
            bool embedding = module.EndsWith("embed_tokens", StringComparison.Ordinal);
            // An embedding is decomposed only when asked, and only if the vocabulary kept its size (as mergekit).
            bool decomposeEmbedding =
                embedding && options.EmbedLora && original.Info.Shape.AsSpan().SequenceEqual(shape);
            bool whole =
                (embedding && !decomposeEmbedding)
                || shape.Length != 2
                || options.SaveModules.Contains(module[(module.LastIndexOf('.') + 1)..]);
            if (name.EndsWith(".bias", StringComparison.Ordinal))
                throw new AlloyException(
                    $"'{name}': bias updates are not extracted yet; exclude the module with --exclude-regex"
                );
            if (whole)
            {
                if (shape.Length != 2 && options.SkipUndecomposable)
                    continue;
                work.Add(() => ([new(Prefix + name, tensor.Info.DType, shape, tensor.ReadFloat32())], null));
                saved.Add(module);
                continue;
            }
            if (!original.Info.Shape.AsSpan().SequenceEqual(shape))
                throw new AlloyException(
                    $"'{name}' is [{string.Join(", ", shape)}] in the fine-tune but "
                        + $"[{string.Join(", ", original.Info.Shape)}] in the base"
                );
            var dtype = tensor.Info.DType;
            if (decomposeEmbedding)
            {
                // PEFT's embedding update is (B·A)ᵀ: the SVD of Δᵀ [hidden, vocab] gives A [r, vocab], B [hidden, r].
                work.Add(() =>
                {
                    var (a, b, result) = Decompose(
                        module,
                        Transpose(tensor.ReadFloat32(), (int)shape[0], (int)shape[1]),
                        Transpose(original.ReadFloat32(), (int)shape[0], (int)shape[1]),
                        (int)shape[1],
                        (int)shape[0],
                        options
                    );
                    return (
                        [
                            new($"{Prefix}{module}.lora_embedding_A", dtype, [result.Rank, shape[0]], a),
                            new($"{Prefix}{module}.lora_embedding_B", dtype, [shape[1], result.Rank], b),
                        ],
                        result
                    );
                });
                continue;
            }
            work.Add(() =>
            {
                var (a, b, result) = Decompose(
                    module,
                    tensor.ReadFloat32(),
                    original.ReadFloat32(),
                    (int)shape[0],
                    (int)shape[1],
                    options
                );
                return (
                    [
                        new($"{Prefix}{module}.lora_A.weight", dtype, [result.Rank, shape[1]], a),
                        new($"{Prefix}{module}.lora_B.weight", dtype, [shape[0], result.Rank], b),
                    ],
                    result
                );
            });
        }
        // The SVDs on all threads; the adapter's tensors keep the fine-tune's order whatever the thread count.
        var done = new (AdapterTensor[] Factors, ExtractedModule? Module)[work.Count];
        int finished = 0;
        var gate = new object();
        Parallel.For(0, work.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, options.Threads) }, i =>
        {
            done[i] = work[i]();
            lock (gate)
                progress?.Invoke(++finished, work.Count);
        });
        var factors = done.SelectMany(d => d.Factors).ToList();
        var modules = done.Where(d => d.Module is not null).Select(d => d.Module!).ToList();
        if (modules.Count == 0)
            throw new AlloyException("no linear module was left to decompose; check --include-regex / --exclude-regex");

        AdapterFolder.Write(
            folder.Temporary,
            factors,
            [.. modules.Select(m => (m.Module, m.Rank))],
            saved,
            baseModel,
            $"# LoRA extracted by Alloy\n\nThe difference between `{fineTuned}` and `{baseModel}` as a rank-"
                + $"{modules.Max(m => m.Rank)} LoRA adapter (`alloy extract-lora`, max rank {options.MaxRank}).\n"
        );
        folder.Commit();
        return modules;
    }

    /// <summary>The truncated SVD of ΔW = tuned − base ([rows, cols]): A [r, cols], B [rows, r].</summary>
    private static (float[] A, float[] B, ExtractedModule Result) Decompose(
        string module,
        float[] tuned,
        float[] original,
        int rows,
        int cols,
        LoraExtractionOptions options
    )
    {
        var delta = new float[tuned.Length];
        for (int i = 0; i < delta.Length; i++)
            delta[i] = tuned[i] - original[i];
        int k = Math.Min(rows, cols);
        var (u, s, vt) = (new float[rows * k], new float[k], new float[k * cols]);
        DenseBackend.Current.Svd(delta, rows, cols, u, s, vt);
        int rank = Math.Min(options.MaxRank, k);
        if (options.SvEpsilon > 0)
            rank = Math.Min(rank, s.Count(v => v > options.SvEpsilon));
        double total = s.Sum(v => (double)v * v);
        if (options.Energy is { } share)
        {
            double running = 0;
            int needed = 0;
            while (needed < k && running < share * total)
                running += (double)s[needed] * s[needed++];
            rank = Math.Min(rank, needed);
        }
        rank = Math.Max(rank, 1); // PEFT has no rank-0 modules: an unchanged module gets a zero rank-1 update
        double kept = s.Take(rank).Sum(v => (double)v * v);
        var a = new float[rank * cols];
        var b = new float[rows * rank];
        for (int r = 0; r < rank; r++)
        {
            float left = options.DistributeScale ? MathF.Sqrt(s[r]) : 1,
                right = options.DistributeScale ? MathF.Sqrt(s[r]) : s[r];
            for (int c = 0; c < cols; c++)
                a[r * cols + c] = right * vt[r * cols + c];
            for (int i = 0; i < rows; i++)
                b[i * rank + r] = left * u[i * k + r];
        }
        return (
            a,
            b,
            new ExtractedModule(module, rank, total > 0 ? kept / total : 1, Math.Sqrt(Math.Max(0, total - kept)))
        );
    }

    private static float[] Transpose(float[] values, int rows, int cols)
    {
        var transposed = new float[values.Length];
        for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            transposed[j * rows + i] = values[i * cols + j];
        return transposed;
    }

    private static Regex Pattern(string pattern)
    {
        try
        {
            return new Regex(pattern, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
        }
        catch (ArgumentException e)
        {
            throw new AlloyException($"'{pattern}' is not a regular expression: {e.Message}");
        }
    }
}
