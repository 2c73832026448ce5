using System.Diagnostics;
using System.Globalization;
using Alloy.Bench.Quality;
using Alloy.Runtime.Models;

// The merge-quality benchmark: merges the tiny experts of examples/experts with every data-free method, chooses each
// method's coefficients on the validation items by its paper's grid, scores the test items, and rewrites
// docs/quality.md and its plots (docs/quality/*.png).
// Usage: dotnet run -c Release --project bench/Alloy.Bench.Quality -- [--experts DIR] [--out FILE|none] [--quick]
//        dotnet run -c Release --project bench/Alloy.Bench.Quality -- barrier DIR HELDOUT.jsonl [FIGURE.png]
//        (linear mode connectivity before and after alignment; bench/alignment-barrier.sh runs it)
if (args is ["barrier", .. var barrierArgs])
    return ModeConnectivity.Run(barrierArgs);
var options = new Dictionary<string, string>
{
    ["--experts"] = "",
    ["--out"] = "",
    ["--quick"] = "no",
};
for (int i = 0; i < args.Length; i++)
{
    if (args[i] == "--quick")
    {
        options["--quick"] = "yes";
        continue;
    }
    if (!options.ContainsKey(args[i]) || i + 1 >= args.Length)
        throw new ArgumentException($"unknown option '{args[i]}' (options: --experts DIR, --out FILE|none, --quick)");
    options[args[i]] = args[++i];
}
string repository = FindRepository()
    ?? throw new ArgumentException("run it inside the repository (no Alloy.sln above the current folder)");
string expertsRoot = options["--experts"] is { Length: > 0 } e ? e : Path.Combine(repository, "examples", "experts");
string? document = options["--out"] switch
{
    "none" => null,
    "" => Path.Combine(repository, "docs", "quality.md"),
    var o => Path.GetFullPath(o),
};
bool quick = options["--quick"] == "yes";
string command =
    "dotnet run -c Release --project bench/Alloy.Bench.Quality --" + string.Concat(args.Select(a => " " + a));

var clock = Stopwatch.StartNew();
void Log(string line) => Console.Error.WriteLine($"[{clock.Elapsed:mm\\:ss}] {line}");
var experts = ExpertSet.Load(expertsRoot);
var scorer = new Scorer(experts);
string scratch = Directory.CreateTempSubdirectory("alloy-quality-").FullName;
var search = new Search(
    experts,
    scorer,
    new Alloy.MergeOptions
    {
        Statistics = new Alloy.Runtime.Merging.StatisticsCache(Path.Combine(scratch, "statistics")),
        Learner = new Alloy.Runtime.Merging.MergeLearner(Path.Combine(scratch, "statistics")),
    }
);
int n = experts.Tasks.Count;
var all = Enumerable.Range(0, n).ToList();
Log($"{n} experts ({string.Join(", ", experts.Tasks.Select(t => t.Name))}) from {expertsRoot}");

// 1. The base and each expert on every task; how far each expert moved from the base.
var baseModel = LlamaModel.Load(experts.Base);
var baseScores = scorer.Score(baseModel, test: true);
var expertScores = experts.Experts.Select(f => scorer.Score(LlamaModel.Load(f), test: true)).ToList();
var own = Enumerable.Range(0, n).Select(t => expertScores[t][t]).ToArray();
var norms = experts.Experts.Select(f => Norms.Relative(baseModel, LlamaModel.Load(f))).ToList();
var cosines = Norms.Cosines(baseModel, [.. experts.Experts.Select(f => LlamaModel.Load(f))]);
Log(
    $"experts on their own tasks: {string.Join(", ", own.Select(Percent))}; base: "
        + $"{string.Join(", ", baseScores.Select(Percent))}"
);

// 2. Every method on all experts.
var results = new List<MethodResult>();
foreach (var grid in Grids.Methods(quick).Concat(Grids.DataAware(expertsRoot, quick)))
{
    var result = search.Run(grid, all);
    results.Add(result);
    Log(
        $"{grid.Name}: {Percent(Normalized(result.Test, all))} normalised ({result.ChosenShown}; {result.Points} "
            + $"points, {result.Seconds:F1} s)"
    );
}
var emrTaskModels = search.EmrTaskModels(all, scratch);
Log($"EMR task-specific models: {Percent(Normalized(emrTaskModels, all))} normalised");

// 3. Pairs of experts: the methods that take two models, and the main ones.
string[] pairMethods = ["linear", "task_arithmetic", "ties", "dare_ties", "magmax", "emr", "tsv_m", "iso_c"];
var pairGrids = Grids
    .Methods(quick)
    .Where(g => pairMethods.Contains(g.Method))
    .Concat(Grids.PairMethods(quick))
    .ToList();
