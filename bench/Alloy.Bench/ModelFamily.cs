using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Alloy.Synthetic;
using Alloy.Tensors;

namespace Alloy.Bench;

/// <summary>A Llama shape chosen to hit a parameter count, and how to say it.</summary>
public sealed record ModelShape(string Label, long TargetParameters, TinyLlamaSpec Spec)
{
    public long Parameters => TinyLlama.Tensors(Spec).Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));

    public string Describe() =>
        $"Llama, hidden {Spec.HiddenSize}, intermediate {Spec.IntermediateSize}, {Spec.Layers} layers, {Spec.Heads} "
        + $"heads ({Spec.KeyValueHeads} key/value), vocabulary {Spec.VocabSize}, untied head, "
        + $"{Spec.DType.TorchName()}: "
        + $"{Parameters / 1e9:F3} B parameters, {Format.Bytes(Parameters * Spec.DType.Size())} of tensors per model";

    /// <summary>"0.25B", "1B", "250M" → parameters.</summary>
    public static long ParseCount(string text)
    {
        var t = text.Trim().ToUpperInvariant();
        double scale =
            t.EndsWith('B') ? 1e9
            : t.EndsWith('M') ? 1e6
            : t.EndsWith('K') ? 1e3
            : 1;
        if (scale != 1)
            t = t[..^1];
        if (!double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) || value <= 0)
            throw new ArgumentException($"--params: '{text}' is not a parameter count such as 0.25B, 1B or 250M");
        return (long)Math.Round(value * scale);
    }

    /// <summary>
    /// A Llama-family shape near <paramref name="target"/> parameters: the hidden size steps with the target as real
    /// models do (so the largest tensors, the embeddings, grow with it), intermediate ≈ 2.75 × hidden, grouped-query
    /// attention with 4 query heads per key/value head, a 32 000-token vocabulary; the layer count makes up the rest.
    /// </summary>
    public static ModelShape For(string label, long target)
    {
        int hidden = target switch
        {
            <= 60_000_000 => 512,
            <= 600_000_000 => 1024,
            <= 3_000_000_000 => 2048,
            <= 10_000_000_000 => 4096,
            _ => 5120,
        };
        int headDim = hidden >= 4096 ? 128 : 64;
        int heads = hidden / headDim,
            kvHeads = Math.Max(1, heads / 4);
        int intermediate = (int)Math.Round(hidden * 2.75 / 256) * 256;
        const int vocab = 32_000;
        long kvDim = (long)kvHeads * headDim;
        long perLayer = 2L * hidden + 2L * hidden * hidden + 2 * kvDim * hidden + 3L * hidden * intermediate;
        long fixedPart = 2L * vocab * hidden + hidden;
        int layers = (int)Math.Max(1, Math.Round((double)(target - fixedPart) / perLayer));
        var spec = new TinyLlamaSpec
        {
            VocabSize = vocab,
            HiddenSize = hidden,
            IntermediateSize = intermediate,
            Layers = layers,
            Heads = heads,
            KeyValueHeads = kvHeads,
            DType = DType.BF16,
        };
        return new ModelShape(label, target, spec);
    }
}

