using System.CommandLine;
using Alloy.Checkpoints;
using Alloy.Execution;

namespace Alloy.Cli;

/// <summary>
/// The options every merging command shares (mergekit's MergeOptions): added to a command once, read back into
/// <see cref="MergeOptions"/>. mergekit's device, pickle and write-scheduling flags are accepted and noted as no-ops.
/// </summary>
public sealed class MergeOptionSet
{
    private static readonly string[] IgnoredFlags =
    [
        "--cuda",
        "--no-cuda",
        "--low-cpu-memory",
        "--no-low-cpu-memory",
        "--lazy-unpickle",
        "--no-lazy-unpickle",
        "--read-to-gpu",
        "--no-read-to-gpu",
        "--multi-gpu",
        "--no-multi-gpu",
        "--gpu-rich",
        "--async-write",
        "--no-async-write",
        "--clone-tensors",
        "--no-clone-tensors",
        "--trust-remote-code",
        "--no-trust-remote-code",
        "--safe-serialization",
    ];

    private static readonly string[] IgnoredValueOptions =
    [
        "--device",
        "--write-threads",
        "--lora-merge-cache",
        "--lora-merge-dtype",
    ];

    private readonly Option<string> _shardSize = new("--out-shard-size")
    {
        Description = "Bytes per output shard, with an optional K/M/B suffix (10^3/10^6/10^9), as mergekit parses it.",
        DefaultValueFactory = _ => "5B",
        HelpName = "SIZE",
    };
    private readonly Option<ulong?> _seed = new("--random-seed")
    {
        Description =
            $"Seed for methods that draw random masks (default {Planning.PlanOptions.DefaultSeed}; output is "
            + $"byte-identical for a given seed).",
        HelpName = "N",
    };
    private readonly Option<bool> _allowCrimes = new("--allow-crimes")
    {
        Description = "Merge models whose config.json architectures differ.",
    };
    private readonly Option<bool> _copyTokenizer = new("--copy-tokenizer")
    {
        Description = "Copy the donor model's tokenizer files (the default).",
        Hidden = true,
    };
    private readonly Option<bool> _noCopyTokenizer = new("--no-copy-tokenizer")
    {
        Description = "Do not copy the donor model's tokenizer files.",
    };
    private readonly Option<bool> _writeCard = new("--write-model-card")
    {
        Description = "Write README.md and mergekit_config.yml (the default).",
        Hidden = true,
    };
    private readonly Option<bool> _noCard = new("--no-model-card", "--no-write-model-card")
    {
        Description = "Do not write the README.md model card and mergekit_config.yml.",
    };
    private readonly Option<int?> _threads = new("--threads", "-j", "--num-threads")
    {
        Description = "Worker threads (default: all cores). Output does not depend on it.",
        HelpName = "N",
    };
    private readonly Option<string?> _memoryLimit = new("--memory-limit")
    {
        Description =
            $"Working memory for merge buffers, e.g. 512M, 2G (default "
            + $"{ExecutionOptions.DefaultMemoryLimit >> 30}G). Elementwise and streamed methods (task-vector family, "
            + $"slerp, model_stock, ...) merge tensors of any size in chunks within it; a method that needs whole "
            + $"tensors (SVD family, karcher, ...) and needs more is refused when this is given (with the "
            + $"default it runs alone, with a warning).",
        HelpName = "SIZE",
    };
    private readonly Option<string[]> _plugins = new("--plugin")
    {
        Description =
            "A .NET assembly of merge methods (classes deriving from Alloy.Methods.MergeMethod) to use by name in "
            + "recipes; repeatable.",
        HelpName = "FILE.dll",
        AllowMultipleArgumentsPerToken = false,
    };
    private readonly Option<string?> _hubCache = new("--transformers-cache")
    {
        Description =
            "The Hugging Face cache folder to find model ids in (as mergekit's option; default: $HF_HUB_CACHE, "
            + "$HF_HOME/hub or ~/.cache/huggingface/hub).",
        HelpName = "DIR",
    };
    private readonly Option<string?> _statisticsCache = new("--statistics-cache")
    {
        Description =
            "Where statistics computed from a recipe's data: (Fisher, RegMean) are kept for the next merge "
            + "(default: $ALLOY_CACHE/statistics or ~/.cache/alloy/statistics).",
        HelpName = "DIR",
    };
    private readonly Option<bool> _overwrite = new("--overwrite")
    {
        Description = "Replace a non-empty output folder.",
    };
    private readonly Option<bool> _verbose = new("--verbose", "-v")
    {
        Description = "Show informational messages, and stack traces with errors.",
    };
    private readonly Option<bool> _quiet = new("--quiet", "-q") { Description = "No progress bar and no summary." };
    private readonly Option<bool> _noSafe = new("--no-safe-serialization") { Hidden = true };
    private readonly List<Option<bool>> _ignored = IgnoredFlags
        .Select(f => new Option<bool>(f) { Hidden = true })
        .ToList();
    private readonly List<Option<string?>> _ignoredValues = IgnoredValueOptions
        .Select(f => new Option<string?>(f) { Hidden = true })
        .ToList();

