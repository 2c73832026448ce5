using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Alloy.Bench;

public sealed record BenchSettings(
    IReadOnlyList<ModelShape> Sizes,
    int FineTunes,
    IReadOnlyList<BenchMethod> Methods,
    IReadOnlyList<int> Threads,
    IReadOnlyList<int> TorchThreads,
    string CacheFolder,
    CacheMode Cache,
    string CacheNote,
    int Repeat,
    int TorchRepeat,
    TorchMode TorchMode,
    TorchForMissing TorchForMissing,
    string Command,
    double TorchLimitSeconds = 0
);

/// <summary>
/// Whether PyTorch runs methods Alloy does not have yet: its time is then the figure to beat, but the sorts of the
/// whole-tensor methods make it the slowest column, so by default it is measured at the first size only.
/// </summary>
public enum TorchForMissing
{
    FirstSize,
    AllSizes,
    Skip,
}

/// <summary>
/// One measured run (the median of the repeats): a child process's wall time, bytes moved, peak memory.
/// </summary>
/// <param name="Stopped">The run was stopped at a time limit: <see cref="Seconds"/> and <see cref="CpuSeconds"/> are
/// lower bounds.</param>
public sealed record Measurement(
    int Threads,
    double Seconds,
    long InputBytes,
    long OutputBytes,
    long PeakRss,
    long PeakAnon,
    long PeakFile,
    double CpuSeconds,
    double OtherCpuSeconds,
    bool Stopped = false
)
{
    public double GigabytesPerSecond => (InputBytes + OutputBytes) / Seconds / 1e9;

    /// <summary>
    /// CPU seconds per wall second: ≈ 1 per busy core; far below the thread count means waiting on I/O.
    /// </summary>
    public double CpuUse => CpuSeconds / Seconds;

    /// <summary>
    /// Cores kept busy by other processes during the run (the machine's busy time less the child's): interference.
    /// </summary>
    public double OtherCores => OtherCpuSeconds / Seconds;
}

/// <summary>
/// How close Alloy's output is to PyTorch's: shares of equal and ≤ 1 ulp elements, and the largest difference ÷ its
/// tensor's RMS.
/// </summary>
public sealed record Agreement(double Equal, double WithinOneUlp, double MaxDiffOverRms);

/// <param name="Floor">The copy floor of the same input files, measured interleaved with the Alloy runs so both see the
/// same machine.</param>
public sealed record MethodResult(
    BenchMethod Method,
    string AlloyStatus,
    string AlloyShape,
    Measurement? Floor,
    IReadOnlyList<Measurement> Alloy,
    string TorchStatus,
    IReadOnlyList<Measurement> Torch,
    Agreement? Agreement,
    string AgreementNote
)
{
    public Measurement? AlloyAt(int threads) => Alloy.FirstOrDefault(m => m.Threads == threads);

    public Measurement? AlloyAll => Alloy.MaxBy(m => m.Threads);

    public Measurement? TorchAll => Torch.MaxBy(m => m.Threads);
}

public sealed record SizeResult(
    ModelShape Shape,
    ModelFamily Family,
    string GenerationNote,
    IReadOnlyList<MethodResult> Methods,
    double Seconds
);

public sealed record BenchResults(
    BenchSettings Settings,
    Machine Machine,
    string? TorchVersion,
    string TorchNote,
    DateTimeOffset Started,
    double Seconds,
    IReadOnlyList<SizeResult> Sizes
);

/// <summary>Runs every column of every method at every size, each run in its own child process.</summary>
public sealed class Benchmark(BenchSettings settings, Action<string> log, Action<BenchResults>? sizeDone = null)
{
    private readonly string _runs = Path.Combine(settings.CacheFolder, "runs");

    public BenchResults Run()
    {
        var started = DateTimeOffset.Now;
        var clock = Stopwatch.StartNew();
        var machine = Machine.Describe(settings.CacheFolder);
        var torchVersion = Torch.Ensure(settings.TorchMode, log, out var torchNote);
        log(torchVersion is null ? $"PyTorch column: {torchNote}" : $"PyTorch column: torch {torchVersion} on CPU");
        var sizes = new List<SizeResult>();
        for (int i = 0; i < settings.Sizes.Count; i++)
        {
            sizes.Add(RunSize(settings.Sizes[i], torchVersion is not null, first: i == 0));
            // Report each finished size at once, so a long run that is stopped still leaves its figures.
            if (i < settings.Sizes.Count - 1)
                sizeDone?.Invoke(
                    new BenchResults(
                        settings,
                        machine,
                        torchVersion,
                        torchNote,
                        started,
                        clock.Elapsed.TotalSeconds,
                        sizes.ToList()
                    )
                );
        }
        return new BenchResults(settings, machine, torchVersion, torchNote, started, clock.Elapsed.TotalSeconds, sizes);
    }

