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

    /// <summary>How each module's update is factored (<see cref="SvdChoice"/>).</summary>
    public SvdChoice Svd { get; init; } = SvdChoice.Auto;
}

/// <summary>
/// <c>--svd</c>: the exact thin SVD, the randomized one (<see cref="RandomizedSvd"/>), or <c>auto</c>: randomized
/// where the sketch (max rank + 10 columns) is at most a quarter of the module's smaller side and the spectrum's tail
/// is not needed to pick the rank, exact elsewhere.
/// </summary>
public enum SvdChoice
{
    Auto,
    Exact,
    Randomized,
}

/// <summary>One decomposed module: its rank, the share of its update's energy (Σ S²) kept, the Frobenius norm of what
/// was dropped (the error of the low-rank update: by Eckart–Young the least possible for an exact SVD) and which SVD
/// gave it ("exact" or "randomized").</summary>
public sealed record ExtractedModule(string Module, int Rank, double KeptEnergy, double Error, string Svd = "exact");

/// <summary>
/// mergekit-extract-lora: a fine-tune as a PEFT LoRA adapter of its base. Each linear weight's update ΔW = W_ft −
/// W_base is factored by a thin SVD in float32 (exact, or randomized for ranks far below the module's size) and
/// truncated to its largest singular values; a changed bias of a decomposed module is stored as its
/// <c>lora_B.bias</c>; embeddings, norms and the modules asked for are saved whole (<c>modules_to_save</c>); the
/// adapter's rank is the largest a module got, with <c>rank_pattern</c> and <c>alpha_pattern</c> (α = rank, so every
/// module's scale is 1) for the others. Modules are decomposed a bounded window at a time and written in file order as
/// soon as they and every earlier one are done, so memory does not grow with the model.
/// </summary>
public static class LoraExtractor
{
    private const string Prefix = AdapterFolder.Prefix;

    /// <summary>Auto takes the randomized SVD when the sketch is at most this share of the module's smaller side:
    /// measured on 1024- and 4096-wide updates, it is 4–6× faster there at 1.02× the optimum's error, and no faster
    /// than the exact SVD at a share of 0.3 (docs/performance.md).</summary>
    public const double RandomizedShare = 0.25;

    /// <summary>One adapter entry to produce, in the fine-tune's tensor order.</summary>
    private abstract record Item(string Module)
    {
        /// <summary>The tensors it writes, when their shapes are known before the SVD (no rank rule).</summary>
        public abstract IEnumerable<TensorInfo> Planned(LoraExtractionOptions options);
    }

    /// <summary>A tensor saved as it is (modules_to_save, norms, a saved module's bias).</summary>
    private sealed record Whole(string Module, StoredTensor Tensor) : Item(Module)
    {
        public override IEnumerable<TensorInfo> Planned(LoraExtractionOptions options) =>
            [Tensor.Info with { Name = Prefix + Tensor.Name }];
    }

    /// <summary>A decomposed module's bias update b_ft − b_base, as PEFT's lora_B.bias.</summary>
    private sealed record BiasDelta(string Module, StoredTensor Tuned, StoredTensor Base) : Item(Module)
    {
        public string Name => $"{Prefix}{Module}.lora_B.bias";

        public override IEnumerable<TensorInfo> Planned(LoraExtractionOptions options) =>
            [new(Name, Tuned.Info.DType, Tuned.Info.Shape)];
    }

    /// <summary>A weight whose update is factored; an embedding's is transposed first (PEFT's (B·A)ᵀ).</summary>
    private sealed record Factored(string Module, StoredTensor Tuned, StoredTensor Base, bool Embedding) : Item(Module)
    {
        public int Rows => (int)Tuned.Info.Shape[Embedding ? 1 : 0];
        public int Cols => (int)Tuned.Info.Shape[Embedding ? 0 : 1];

        public override IEnumerable<TensorInfo> Planned(LoraExtractionOptions options) =>
            Factors(Math.Max(1, Math.Min(options.MaxRank, Math.Min(Rows, Cols))))
                .Select(f => new TensorInfo(f.Name, Tuned.Info.DType, f.Shape));

        /// <summary>
        /// lora_A [r, cols], lora_B [rows, r]; or lora_embedding_A [r, vocab], lora_embedding_B [hidden, r].
        /// </summary>
        public (string Name, long[] Shape)[] Factors(int rank) =>
            Embedding
                ?
                [
                    ($"{Prefix}{Module}.lora_embedding_A", [rank, Cols]),
                    ($"{Prefix}{Module}.lora_embedding_B", [Rows, rank]),
                ]
                :
                [
                    ($"{Prefix}{Module}.lora_A.weight", [rank, Cols]),
                    ($"{Prefix}{Module}.lora_B.weight", [Rows, rank]),
                ];
    }