/// <summary>A generated base and fine-tunes on disk.</summary>
public sealed record ModelFamily(
    ModelShape Shape,
    string Root,
    string Base,
    IReadOnlyList<string> FineTunes,
    int Generated,
    double GenerationSeconds
)
{
    private const string DoneMarker = ".alloy-bench-complete";

    public static string WeightsFile(string modelFolder) => Path.Combine(modelFolder, "model.safetensors");

    /// <summary>
    /// Returns the family under <paramref name="cacheRoot"/>, generating the models that are missing. Each model is
    /// written by a child process (the generator is single-threaded and keeps a whole tensor in memory, so this keeps
    /// the benchmark's own RSS small and uses every core), and marked complete only when it has been fully written.
    /// </summary>
    public static ModelFamily Ensure(string cacheRoot, ModelShape shape, int fineTunes, Action<string> log)
    {
        var spec = shape.Spec;
        string key =
            $"llama-h{spec.HiddenSize}-i{spec.IntermediateSize}-l{spec.Layers}-v{spec.VocabSize}"
            + $"-{spec.DType.TorchName()}-seed{spec.Seed}";
        string root = Path.Combine(cacheRoot, "models", key);
        var folders = Enumerable
            .Range(0, fineTunes + 1)
            .Select(k => Path.Combine(root, k == 0 ? "base" : $"finetune-{k}"))
            .ToList();
        string specJson = JsonSerializer.Serialize(
            new GeneratorJob(
                spec.VocabSize,
                spec.HiddenSize,
                spec.IntermediateSize,
                spec.Layers,
                spec.Heads,
                spec.KeyValueHeads,
                spec.Seed
            )
        );

        Directory.CreateDirectory(root);
        // Two benchmarks may share a cache (say, one preparing 1B models while another measures); one generates, the
        // other waits.
        using var gate = Lock(Path.Combine(root, ".generating"), log);
        var missing = folders
            .Select((f, k) => (Folder: f, FineTune: k))
            .Where(m =>
                !File.Exists(Path.Combine(m.Folder, DoneMarker))
                || File.ReadAllText(Path.Combine(m.Folder, DoneMarker)) != specJson
            )
            .ToList();
        var clock = Stopwatch.StartNew();
        if (missing.Count > 0)
        {
            log(
                $"generating {missing.Count} model(s) of {shape.Parameters / 1e9:F3} B parameters in {root} (cached "
                    + $"for later runs)"
            );
            string self = Path.Combine(AppContext.BaseDirectory, "Alloy.Bench");
            var failures = new List<string>();
            Parallel.ForEach(missing, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, m =>
            {
                if (Directory.Exists(m.Folder))
                    Directory.Delete(m.Folder, recursive: true);
                var result = ChildProcess.Run(
                    self,
                    ["generate", m.Folder, m.FineTune.ToString(CultureInfo.InvariantCulture), specJson]
                );
                if (!result.Succeeded)
                {
                    lock (failures)
                        failures.Add($"{m.Folder}: {result.FirstError}");
                    return;
                }
                File.WriteAllText(Path.Combine(m.Folder, DoneMarker), specJson);
                log($"  wrote {m.Folder} ({result.WallSeconds:F0} s)");
            });
            if (failures.Count > 0)
                throw new InvalidOperationException("model generation failed: " + string.Join("; ", failures));
        }
        return new ModelFamily(
            shape,
            root,
            folders[0],
            folders.Skip(1).ToList(),
            missing.Count,
            missing.Count > 0 ? clock.Elapsed.TotalSeconds : 0
        );
    }

    private static FileStream Lock(string path, Action<string> log)
    {
        for (bool told = false; ; Thread.Sleep(2000))
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException)
            {
                if (!told)
                    log($"waiting for another benchmark that is generating {Path.GetDirectoryName(path)}");
                told = true;
            }
        }
    }

    /// <summary>The child side of <see cref="Ensure"/>: writes one model.</summary>
    public static void Generate(string folder, int fineTune, string specJson)
    {
        var job = JsonSerializer.Deserialize<GeneratorJob>(specJson)
            ?? throw new ArgumentException("empty generator job");
        var spec = new TinyLlamaSpec
        {
            VocabSize = job.VocabSize,
            HiddenSize = job.HiddenSize,
            IntermediateSize = job.IntermediateSize,
            Layers = job.Layers,
            Heads = job.Heads,
            KeyValueHeads = job.KeyValueHeads,
            Seed = job.Seed,
            DType = DType.BF16,
        };
        TinyLlama.Write(folder, spec, fineTune);
    }

    private sealed record GeneratorJob(
        int VocabSize,
        int HiddenSize,
        int IntermediateSize,
        int Layers,
        int Heads,
        int KeyValueHeads,
        ulong Seed
    );
}