    /// <summary>Generates (or finds cached) every size's models, and measures nothing.</summary>
    public void Prepare()
    {
        foreach (var shape in settings.Sizes)
        {
            log($"== {shape.Label}: {shape.Describe()}");
            var family = ModelFamily.Ensure(settings.CacheFolder, shape, settings.FineTunes, log);
            RecordGeneration(family);
        }
    }

    private string RecordGeneration(ModelFamily family)
    {
        // The generation time is worth reporting (it bounds how practical a size is), so it is kept with the cache.
        string record = Path.Combine(family.Root, "generation.txt");
        if (family.Generated > 0)
            File.WriteAllText(
                record,
                Format.F($"{family.Generated} model(s) generated in {family.GenerationSeconds:F0} s wall, ")
                    + Format.F($"{Environment.ProcessorCount} at a time")
            );
        string generation = File.Exists(record) ? File.ReadAllText(record).Trim() : "cached from an earlier run";
        return family.Generated == 0 ? $"cached; {generation}" : generation;
    }

    private SizeResult RunSize(ModelShape shape, bool torch, bool first)
    {
        var clock = Stopwatch.StartNew();
        log($"== {shape.Label}: {shape.Describe()}");
        var family = ModelFamily.Ensure(settings.CacheFolder, shape, settings.FineTunes, log);
        string generation = RecordGeneration(family);

        Directory.CreateDirectory(_runs);
        var results = new List<MethodResult>();
        foreach (var method in settings.Methods)
        {
            bool torchHere =
                torch
                && (
                    method.Implementation is not null
                    || settings.TorchForMissing switch
                    {
                        TorchForMissing.AllSizes => true,
                        TorchForMissing.FirstSize => first,
                        _ => false,
                    }
                );
            results.Add(
                RunMethod(
                    method,
                    family,
                    torchHere,
                    torch ? "not measured for a method Alloy lacks (--torch-missing)" : "skipped"
                )
            );
        }
        return new SizeResult(shape, family, generation, results, clock.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// How Alloy feeds this recipe's tensors to the method, from its plan: "chunked" (elementwise), "streamed"
    /// (statistics passes, then chunks) or "whole tensor" (some tensor merged in one piece by necessity).
    /// </summary>
    private static string Shape(string recipePath)
    {
        var diagnostics = new Diagnostics();
        var recipe = Recipes.RecipeParser.ParseFile(recipePath, diagnostics);
        using var models = Planning.ModelSet.Open(recipe, diagnostics);
        var plans = Planning
            .Planner.Create(recipe, models, new Planning.PlanOptions(), diagnostics)
            .Jobs.Where(j => !j.IsCopy)
            .Select(j => j.Method!.Chunking(j.Info!, j.Output.Shape))
            .ToList();
        return plans.Any(p => p is null) ? "whole tensor"
            : plans.Any(p => p!.NeedsStatistics || p.RowLength > 0) ? "streamed"
            : "chunked";
    }

    private MethodResult RunMethod(BenchMethod method, ModelFamily family, bool torch, string torchSkipped)
    {
        var inputs = method.Models(family).Select(ModelFamily.WeightsFile).ToList();
        var implementation = method.Implementation;
        string alloyStatus = "ok",
            torchStatus = torch ? "ok" : torchSkipped;
        string shape = "";
        var alloy = new List<Measurement>();
        Measurement? floor = null;
        var torchRuns = new List<Measurement>();
        string alloyKept = Path.Combine(_runs, $"alloy-{method.Name}"),
            torchKept = Path.Combine(_runs, $"torch-{method.Name}.safetensors");

        if (implementation is null)
        {
            alloyStatus = "not available";
            log(
                $"-- {method.Name}: not registered in Alloy (not available); its Alloy columns will be measured once "
                    + $"it is"
            );
        }
        else
        {
            string recipe = Path.Combine(_runs, $"{method.Name}.yml");
            File.WriteAllText(recipe, method.Recipe(family));
            shape = Shape(recipe);
            // Each repetition runs the copy floor and then Alloy at each thread count, so a ratio compares runs made
            // seconds apart: on a shared machine, conditions drift over minutes.
            var floorRuns = new List<Measurement>();
            var alloyRuns = settings.Threads.ToDictionary(t => t, _ => new List<Measurement>());
            try
            {
                for (int rep = 0; rep < settings.Repeat; rep++)
                {
                    bool last = rep == settings.Repeat - 1;
                    floorRuns.Add(
                        RunOnce(inputs, 1, output => MeasureFloor(inputs, output), keepAs: null, file: false)
                    );
                    foreach (int threads in settings.Threads)
                        alloyRuns[threads]
                            .Add(
                                RunOnce(
                                    inputs,
                                    threads,
                                    output => MeasureAlloy(recipe, output, threads),
                                    last && threads == settings.Threads.Max() ? alloyKept : null,
                                    file: false
                                )
                            );
                }
                floor = Median($"{method.Name}: copy floor ({inputs.Count} inputs)", floorRuns);
                foreach (int threads in settings.Threads)
                    alloy.Add(Median($"{method.Name}: alloy, {threads} thread(s)", alloyRuns[threads]));
            }
            catch (ChildFailed e)
            {
                alloyStatus = $"failed: {e.Message}";
                log($"   alloy {method.Name} failed: {e.Message}");
            }
        }

        if (torch)
        {
            foreach (int threads in settings.TorchThreads)
            {
                try
                {
                    var runs = new List<Measurement>();
                    for (int rep = 0; rep < settings.TorchRepeat; rep++)
                    {
                        bool keep = rep == settings.TorchRepeat - 1 && threads == settings.TorchThreads.Max();
                        runs.Add(
                            RunOnce(
                                inputs,
                                threads,
                                output => MeasureTorch(method, family, output, threads),
                                keep ? torchKept : null,
                                file: true
                            )
                        );
                        if (runs[^1].Stopped)
                            break;
                    }
                    torchRuns.Add(Median($"{method.Name}: pytorch, {threads} thread(s)", runs));
                }
                catch (ChildFailed e)
                {
                    torchStatus = $"failed: {e.Message}";
                    log($"   pytorch {method.Name} failed: {e.Message}");
                    break;
                }
            }
        }

        Agreement? agreement = null;
        string note = "";
        if (method.Random)
            note = "random masks (not comparable)";
        else if (torchRuns.Any(r => r.Stopped))
            note = "PyTorch stopped at --torch-limit";
        else if (Directory.Exists(alloyKept) && File.Exists(torchKept))
        {
            var compared = ChildProcess.Run(
                Torch.Python,
                [Torch.Script, "--compare", ModelFamily.WeightsFile(alloyKept), torchKept]
            );
            if (compared.Succeeded)
            {
                var json = JsonNode.Parse(compared.Stdout)!;
                agreement = new Agreement(
                    (double)json["equal"]!,
                    (double)json["within_1ulp"]!,
                    (double)json["max_diff_over_rms"]!
                );
                log(
                    Format.F($"   agreement with pytorch: {agreement.Equal:P2} of elements equal, ")
                        + Format.F(
                            $"{agreement.WithinOneUlp:P2} within 1 ulp, max |Δ| {agreement.MaxDiffOverRms:P2} of RMS"
                        )
                );
            }
            else
                note = $"comparison failed: {compared.FirstError}";
        }
        Delete(alloyKept);
        Delete(torchKept);
        return new MethodResult(method, alloyStatus, shape, floor, alloy, torchStatus, torchRuns, agreement, note);
    }

    /// <summary>
    /// One measured run: the previous output removed and the page cache prepared (outside the timed region), then the
    /// child. Its output is moved to <paramref name="keepAs"/> when given, else deleted.
    /// </summary>
    private Measurement RunOnce(
        IReadOnlyList<string> inputs,
        int threads,
        Func<string, (ChildResult Child, double? Seconds)> measure,
        string? keepAs,
        bool file
    )
    {
        string output = Path.Combine(_runs, file ? "output.safetensors" : "output");
        long inputBytes = inputs.Sum(p => new FileInfo(p).Length);
        Delete(output);
        PageCache.Prepare(settings.Cache, inputs);
        var (child, seconds) = measure(output);
        if (child.Stopped)
        {
            Delete(output);
            return new Measurement(
                threads,
                child.WallSeconds,
                inputBytes,
                0,
                child.PeakRss,
                child.PeakAnon,
                child.PeakFile,
                child.UserSeconds + child.SystemSeconds,
                child.OtherCpuSeconds,
                Stopped: true
            );
        }
        if (!child.Succeeded)
            throw new ChildFailed(child.FirstError);
        long outputBytes = File.Exists(output)
            ? new FileInfo(output).Length
            : Directory.EnumerateFiles(output, "*.safetensors").Sum(f => new FileInfo(f).Length);
        var run = new Measurement(
            threads,
            seconds ?? child.WallSeconds,
            inputBytes,
            outputBytes,
            child.PeakRss,
            child.PeakAnon,
            child.PeakFile,
            child.UserSeconds + child.SystemSeconds,
            child.OtherCpuSeconds
        );
        if (keepAs is not null)
        {
            Delete(keepAs);
            if (file)
                File.Move(output, keepAs);
            else
                Directory.Move(output, keepAs);
        }
        else
            Delete(output);
        return run;
    }

    /// <summary>The run with the median time, logged with the spread of all runs.</summary>
    private Measurement Median(string what, List<Measurement> runs)
    {
        var sorted = runs.OrderBy(r => r.Seconds).ToList();
        // A run stopped at the time limit sorts last (it took at least the limit), and ends the repeats.
        var median = sorted[sorted.Count / 2];
        if (median.Stopped)
            log(Format.F($"   {what}: stopped after {median.Seconds:F0} s (--torch-limit)"));
        var each = runs.Select(r => r.Seconds.ToString("F2", CultureInfo.InvariantCulture));
        string spread = runs.Count > 1 ? $" (runs {string.Join(", ", each)} s)" : "";
        log(
            Format.F($"   {what}: {median.Seconds:F2} s{spread}, {median.GigabytesPerSecond:F2} GB/s, peak RSS ")
                + Format.F($"{Format.Bytes(median.PeakRss)} (anon {Format.Bytes(median.PeakAnon)}, file ")
                + Format.F($"{Format.Bytes(median.PeakFile)}), CPU {median.CpuUse:F2}, other processes ")
                + Format.F($"{median.OtherCores:F2} cores")
        );
        return median;
    }

    private static (ChildResult, double?) MeasureFloor(IReadOnlyList<string> inputs, string output) =>
        (
            ChildProcess.Run(Path.Combine(AppContext.BaseDirectory, "Alloy.Bench"), ["copy-floor", output, .. inputs]),
            null
        );

    private static (ChildResult, double?) MeasureAlloy(string recipe, string output, int threads) =>
        (
            ChildProcess.Run(
                Path.Combine(AppContext.BaseDirectory, "Alloy.Cli"),
                ["merge", recipe, output, "--threads", threads.ToString(CultureInfo.InvariantCulture), "--quiet"]
            ),
            null
        );

    /// <summary>PyTorch's time is the script's own, from opening the inputs to closing the output: interpreter start-up
    /// and `import torch` (about a second) are left out, which favours the PyTorch column.</summary>
    private (ChildResult, double?) MeasureTorch(BenchMethod method, ModelFamily family, string output, int threads)
    {
        string job = Path.Combine(_runs, $"{method.Name}.torch.json");
        File.WriteAllText(job, method.TorchJob(family, output, threads, seed: 0).ToJsonString());
        string count = threads.ToString(CultureInfo.InvariantCulture);
        var child = ChildProcess.Run(
            Torch.Python,
            [Torch.Script, job],
            new Dictionary<string, string> { ["OMP_NUM_THREADS"] = count, ["MKL_NUM_THREADS"] = count },
            limitSeconds: settings.TorchLimitSeconds > 0 ? settings.TorchLimitSeconds : null
        );
        if (!child.Succeeded)
            return (child, null);
        var report = JsonNode.Parse(child.Stdout.Trim().Split('\n')[^1])!;
        return (child, (double)report["seconds"]!);
    }

    private static void Delete(string path)
    {
        if (Directory.Exists(path))
            Directory.Delete(path, recursive: true);
        else if (File.Exists(path))
            File.Delete(path);
    }

    private sealed class ChildFailed(string message) : Exception(message);
}