    public const string IgnoredFlagsHelp =
        "mergekit's device and memory flags (--cuda, --device, --lazy-unpickle, --low-cpu-memory, --multi-gpu, "
        + "--async-write, …) "
        + "are accepted and have no effect: Alloy merges on all CPU cores in bounded memory.";

    private readonly HashSet<Option> _left = [];

    /// <summary>
    /// The options of <paramref name="use"/>: a plan writes nothing, so it has no output, card or progress options; a
    /// raw merge has no architectures to check.
    /// </summary>
    public MergeOptionSet(MergeOptionUse use = MergeOptionUse.Merge)
    {
        if (use == MergeOptionUse.Plan)
            _left.UnionWith([_writeCard, _noCard, _threads, _overwrite, _quiet]);
        if (use == MergeOptionUse.RawMerge)
            _left.Add(_allowCrimes);
    }

    public void AddTo(Command command)
    {
        foreach (
            var option in new Option[]
            {
                _shardSize,
                _seed,
                _allowCrimes,
                _copyTokenizer,
                _noCopyTokenizer,
                _writeCard,
                _noCard,
                _threads,
                _memoryLimit,
                _plugins,
                _hubCache,
                _statisticsCache,
                _overwrite,
                _verbose,
                _quiet,
                _noSafe,
            }
        )
            if (!_left.Contains(option))
                command.Add(option);
        _ignored.ForEach(command.Add);
        _ignoredValues.ForEach(command.Add);
    }

    /// <summary>
    /// <paramref name="options"/> with the runtime's data-aware parts: the statistics cache in
    /// <paramref name="statisticsFolder"/> (null: the default one) and AdaMerging's learner, both telling
    /// <paramref name="report"/> what they compute.
    /// </summary>
    public static MergeOptions WithRuntime(
        MergeOptions options,
        string? statisticsFolder,
        int threads,
        Action<string> report
    )
    {
        var runtime = new Runtime.RuntimeOptions { Threads = threads };
        string folder = statisticsFolder ?? Runtime.Merging.StatisticsCache.DefaultFolder;
        return options with
        {
            Statistics = new Runtime.Merging.StatisticsCache(folder, runtime, report),
            Learner = new Runtime.Merging.MergeLearner(folder, runtime, report),
        };
    }

    /// <summary>An option's value, or its type's default when this command does not have it.</summary>
    private T? Value<T>(ParseResult parse, Option<T> option) =>
        _left.Contains(option) ? default : parse.GetValue(option);

    public bool Verbose(ParseResult parse) => parse.GetValue(_verbose);

    public bool Quiet(ParseResult parse) => Value(parse, _quiet);

    public Diagnostics Diagnostics(ParseResult parse, TextWriter stderr) =>
        new()
        {
            OnWarning = w => stderr.WriteLine($"warning: {w}"),
            OnInfo = Verbose(parse) ? i => stderr.WriteLine($"info: {i}") : null,
        };

    /// <summary>
    /// Reads the options back (loading --plugin assemblies), printing a note for each mergekit flag that has no effect
    /// here.
    /// </summary>
    public MergeOptions Read(ParseResult parse, TextWriter stderr)
    {
        foreach (var plugin in parse.GetValue(_plugins) ?? [])
            Methods.MethodRegistry.LoadPlugin(plugin);
        if (parse.GetValue(_noSafe))
            throw new AlloyException(
                "--no-safe-serialization: Alloy writes safetensors only (PyTorch .bin output executes code when loaded)"
            );
        foreach (var flag in _ignored.Where(o => parse.GetResult(o) is { Implicit: false }))
            stderr.WriteLine(
                $"note: {flag.Name} has no effect in Alloy (merges run on all CPU cores in bounded memory)"
            );
        foreach (var option in _ignoredValues.Where(o => parse.GetResult(o) is { Implicit: false }))
            stderr.WriteLine($"note: {option.Name} has no effect in Alloy");

        int? threads = Value(parse, _threads);
        if (threads is < 1)
            throw new AlloyException($"--threads: {threads} is not a thread count; give 1 or more");
        var options = new MergeOptions
        {
            OutShardSize = ByteSize.Parse(parse.GetValue(_shardSize)!),
            Seed = parse.GetValue(_seed) ?? Planning.PlanOptions.DefaultSeed,
            AllowCrimes = Value(parse, _allowCrimes),
            CopyTokenizer = !parse.GetValue(_noCopyTokenizer),
            WriteModelCard = !Value(parse, _noCard),
            Overwrite = Value(parse, _overwrite),
            HubCache = parse.GetValue(_hubCache) is { } cache ? Path.GetFullPath(cache) : null,
            Execution = new ExecutionOptions
            {
                Threads = threads ?? Environment.ProcessorCount,
                MemoryLimitBytes = parse.GetValue(_memoryLimit) is { } limit
                    ? ByteSize.ParseMemory(limit, "--memory-limit")
                    : ExecutionOptions.DefaultMemoryLimit,
                StrictMemoryLimit = parse.GetValue(_memoryLimit) is not null,
            },
        };
        return WithRuntime(options, parse.GetValue(_statisticsCache), options.Execution.Threads, message =>
            stderr.WriteLine($"note: {message}")
        );
    }
}

/// <summary>Which command the merge options serve; each lists only the options that act on it.</summary>
public enum MergeOptionUse
{
    Merge,
    RawMerge,
    Plan,
}