var pairs = (from i in all from j in all where i < j select (IReadOnlyList<int>)[i, j]).ToList();
var pairResults = pairGrids.ToDictionary(g => g.Method, _ => new List<MethodResult>());
foreach (var pair in pairs)
{
    foreach (var grid in pairGrids)
        pairResults[grid.Method].Add(search.Run(grid, pair));
    Log(
        $"pair {experts.Tasks[pair[0]].Name} + {experts.Tasks[pair[1]].Name}: "
            + string.Join(
                ", ",
                pairGrids.Select(g => $"{g.Method} {Percent(Normalized(pairResults[g.Method][^1].Test, pair))}")
            )
    );
}

// 4. Sweeps: λ for task arithmetic and TIES (all experts), DARE's drop rate on each expert alone, the number of
// experts.
var lambdaGrid = Grids.Methods(false).Single(g => g.Method == "task_arithmetic");
var taCurve = search.Curve(lambdaGrid, all);
string tiesDensity = results.Single(r => r.Method == "ties").Chosen.Split(',')[0];
var tiesGrid = Grids.Methods(false).Single(g => g.Method == "ties");
tiesGrid = tiesGrid with
{
    Points = [.. tiesGrid.Points.Where(p => p.Label.StartsWith(tiesDensity + ",", StringComparison.Ordinal))],
};
var tiesCurve = search.Curve(tiesGrid, all);
double[] drops = quick ? [0, 0.5, 0.9] : [0, 0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99];
var dareGrid = new MethodGrid(
    "dare_linear",
    "DARE",
    BaseUse.Shared,
    [
        .. drops.Select(d => new GridPoint(
            $"drop {d}",
            new Dictionary<string, Alloy.Recipes.ParameterValue> { ["lambda"] = 1.0 },
            new Dictionary<string, Alloy.Recipes.ParameterValue> { ["weight"] = 1.0, ["density"] = 1 - d }
        )),
    ],
    "one expert, λ 1, L1 rescale"
);
var dareCurves = all.Select(t => search.Curve(dareGrid, [t]).Select(c => c.Test[t] / own[t]).ToList()).ToList();

// One expert scaled, base + λ·τ: how much of its skill survives the scale that averaging k experts gives it (1/k).
double[] scales = quick ? [0.2, 0.5, 1.0] : [0.2, 0.33, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0];
var scaleGrid = new MethodGrid(
    "task_arithmetic",
    "task arithmetic",
    BaseUse.Shared,
    [
        .. scales.Select(l => new GridPoint(
            $"λ {l}",
            new Dictionary<string, Alloy.Recipes.ParameterValue> { ["lambda"] = l },
            new Dictionary<string, Alloy.Recipes.ParameterValue> { ["weight"] = 1.0 }
        )),
    ],
    "one expert"
);
var scaleCurves = all.Select(t => search.Curve(scaleGrid, [t]).Select(c => c.Test[t] / own[t]).ToList()).ToList();
var bySize = new List<(int Size, double TaskArithmetic, double Ties)>();
for (int k = 2; k <= n; k++)
{
    var subsets =
        k == 2 ? pairs
        : k == n ? [all]
        :
        [
            .. Enumerable
                .Range(0, n)
                .Select(s => (IReadOnlyList<int>)[.. Enumerable.Range(0, k).Select(j => (s + j) % n).Order()]),
        ];
    double Mean(string method, IReadOnlyList<MethodResult>? known)
    {
        var grid = Grids.Methods(quick).Single(g => g.Method == method);
        return subsets
            .Select((subset, i) => Normalized((known?[i] ?? search.Run(grid, subset)).Test, subset))
            .Average();
    }
    bySize.Add(
        (
            k,
            Mean(
                "task_arithmetic",
                k == 2 ? pairResults["task_arithmetic"]
                    : k == n ? [results.Single(r => r.Method == "task_arithmetic")]
                    : null
            ),
            Mean(
                "ties",
                k == 2 ? pairResults["ties"]
                    : k == n ? [results.Single(r => r.Method == "ties")]
                    : null
            )
        )
    );
    Log(
        $"{k} experts: task arithmetic {Percent(bySize[^1].TaskArithmetic)}, TIES {Percent(bySize[^1].Ties)} normalised"
    );
}

