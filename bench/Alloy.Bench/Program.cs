using System.CommandLine;
using System.Globalization;
using System.Text.Json;

namespace Alloy.Bench;

/// <summary>
/// <c>dotnet run -c Release --project bench/Alloy.Bench -- [options]</c>: measures Alloy against the copy floor and
/// PyTorch and rewrites docs/performance.md. The hidden <c>generate</c> and <c>copy-floor</c> commands are the child
/// processes it starts.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var sizes = new Option<string>("--params")
        {
            Description = "Parameters per model, one or more sizes (e.g. 0.25B or 0.25B,1B).",
            DefaultValueFactory = _ => "0.25B",
        };
        var models = new Option<int>("--models")
        {
            Description = "Fine-tunes besides the base model.",
            DefaultValueFactory = _ => 3,
        };
        var methods = new Option<string>("--methods")
        {
            Description = $"Methods to measure (default all: {string.Join(",", BenchMethod.All.Select(m => m.Name))}).",
            DefaultValueFactory = _ => "all",
        };
        var threads = new Option<string>("--threads")
        {
            Description = "Alloy thread counts ('all' = every core).",
            DefaultValueFactory = _ => "1,all",
        };
        var torchThreads = new Option<string>("--torch-threads")
        {
            Description = "PyTorch thread counts.",
            DefaultValueFactory = _ => "all",
        };
        var repeat = new Option<int>("--repeat")
        {
            Description = "Runs of the copy floor and of each Alloy cell; the median is reported.",
            DefaultValueFactory = _ => 3,
        };
        var torchRepeat = new Option<int>("--torch-repeat")
        {
            Description = "Runs of each PyTorch cell (the slowest column); the median is reported.",
            DefaultValueFactory = _ => 1,
        };
        var cacheDir = new Option<string>("--cache-dir")
        {
            Description = "Where generated models are kept between runs, and where merges write.",
            DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "alloy-bench"),
        };
        var pageCache = new Option<string>("--page-cache")
        {
            Description =
                "cold (drop the page cache before every run; needs root), warm (read the inputs first), or auto "
                + "(cold when possible).",
            DefaultValueFactory = _ => "auto",
        };
        var torch = new Option<string>("--torch")
        {
            Description = "auto (install Debian's python3-torch with apt if missing) or skip.",
            DefaultValueFactory = _ => "auto",
        };
        var torchLimit = new Option<double>("--torch-limit")
        {
            Description = "Stop a PyTorch run after this many seconds and report it as a lower bound (0: no limit).",
            DefaultValueFactory = _ => 0,
        };
        var torchMissing = new Option<string>("--torch-missing")
        {
            Description =
                "For methods Alloy lacks, run PyTorch at the first size only (first), at every size (all), or never "
                + "(skip).",
            DefaultValueFactory = _ => "first",
        };
        var prepare = new Option<bool>("--prepare")
        {
            Description = "Only generate (or find cached) the models of every size, and exit.",
        };
        var report = new Option<string?>("--report")
        {
            Description =
                "Render the results JSON of an earlier run (printed at its end) into --out, and measure nothing.",
            HelpName = "RESULTS.json",
        };
        var output = new Option<string?>("--out")
        {
            Description =
                "The Markdown file to rewrite (default: docs/performance.md of the repository around the current "
                + "folder; 'none' only prints).",
        };
        var root = new RootCommand(
            "Measures Alloy's merges against the copy floor and PyTorch, and writes docs/performance.md."
        )
        {
            sizes,
            models,
            methods,
            threads,
            torchThreads,
            repeat,
            torchRepeat,
            cacheDir,
            pageCache,
            torch,
            torchLimit,
            torchMissing,
            prepare,
            report,
            output,
        };
        root.SetAction(parse =>
        {
            if (parse.GetValue(report) is { } saved)
            {
                var earlier = JsonSerializer.Deserialize<BenchResults>(File.ReadAllText(saved))
                    ?? throw new ArgumentException($"{saved}: empty");
                string target = DocumentPath(parse.GetValue(output))
                    ?? throw new ArgumentException("--report needs --out or a repository to write into");
                WriteDocument(target, Report.Document(earlier));
                Console.WriteLine(Report.Tables(earlier));
                Console.WriteLine($"wrote {target}");
                return 0;
            }
            var settings = Settings(
                args,
                parse.GetValue(sizes)!,
                parse.GetValue(models),
                parse.GetValue(methods)!,
                parse.GetValue(threads)!,
                parse.GetValue(torchThreads)!,
                parse.GetValue(repeat),
                parse.GetValue(torchRepeat),
                parse.GetValue(cacheDir)!,
                parse.GetValue(pageCache)!,
                parse.GetValue(torch)!,
                parse.GetValue(torchLimit),
                parse.GetValue(torchMissing)!
            );
            if (parse.GetValue(prepare))
            {
                new Benchmark(settings, Log).Prepare();
                return 0;
            }
            string? document = DocumentPath(parse.GetValue(output));
            var results = new Benchmark(settings, Log, partial =>
            {
                if (document is null)
                    return;
                WriteDocument(document, Report.Document(partial));
                Log($"wrote {document} with the sizes measured so far");
            }).Run();

            Console.WriteLine();
            Console.WriteLine(Report.Tables(results));
            Console.WriteLine(Format.F($"benchmark took {results.Seconds / 60:F1} min"));
            string json = Path.Combine(settings.CacheFolder, $"results-{results.Started:yyyyMMdd-HHmmss}.json");
            File.WriteAllText(
                json,
                JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true })
            );
            Console.WriteLine($"raw results: {json}");
            if (document is not null)
            {
                WriteDocument(document, Report.Document(results));
                Console.WriteLine($"wrote {document}");
            }
            return 0;
        });

        var generate = new Command("generate") { Hidden = true };
        var folder = new Argument<string>("folder");
        var fineTune = new Argument<int>("fine-tune");
        var spec = new Argument<string>("spec");
        generate.Add(folder);
        generate.Add(fineTune);
        generate.Add(spec);
        generate.SetAction(parse =>
        {
            ModelFamily.Generate(parse.GetValue(folder)!, parse.GetValue(fineTune), parse.GetValue(spec)!);
            return 0;
        });

        var copyFloor = new Command("copy-floor") { Hidden = true };
        var floorOut = new Argument<string>("out");
        var floorInputs = new Argument<string[]>("inputs") { Arity = ArgumentArity.OneOrMore };
        copyFloor.Add(floorOut);
        copyFloor.Add(floorInputs);
        copyFloor.SetAction(parse =>
        {
            CopyFloor.Run(parse.GetValue(floorOut)!, parse.GetValue(floorInputs)!);
            return 0;
        });

        var remerge = new Command(
            "remerge",
            "Measures re-merges into a model in memory (a merge → evaluate loop) on the bundled example models and "
                + "generated ones, and writes their section of docs/performance.md."
        );
        var remergeSizes = new Option<string>("--params")
        {
            Description =
                "Sizes of generated models besides the bundled ones (e.g. 0.25B; 'none' for the bundled only).",
            DefaultValueFactory = _ => "0.25B",
        };
        var remergeRepeat = new Option<int>("--repeat")
        {
            Description = "Candidates re-merged per method (the median is reported).",
            DefaultValueFactory = _ => 5,
        };
        remerge.Add(remergeSizes);
        remerge.Add(remergeRepeat);
        remerge.Add(cacheDir);
        remerge.Add(output);
        remerge.SetAction(parse =>
        {
            string cache = parse.GetValue(cacheDir)!;
            Directory.CreateDirectory(cache);
            var repository = RepositoryRoot()
                ?? throw new ArgumentException(
                    "remerge needs the repository (its examples/models) around the current folder"
                );
            var examples = Path.Combine(repository, "examples", "models");
            var families = new List<(string, string, IReadOnlyList<string>)>
            {
                (
                    "bundled examples (4 × 0.1 M)",
                    Path.Combine(examples, "base"),
                    [.. Enumerable.Range(1, 3).Select(k => Path.Combine(examples, $"finetune-{k}"))]
                ),
            };
            foreach (
                var label in parse
                    .GetValue(remergeSizes)!
                    .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Where(l => l != "none")
            )
            {
                var family = ModelFamily.Ensure(cache, ModelShape.For(label, ModelShape.ParseCount(label)), 3, Log);
                families.Add(
                    (
                        Format.F($"generated ({1 + family.FineTunes.Count} × {family.Shape.Parameters / 1e6:F0} M)"),
                        family.Base,
                        family.FineTunes
                    )
                );
            }
            string section = Remerge.Run(families, parse.GetValue(remergeRepeat), cache, Log);
            Console.WriteLine(section);
            if (DocumentPath(parse.GetValue(output)) is { } document)
            {
                File.WriteAllText(
                    document,
                    Remerge.WithSection(File.Exists(document) ? File.ReadAllText(document) : "", section)
                );
                Console.WriteLine($"wrote {document}");
            }
            return 0;
        });

        root.Add(generate);
        root.Add(copyFloor);
        root.Add(remerge);
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            Console.Error.WriteLine($"error: {parsed.Errors[0].Message} (see --help)");
            return 2;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }

    private static BenchSettings Settings(
        string[] args,
        string sizes,
        int fineTunes,
        string methods,
        string threads,
        string torchThreads,
        int repeat,
        int torchRepeat,
        string cacheDir,
        string pageCache,
        string torch,
        double torchLimit,
        string torchMissing
    )
    {
        if (!(torchLimit >= 0))
            throw new ArgumentException("--torch-limit must be 0 (no limit) or a number of seconds");
        if (fineTunes < 2)
            throw new ArgumentException("--models: model_stock needs at least 2 fine-tunes; give 2 or more");
        if (repeat < 1 || torchRepeat < 1)
            throw new ArgumentException("--repeat and --torch-repeat must be 1 or more");
        var shapes = sizes
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(label => ModelShape.For(label, ModelShape.ParseCount(label)))
            .ToList();
        Directory.CreateDirectory(cacheDir);
        bool canDrop = PageCache.CanDrop();
        var (mode, note) = pageCache switch
        {
            "cold" when !canDrop => throw new ArgumentException(
                "--page-cache cold: cannot write /proc/sys/vm/drop_caches (run as root, or use warm)"
            ),
            "cold" => (CacheMode.Cold, ""),
            "warm" => (CacheMode.Warm, "(Chosen with --page-cache warm.)"),
            "auto" when canDrop => (CacheMode.Cold, ""),
            "auto" => (
                CacheMode.Warm,
                "(The page cache could not be dropped here: not root, or /proc/sys is read-only.)"
            ),
            _ => throw new ArgumentException($"--page-cache: '{pageCache}' is not cold, warm or auto"),
        };
        var torchMode = torch switch
        {
            "auto" => TorchMode.Auto,
            "skip" => TorchMode.Skip,
            _ => throw new ArgumentException($"--torch: '{torch}' is not auto or skip"),
        };
        var missing = torchMissing switch
        {
            "first" => TorchForMissing.FirstSize,
            "all" => TorchForMissing.AllSizes,
            "skip" => TorchForMissing.Skip,
            _ => throw new ArgumentException($"--torch-missing: '{torchMissing}' is not first, all or skip"),
        };
        string command =
            "dotnet run -c Release --project bench/Alloy.Bench --" + string.Concat(args.Select(a => " " + Quote(a)));
        return new BenchSettings(
            shapes,
            fineTunes,
            BenchMethod.Select(methods),
            ThreadCounts(threads, "--threads"),
            ThreadCounts(torchThreads, "--torch-threads"),
            Path.GetFullPath(cacheDir),
            mode,
            note,
            repeat,
            torchRepeat,
            torchMode,
            missing,
            command,
            torchLimit
        );
    }

    private static IReadOnlyList<int> ThreadCounts(string text, string option)
    {
        var counts = new SortedSet<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (part == "all")
                counts.Add(Environment.ProcessorCount);
            else if (int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0)
                counts.Add(n);
            else
                throw new ArgumentException($"{option}: '{part}' is not a thread count or 'all'");
        }
        if (counts.Count == 0)
            throw new ArgumentException($"{option}: give at least one thread count");
        return counts.ToList();
    }

    /// <summary>
    /// docs/performance.md of the repository (the folder with Alloy.sln) around the current folder, unless told
    /// otherwise.
    /// </summary>
    private static string? DocumentPath(string? option)
    {
        if (option == "none")
            return null;
        if (option is not null)
            return Path.GetFullPath(option);
        if (RepositoryRoot() is { } root)
            return Path.Combine(root, "docs", "performance.md");
        Log("no Alloy.sln above the current folder, so docs/performance.md is not written (pass --out FILE)");
        return null;
    }

    /// <summary>The repository around the current folder (the folder holding Alloy.sln), or null.</summary>
    private static string? RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Alloy.sln")))
                return dir.FullName;
        return null;
    }

    private static string Quote(string arg) =>
        arg.Length > 0 && arg.All(c => char.IsLetterOrDigit(c) || "-_.,/=:".Contains(c)) ? arg : $"'{arg}'";

    /// <summary>
    /// Writes the main benchmark's document, keeping the re-merge section an earlier <c>remerge</c> run wrote.
    /// </summary>
    private static void WriteDocument(string path, string document)
    {
        var kept = Remerge.SectionOf(File.Exists(path) ? File.ReadAllText(path) : null);
        File.WriteAllText(path, kept is null ? document : Remerge.WithSection(document, kept));
    }

    private static void Log(string line) => Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {line}");
}