    /// <summary>What an item becomes: float tensors to store or a stored tensor to copy, and its report line.</summary>
    private sealed record Done(AdapterTensor[] Tensors, StoredTensor? Copy, string? CopyName, ExtractedModule? Module);

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
        using var tuned = Checkpoint.Open(fineTuned);
        using var @base = Checkpoint.Open(baseModel);
        using var folder = OutputFolder.Prepare(output, overwrite, [fineTuned, baseModel], diagnostics);
        var (items, saved) = Plan(tuned, @base, baseModel, options);
        if (!items.OfType<Factored>().Any())
            throw new AlloyException("no linear module was left to decompose; check --include-regex / --exclude-regex");

        // The header lists every shape first: known now unless a rule may lower a module's rank after its SVD.
        bool ranksKnown = options.Energy is null && !(options.SvEpsilon > 0);
        var modules = new List<ExtractedModule>();
        using (
            var file = new AdapterFileWriter(
                folder.Temporary,
                ranksKnown ? [.. items.SelectMany(i => i.Planned(options))] : null
            )
        )
        {
            InOrder(
                items.Count,
                options.Threads,
                i => Produce(items[i], options),
                (i, done) =>
                {
                    foreach (var tensor in done.Tensors)
                        file.Append(tensor);
                    if (done.Copy is not null)
                        file.Copy(done.CopyName!, done.Copy);
                    if (done.Module is not null)
                        modules.Add(done.Module);
                    progress?.Invoke(i + 1, items.Count);
                }
            );
            file.Complete();
        }
        AdapterFolder.WriteConfig(
            folder.Temporary,
            [.. modules.Select(m => (m.Module, m.Rank))],
            saved,
            baseModel,
            $"# LoRA extracted by Alloy\n\nThe difference between `{fineTuned}` and `{baseModel}` as a rank-"
                + $"{modules.Max(m => m.Rank)} LoRA adapter (`alloy extract-lora`, max rank {options.MaxRank}).\n",
            loraBias: items.OfType<BiasDelta>().Any()
        );
        folder.Commit();
        return modules;
    }

    /// <summary>
    /// Runs <paramref name="work"/> for items 0…count−1 on <paramref name="threads"/> threads and hands each result to
    /// <paramref name="write"/> in index order, as soon as it and every earlier one are done. At most 2 × threads
    /// items are admitted and not yet written (a slow item holds back at most that many results), so memory stays
    /// bounded however many items there are; the order written does not depend on the thread count.
    /// </summary>
    private static void InOrder<T>(int count, int threads, Func<int, T> work, Action<int, T> write)
        where T : class
    {
        threads = Math.Max(1, Math.Min(threads, count));
        var results = new T?[count];
        int next = -1,
            written = 0;
        var gate = new object();
        using var window = new SemaphoreSlim(2 * threads);
        using var stop = new CancellationTokenSource();
        System.Runtime.ExceptionServices.ExceptionDispatchInfo? failure = null;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ =>
        {
            try
            {
                while (true)
                {
                    // Admission in index order: the oldest unwritten item always holds a place, so this cannot stall.
                    window.Wait(stop.Token);
                    int i = Interlocked.Increment(ref next);
                    if (i >= count)
                    {
                        window.Release();
                        return;
                    }
                    var result = work(i);
                    lock (gate)
                    {
                        results[i] = result;
                        for (; written < count && results[written] is { } ready; written++)
                        {
                            results[written] = null;
                            write(written, ready);
                            window.Release();
                        }
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
            catch (Exception e)
            {
                lock (gate)
                    failure ??= System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e);
                stop.Cancel();
            }
        });
        failure?.Throw();
    }

    /// <summary>What goes into the adapter, in the fine-tune's tensor order, and the modules saved whole.</summary>
    private static (List<Item> Items, SortedSet<string> Saved) Plan(
        Checkpoint tuned,
        Checkpoint @base,
        string baseModel,
        LoraExtractionOptions options
    )
    {
        var include = options.Include.Select(Pattern).ToList();
        var exclude = options.Exclude.Select(Pattern).ToList();
        var items = new List<Item>();
        var saved = new SortedSet<string>(StringComparer.Ordinal);
        StoredTensor Original(string name) =>
            @base.Find(name) ?? throw new AlloyException($"base model '{baseModel}' has no tensor '{name}'");

        // A bias follows its module's weight (as mergekit): an update of a decomposed module, whole with a saved one.
        var fates = new Dictionary<string, Item?>(StringComparer.Ordinal);
        var biases = new List<(int Position, string Module, StoredTensor Tensor)>();
        foreach (var tensor in tuned.Tensors)
        {
            string name = tensor.Info.Name;
            int dot = name.LastIndexOf('.');
            string module = dot < 0 ? name : name[..dot];
            if (include.Count > 0 && !include.Any(p => p.IsMatch(module)) || exclude.Any(p => p.IsMatch(module)))
                continue;
            if (name.EndsWith(".bias", StringComparison.Ordinal) && tuned.Find(module + ".weight") is not null)
            {
                biases.Add((items.Count, module, tensor));
                items.Add(null!); // its place, filled once every weight's fate is known
                continue;
            }
            var shape = tensor.Info.Shape;
            bool embedding = module.EndsWith("embed_tokens", StringComparison.Ordinal);
            var original = Original(name);
            // An embedding is decomposed only when asked, and only if the vocabulary kept its size (as mergekit).
            bool decomposeEmbedding =
                embedding && options.EmbedLora && original.Info.Shape.AsSpan().SequenceEqual(shape);
            bool whole =
                (embedding && !decomposeEmbedding)
                || shape.Length != 2
                || options.SaveModules.Contains(module[(module.LastIndexOf('.') + 1)..]);
            Item? item;
            if (whole)
            {
                item = shape.Length != 2 && options.SkipUndecomposable ? null : new Whole(module, tensor);
                if (item is not null)
                    saved.Add(module);
            }
            else
            {
                if (!original.Info.Shape.AsSpan().SequenceEqual(shape))
                    throw new AlloyException(
                        $"'{name}' is [{string.Join(", ", shape)}] in the fine-tune but "
                            + $"[{string.Join(", ", original.Info.Shape)}] in the base"
                    );
                item = new Factored(module, tensor, original, decomposeEmbedding);
            }
            if (name.EndsWith(".weight", StringComparison.Ordinal))
                fates[module] = item;
            if (item is not null)
                items.Add(item);
        }
        foreach (var (position, module, tensor) in biases)
        {
            Item? item = fates.GetValueOrDefault(module) switch
            {
                Factored => BiasFor(module, tensor, Original(tensor.Name)),
                Whole => new Whole(module, tensor),
                _ => null, // its weight was left out
            };
            items[position] = item!;
        }
        items.RemoveAll(i => i is null);
        return (items, saved);
    }

    private static BiasDelta BiasFor(string module, StoredTensor tuned, StoredTensor original) =>
        original.Info.Shape.AsSpan().SequenceEqual(tuned.Info.Shape)
            ? new BiasDelta(module, tuned, original)
            : throw new AlloyException(
                $"'{tuned.Name}' is [{string.Join(", ", tuned.Info.Shape)}] in the fine-tune but "
                    + $"[{string.Join(", ", original.Info.Shape)}] in the base"
            );

    private static Done Produce(Item item, LoraExtractionOptions options)
    {
        switch (item)
        {
            case Whole whole:
                return new Done([], whole.Tensor, Prefix + whole.Tensor.Name, null);
            case BiasDelta bias:
                var delta = new float[bias.Tuned.Info.ElementCount];
                Difference(bias.Tuned, bias.Base, delta);
                return new Done(
                    [new(bias.Name, bias.Tuned.Info.DType, bias.Tuned.Info.Shape, delta)],
                    null,
                    null,
                    null
                );
            case Factored factored:
                // Pooled: the window's few large buffers are reused from module to module instead of left to the GC.
                using (var values = PooledArray.Rent(factored.Tuned.Info.ElementCount))
                {
                    Difference(factored.Tuned, factored.Base, values.Span);
                    if (factored.Embedding)
                        Transpose(values.Span, factored.Cols, factored.Rows);
                    var (a, b, result) = Decompose(factored.Module, values.Span, factored.Rows, factored.Cols, options);
                    var names = factored.Factors(result.Rank);
                    var dtype = factored.Tuned.Info.DType;
                    return new Done(
                        [new(names[0].Name, dtype, names[0].Shape, a), new(names[1].Name, dtype, names[1].Shape, b)],
                        null,
                        null,
                        result
                    );
                }
            default:
                throw new InvalidOperationException(item.GetType().Name);
        }
    }

    /// <summary>tuned − base in float32; the mapped pages read are given back, so RSS does not keep them.</summary>
    private static void Difference(StoredTensor tuned, StoredTensor original, Span<float> delta)
    {
        tuned.ReadFloat32(0, delta);
        using (var before = PooledArray.Rent(delta.Length))
        {
            original.ReadFloat32(0, before.Span);
            System.Numerics.Tensors.TensorPrimitives.Subtract(delta, before.Span, delta);
        }
        tuned.File.Release(tuned.Offset, tuned.Info.ByteLength);
        original.File.Release(original.Offset, original.Info.ByteLength);
    }

    /// <summary>
    /// The truncated SVD of ΔW ([rows, cols]): A [r, cols], B [rows, r]. Randomized where <see cref="SvdChoice"/>
    /// allows; a rank rule the sketch cannot settle falls back to the exact SVD under auto.
    /// </summary>
    private static (float[] A, float[] B, ExtractedModule Result) Decompose(
        string module,
        ReadOnlySpan<float> delta,
        int rows,
        int cols,
        LoraExtractionOptions options
    )
    {
        int k = Math.Min(rows, cols);
        int maxRank = Math.Min(options.MaxRank, k);
        int sketch = RandomizedSvd.SketchSize(maxRank, rows, cols);
        bool randomized = options.Svd switch
        {
            SvdChoice.Exact => false,
            SvdChoice.Randomized => true,
            _ => sketch <= RandomizedShare * k,
        };
        if (randomized)
        {
            var (u, s, vt) = RandomizedSvd.Compute(delta, rows, cols, maxRank, RandomStream.For(0, module, 0));
            // The sketch's values are each at most the true one, and ‖ΔW‖² is exact: see RankFromSketch.
            double total = 0;
            foreach (float v in delta)
                total += (double)v * v;
            if (RankFromSketch(s, total, maxRank, options) is { } rank)
                return Factors(module, u, sketch, s, vt, rows, cols, rank, total, "randomized", options);
        }
        {
            using var pooledU = PooledArray.Rent((long)rows * k);
            using var pooledVt = PooledArray.Rent((long)k * cols);
            Span<float> u = pooledU.Span,
                vt = pooledVt.Span;
            var s = new float[k];
            DenseBackend.Current.Svd(delta, rows, cols, u, s, vt);
            double total = s.Sum(v => (double)v * v);
            int rank = maxRank;
            if (options.SvEpsilon > 0)
                rank = Math.Min(rank, s.Count(v => v > options.SvEpsilon));
            if (options.Energy is { } share)
            {
                double running = 0;
                int needed = 0;
                while (needed < k && running < share * total)
                    running += (double)s[needed] * s[needed++];
                rank = Math.Min(rank, needed);
            }
            return Factors(module, u, k, s, vt, rows, cols, rank, total, "exact", options);
        }

        // Under --svd randomized the sketch decides alone; under auto, only where its answer is the exact one's or
        // provably keeps what was asked.
        static int? RankFromSketch(float[] s, double total, int maxRank, LoraExtractionOptions options)
        {
            bool decides = options.Svd == SvdChoice.Randomized;
            int rank = maxRank;
            if (options.SvEpsilon > 0)
            {
                // σ̃_i ≤ σ_i: all of the first maxRank above ε means the exact count reaches maxRank too.
                int above = s.Take(maxRank).Count(v => v > options.SvEpsilon);
                if (above < maxRank && !decides)
                    return null;
                rank = Math.Min(rank, above);
            }
            if (options.Energy is { } share)
            {
                // Σ_{i≤r} σ̃_i² is the energy the rank-r update really keeps (it is ΔW projected on r directions),
                // so the first r reaching the share keeps it; the exact smallest rank is at most r.
                double running = 0;
                int needed = 0;
                while (needed < maxRank && running < share * total)
                    running += (double)s[needed] * s[needed++];
                if (running < share * total && !decides)
                    return null;
                rank = Math.Min(rank, needed);
            }
            return rank;
        }
    }

    /// <summary>The factors of the rank-r truncation of U·diag(S)·Vᵀ (U [rows, width], Vᵀ [width, cols]).</summary>
    private static (float[] A, float[] B, ExtractedModule Result) Factors(
        string module,
        ReadOnlySpan<float> u,
        int width,
        float[] s,
        ReadOnlySpan<float> vt,
        int rows,
        int cols,
        int rank,
        double total,
        string svd,
        LoraExtractionOptions options
    )
    {
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
                b[i * rank + r] = left * u[i * width + r];
        }
        return (
            a,
            b,
            new ExtractedModule(
                module,
                rank,
                total > 0 ? Math.Min(1, kept / total) : 1,
                Math.Sqrt(Math.Max(0, total - kept)),
                svd
            )
        );
    }

    /// <summary>Transposes a row-major [rows, cols] matrix in place (through a pooled copy).</summary>
    private static void Transpose(Span<float> values, int rows, int cols)
    {
        using var copy = PooledArray.Rent(values.Length);
        values.CopyTo(copy.Span);
        var source = copy.Span;
        for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            values[j * rows + i] = source[i * cols + j];
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