// 5. The LoRA experts (models/lora-TASK): each alone, merged as task vectors in the full weight space by the main
// methods, and merged as adapters by alloy merge-adapters' combination types.
Report.LoraInputs? lora = null;
if (experts.Adapters is { } adapters)
{
    var loraScores = adapters.Select(a => scorer.Score(AdapterSearch.Applied(experts.Base, a), test: true)).ToList();
    Log($"LoRA experts on their own tasks: {string.Join(", ", all.Select(t => Percent(loraScores[t][t])))}");
    double LoraNormalized(double[] scores) => all.Average(t => scores[t] / loraScores[t][t]);
    var loraSearch = new Search(experts.WithLoraExperts(), scorer);
    var full = new List<MethodResult>();
    foreach (var grid in Grids.Methods(quick).Where(g => Grids.OnLoraExperts.Contains(g.Method)))
    {
        full.Add(loraSearch.Run(grid, all));
        Log($"LoRA experts, {grid.Name} (full): {Percent(LoraNormalized(full[^1].Test))} normalised");
    }
    var adapterSearch = new AdapterSearch(experts, scorer, scratch);
    var merged = new List<MethodResult>();
    foreach (var grid in Grids.Adapters(quick))
    {
        merged.Add(adapterSearch.Run(grid, adapters, all));
        Log(
            $"LoRA experts, {grid.Name} (adapter): {Percent(LoraNormalized(merged[^1].Test))} normalised "
                + $"({merged[^1].Chosen}; {merged[^1].Seconds:F1} s)"
        );
    }
    lora = new Report.LoraInputs(loraScores, full, merged);
}
Directory.Delete(scratch, recursive: true);

// 6. The report.
string figures = Path.Combine(Path.GetDirectoryName(document ?? Path.Combine(scratch, "x"))!, "quality");
if (document is not null)
{
    Plots.Lines(
        Path.Combine(figures, "lambda.png"),
        "Scaling the merged task vector (all experts)",
        "λ",
        "normalised accuracy (%)",
        [
            new(
                "task arithmetic",
                taCurve.Select(c => Number(c.Point.Globals["lambda"])).ToList(),
                taCurve.Select(c => Normalized(c.Test, all)).ToList()
            ),
            new(
                $"TIES ({tiesDensity})",
                tiesCurve.Select(c => Number(c.Point.Globals["lambda"])).ToList(),
                tiesCurve.Select(c => Normalized(c.Test, all)).ToList()
            ),
        ],
        [("experts", 1.0), ("base", Normalized(baseScores, all))]
    );
    Plots.Lines(
        Path.Combine(figures, "dare.png"),
        "DARE: dropping part of one expert's task vector",
        "drop rate (1 − density)",
        "own-task accuracy ÷ expert's (%)",
        [.. all.Select(t => new Plots.Series(experts.Tasks[t].Name, drops, dareCurves[t]))]
    );
    Plots.Lines(
        Path.Combine(figures, "scale.png"),
        "One expert's task vector scaled: base + λ·τ",
        "λ",
        "own-task accuracy ÷ expert's (%)",
        [.. all.Select(t => new Plots.Series(experts.Tasks[t].Name, scales, scaleCurves[t]))]
    );
    Plots.Lines(
        Path.Combine(figures, "experts.png"),
        "Merging more experts",
        "experts merged",
        "normalised accuracy (%)",
        [
            new(
                "task arithmetic",
                bySize.Select(s => (double)s.Size).ToList(),
                bySize.Select(s => s.TaskArithmetic).ToList()
            ),
            new("TIES", bySize.Select(s => (double)s.Size).ToList(), bySize.Select(s => s.Ties).ToList()),
        ]
    );
    Plots.Bars(
        Path.Combine(figures, "methods.png"),
        "Test accuracy per task, all experts merged",
        "accuracy (%)",
        [.. results.OrderByDescending(r => Normalized(r.Test, all)).Take(8).Select(r => r.Method)],
        [
            .. all.Select(t =>
                (
                    experts.Tasks[t].Name,
                    (IReadOnlyList<double>)
                        [.. results.OrderByDescending(r => Normalized(r.Test, all)).Take(8).Select(r => r.Test[t])]
                )
            ),
        ]
    );
}
var report = Report.Document(
    new Report.Inputs(
        command,
        experts,
        baseScores,
        expertScores,
        norms,
        cosines,
        results,
        emrTaskModels,
        pairs,
        pairResults,
        bySize,
        drops,
        dareCurves,
        scales,
        scaleCurves,
        scorer,
        clock.Elapsed,
        quick,
        lora
    )
);
if (document is null)
{
    Console.WriteLine(report);
}
else
{
    File.WriteAllText(document, Report.KeepAnalysis(File.Exists(document) ? File.ReadAllText(document) : null, report));
    Console.WriteLine($"wrote {document} and {figures}/*.png in {clock.Elapsed.TotalMinutes:F1} min");
}
return 0;

static string Percent(double value) =>
    double.IsNaN(value) ? "–" : (100 * value).ToString("F1", CultureInfo.InvariantCulture) + " %";

static double Number(Alloy.Recipes.ParameterValue value) => ((Alloy.Recipes.ParameterValue.Scalar)value).Value;

double Normalized(double[] scores, IReadOnlyList<int> subset) => subset.Average(t => scores[t] / own[t]);

static string? FindRepository()
{
    for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "Alloy.sln")))
            return dir.FullName;
    return null;
}
