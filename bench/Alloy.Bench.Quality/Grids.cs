using Alloy.Adapters;
using Alloy.Recipes;

namespace Alloy.Bench.Quality;

/// <summary>One setting of a method's coefficients: its global and per-model parameter values.</summary>
public sealed record GridPoint(
    string Label,
    IReadOnlyDictionary<string, ParameterValue> Globals,
    IReadOnlyDictionary<string, ParameterValue> PerModel
);

/// <summary>
/// Which model a recipe names as <c>base_model</c>: none, the experts' shared base, or the first expert (slerp).
/// </summary>
public enum BaseUse
{
    None,
    Shared,
    FirstExpert,
}

/// <summary>
/// A method and the coefficients tried on the validation split, as its paper (or toolkit) searches them.
/// </summary>
public sealed record MethodGrid(
    string Method,
    string Family,
    BaseUse Base,
    IReadOnlyList<GridPoint> Points,
    string Source
)
{
    /// <summary>
    /// Per-model text values: this is replaced by each expert's task name (its data files).
    /// </summary>
    public const string ExpertPlaceholder = "{expert}";

    /// <summary>The row's name in the report: the method, or a variant of it ("adamerging, task-wise").</summary>
    public string? Title { get; init; }

    public string Name => Title ?? Method;

    /// <summary>
    /// The parameters whose value at <paramref name="point"/> is the smallest or largest the grid tries (among at least
    /// three), unless that is as far as the parameter goes (a density of 1): a choice there may be held back by the
    /// grid rather than found by it.
    /// </summary>
    public IReadOnlyList<string> AtEdge(GridPoint point)
    {
        static IEnumerable<(string Name, double Value)> Numbers(GridPoint p) =>
            p
                .Globals.Concat(p.PerModel)
                .Where(e => e.Value is ParameterValue.Scalar)
                .Select(e => (e.Key, ((ParameterValue.Scalar)e.Value).Value));
        var declaration = Methods.MethodRegistry.Find(Method)!.Declaration;
        return
        [
            .. Numbers(point)
                .Where(chosen =>
                {
                    var tried = Points
                        .SelectMany(Numbers)
                        .Where(n => n.Name == chosen.Name)
                        .Select(n => n.Value)
                        .Distinct()
                        .ToList();
                    var range = (declaration.Parameter(chosen.Name) as Methods.NumberParameter)?.Range;
                    bool atLimit = range is { } r && (chosen.Value == r.Minimum || chosen.Value == r.Maximum);
                    return tried.Count >= 3 && !atLimit && (chosen.Value == tried.Min() || chosen.Value == tried.Max());
                })
                .Select(n => n.Name)
                .Distinct(),
        ];
    }

    /// <summary>
    /// The recipe of one grid point over <paramref name="experts"/> (the base added as the method needs).
    /// </summary>
    public MergeRecipe Recipe(string sharedBase, IReadOnlyList<string> experts, GridPoint point)
    {
        // A name the method does not declare is a mistake in the grid, except the weight of 1 most methods take.
        var declaration = Methods.MethodRegistry.Find(Method)!.Declaration;
        bool Declared(string name) =>
            declaration.Parameter(name) is not null
            || (name == "weight" ? false : throw new InvalidOperationException($"{Method} has no parameter '{name}'"));
        var builder = new RecipeBuilder(Method).DType(Tensors.DType.F32);
        if (Base == BaseUse.Shared)
            builder.BaseModel(sharedBase);
        if (Base == BaseUse.FirstExpert)
            builder.BaseModel(experts[0]);
        foreach (var expert in experts)
        {
            var settings = new ParameterSettings();
            foreach (var (name, value) in point.PerModel.Where(p => Declared(p.Key)))
                settings[name] = value is ParameterValue.Text text
                    ? new ParameterValue.Text(text.Value.Replace(ExpertPlaceholder, Path.GetFileName(expert)))
                    : value;
            builder.Model(expert, settings);
        }
        foreach (var (name, value) in point.Globals.Where(p => Declared(p.Key)))
            builder.Parameter(name, value);
        return builder.Build();
    }
}

/// <summary>
/// The grids: every data-free method that applies to several experts, and the two-model methods for pairs.
/// </summary>
public static class Grids
{
    /// <summary>Ilharco et al.'s 0.1–1.0, widened to 1.5: one expert here keeps its skill at λ 0.9–1.1.</summary>
    private static readonly double[] SumLambdas = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5];

    /// <summary>
    /// For methods that average the agreeing task vectors (mergekit's TIES and DELLA): the paper's 0.8–1.8, widened to
    /// 5, since a mean of k agreeing task vectors needs about k times the scale a sum needs.
    /// </summary>
    private static readonly double[] MeanLambdas = [0.6, 1.0, 1.4, 1.8, 2.5, 3.0, 4.0, 5.0];

    private static Dictionary<string, ParameterValue> P(params (string Name, ParameterValue Value)[] values) =>
        values.ToDictionary(v => v.Name, v => v.Value, StringComparer.Ordinal);

    private static string L(params (string Name, object Value)[] values) =>
        string.Join(", ", values.Select(v => FormattableString.Invariant($"{v.Name} {v.Value}")));

    private static IReadOnlyList<GridPoint> One(params (string Name, ParameterValue Value)[] globals) =>
        [
            new GridPoint(
                globals.Length == 0
                    ? "defaults"
                    : string.Join(", ", globals.Select(g => $"{g.Name} {Format(g.Value)}")),
                P(globals),
                P(("weight", 1.0))
            ),
        ];

    private static string Format(ParameterValue value) =>
        value switch
        {
            ParameterValue.Scalar s => s.Value.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ParameterValue.Text t => t.Value,
            _ => value.ToString(),
        };

    /// <summary>λ alone (weights 1).</summary>
    private static IReadOnlyList<GridPoint> Lambdas(IEnumerable<double> lambdas, string name = "lambda") =>
        [.. lambdas.Select(l => new GridPoint(L((name, l)), P((name, l)), P(("weight", 1.0))))];

    /// <summary>Density × λ (weights 1), with extra per-model values.</summary>
    private static IReadOnlyList<GridPoint> DensityLambda(
        IEnumerable<double> densities,
        IEnumerable<double> lambdas,
        params (string Name, double Value)[] extra
    ) =>
        [
            .. from d in densities
            from l in lambdas
            select new GridPoint(
                L([("density", d), .. extra.Select(e => (e.Name, (object)e.Value)), ("lambda", l)]),
                P(("lambda", l)),
                P([("weight", 1.0), ("density", d), .. extra.Select(e => (e.Name, (ParameterValue)e.Value))])
            ),
        ];

    /// <summary>Methods for any number of experts (base + experts).</summary>
    public static IReadOnlyList<MethodGrid> Methods(bool quick)
    {
        double[] sum = quick ? [0.3, 0.6, 1.0] : SumLambdas,
            mean = quick ? [0.8, 1.2] : MeanLambdas;
        double[] densities = quick ? [0.2, 0.5] : [0.1, 0.2, 0.3, 0.5, 0.7, 1.0];
        double[] keeps = quick ? [0.3, 0.7] : [0.1, 0.3, 0.5, 0.7, 0.9, 1.0];
        double[] sumCoarse = quick ? [0.4, 1.0] : [0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5];
        return
        [
            new("linear", "averaging", BaseUse.None, One(), "uniform soup"),
            new(
                "task_arithmetic",
                "task arithmetic",
                BaseUse.Shared,
                Lambdas(sum),
                "λ 0.1 … 1.5 (Ilharco et al.'s 0.1–1, widened)"
            ),
            new(
                "ties",
                "TIES",
                BaseUse.Shared,
                DensityLambda(densities, mean),
                "density 0.1–1 × λ 0.6 … 5 (Yadav et al.'s 0.1–0.3 × 0.8–1.8, widened; mergekit's disjoint mean)"
            ),
            new(
                "dare_linear",
                "DARE",
                BaseUse.Shared,
                DensityLambda(keeps, sumCoarse),
                "keep 0.1–1 × λ 0.2 … 1.5 (Yu et al.)"
            ),
            new("dare_ties", "DARE", BaseUse.Shared, DensityLambda(keeps, sumCoarse), "keep 0.1–1 × λ 0.2 … 1.5"),
            new(
                "breadcrumbs",
                "Breadcrumbs",
                BaseUse.Shared,
                [
                    .. DensityLambda(quick ? [0.7] : [0.5, 0.7, 0.9, 0.98], sumCoarse, ("gamma", 0.01)),
                    .. quick ? [] : DensityLambda([0.5, 0.7, 0.9, 0.98], sumCoarse, ("gamma", 0.05)),
                ],
                "density 0.5–0.98 × γ 0.01, 0.05 × λ (Davari & Belilovsky)"
            ),
            new(
                "breadcrumbs_ties",
                "Breadcrumbs",
                BaseUse.Shared,
                DensityLambda(quick ? [0.7] : [0.5, 0.7, 0.9, 0.98], sumCoarse, ("gamma", 0.01)),
                "density 0.5–0.98 × λ, γ 0.01"
            ),
            new(
                "della",
                "DELLA",
                BaseUse.Shared,
                DensityLambda(
                    quick ? [0.5] : [0.3, 0.5, 0.7, 0.85],
                    quick ? [1.0, 3.0] : [1.0, 1.8, 3.0, 5.0],
                    ("epsilon", 0.1)
                ),
                "density 0.3–0.85, ε 0.1 × λ 1–5 (Deep et al.; disjoint mean; density + ε < 1)"
            ),
            new(
                "della_linear",
                "DELLA",
                BaseUse.Shared,
                DensityLambda(quick ? [0.5] : [0.3, 0.5, 0.7, 0.85], sumCoarse, ("epsilon", 0.1)),
                "density 0.3–0.85, ε 0.1 × λ"
            ),
            new(
                "consensus_ta",
                "consensus",
                BaseUse.Shared,
                [
                    .. from t in quick ? new[] { 0.4 } : [0.1, 0.2, 0.4, 0.6]
                    from a in sumCoarse
                    select new GridPoint(
                        L(("tall λ", t), ("k", 2), ("α", a)),
                        P(("alpha", a)),
                        P(("weight", 1.0), ("lambda", t), ("k", 2.0))
                    ),
                ],
                "TALL λ 0.1–0.6, k 2 × α (Wang et al.)"
            ),
            new(
                "consensus_ties",
                "consensus",
                BaseUse.Shared,
                [
                    .. from d in quick ? new[] { 0.3 } : [0.2, 0.5]
                    from a in quick ? new[] { 1.0 } : [1.0, 2.0, 3.0, 5.0]
                    select new GridPoint(
                        L(("density", d), ("tall λ", 0.4), ("k", 2), ("α", a)),
                        P(("alpha", a)),
                        P(("weight", 1.0), ("density", d), ("lambda", 0.4), ("k", 2.0))
                    ),
                ],
                "density × α, TALL λ 0.4, k 2"
            ),
            new(
                "magmax",
                "MagMax",
                BaseUse.Shared,
                Lambdas(quick ? [0.5, 1.0] : [0.2, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0], "scaling_factor"),
                "scaling 0.2 … 3 (Marczak et al.'s 0.2–1.5, widened)"
            ),
            new("emr", "EMR", BaseUse.Shared, One(), "tuning-free"),
            new("model_stock", "Model Stock", BaseUse.Shared, One(), "no coefficients"),
            new(
                "sce",
                "SCE",
                BaseUse.Shared,
                [
                    .. (quick ? new[] { 0.3, 1.0 } : [0.03, 0.1, 0.3, 0.5, 1.0]).Select(k => new GridPoint(
                        L(("select_topk", k)),
                        P(("select_topk", k)),
                        P(("weight", 1.0))
                    )),
                ],
                "select_topk 0.03–1"
            ),
            new("ram", "RAM", BaseUse.Shared, One(), "mergekit's defaults"),
            new("ramplus_tl", "RAM", BaseUse.Shared, One(), "mergekit's defaults"),
            new(
                "pcb",
                "PCB",
                BaseUse.Shared,
                [
                    .. from r in quick ? new[] { 0.1 } : [0.05, 0.1, 0.2, 0.4, 0.6, 0.8]
                    from l in quick ? new[] { 1.0 } : [0.8, 1.0, 1.2, 1.6, 2.0]
                    select new GridPoint(
                        L(("pcb_ratio", r), ("λ", l)),
                        P(("pcb_ratio", r)),
                        P(("weight", 1.0), ("lambda", l))
                    ),
                ],
                "pcb_ratio 0.05–0.8 × λ 0.8–2 (Du et al.)"
            ),
            new(
                "tsv_m",
                "SVD",
                BaseUse.Shared,
                [
                    .. (quick ? new[] { 1.0 } : [0.5, 0.75, 1.0, 1.5, 2.0, 3.0]).Select(a => new GridPoint(
                        L(("α", a)),
                        P(),
                        P(("weight", 1.0), ("alpha", a))
                    )),
                ],
                "α 0.5–3 (Gargiulo et al.'s 0.5–1.5, widened)"
            ),
            new(
                "iso_c",
                "SVD",
                BaseUse.Shared,
                Lambdas(quick ? [0.2, 1.0] : [0.2, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.5, 8.0], "scaling_factor"),
                "scaling 0.2–8 (Marczak et al. 2025's 0.5–2, widened)"
            ),
            new(
                "iso_cts",
                "SVD",
                BaseUse.Shared,
                Lambdas(quick ? [0.2, 1.0] : [0.2, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.5, 8.0], "scaling_factor"),
                "scaling 0.2–8, common fraction 0.8"
            ),
            new(
                "star",
                "SVD",
                BaseUse.Shared,
                [
                    .. (quick ? new[] { 40.0 } : [2.5, 5.0, 10, 20, 40, 60, 80]).Select(e => new GridPoint(
                        L(("η", e)),
                        P(("eta", e)),
                        P(("weight", 1.0))
                    )),
                ],
                "η 2.5–80 % (Lee et al.'s 20–80, widened)"
            ),
            new(
                "cart",
                "SVD",
                BaseUse.Shared,
                [
                    .. from r in quick ? new[] { 0.12 } : [0.02, 0.04, 0.08, 0.12, 0.16]
                    from p in quick ? new[] { 2.0 } : [1.0, 1.5, 2.0, 2.5, 3.0, 4.0]
                    select new GridPoint(
                        L(("rank", r), ("prior", p)),
                        P(("initial_rank_ratio", r), ("prior", p)),
                        P(("weight", 1.0))
                    ),
                ],
                "rank 0.02–0.16 × prior 1–4 (Choi et al.'s 0.08–0.16 × 1–2.5, widened)"
            ),
            new("karcher", "geometric", BaseUse.None, One(), "equal weights"),
            new("multislerp", "geometric", BaseUse.Shared, One(), "equal weights, task vectors"),
        ];
    }

    /// <summary>
    /// The methods that learn from data, on every expert's own task data under <paramref name="root"/>/data: Fisher
    /// merging and RegMean from the first 256 training examples (as FusionBench's defaults), AdaMerging from the
    /// validation prompts without their answers (the reference adapts on unlabeled test inputs; validation keeps the
    /// test items unseen), at the reference's defaults (500 steps, Adam 1e-3, λ from 0.3).
    /// </summary>
    public static IReadOnlyList<MethodGrid> DataAware(string root, bool quick)
    {
        string Data(string split) => Path.Combine(root, "data", MethodGrid.ExpertPlaceholder, split + ".jsonl");
        ParameterValue train = new ParameterValue.Text(Data("train")),
            prompts = new ParameterValue.Text(Data("validation"));
        IReadOnlyList<GridPoint> Ada(string granularity, string sparsify, double rate = 1e-3) =>
            [
                new GridPoint(
                    rate == 1e-3 ? "defaults" : L(("learning rate", rate)),
                    P(
                        ("granularity", new ParameterValue.Text(granularity)),
                        ("sparsify", new ParameterValue.Text(sparsify)),
                        ("steps", quick ? 40 : 500),
                        ("learning_rate", rate)
                    ),
                    P(("data", prompts))
                ),
            ];
        return
        [
            new(
                "fisher",
                "data-aware",
                BaseUse.None,
                [new GridPoint("defaults", P(), P(("data", train)))],
                "sampled Fisher, 256 examples"
            ),
            new(
                "regmean",
                "data-aware",
                BaseUse.None,
                [
                    .. (quick ? new[] { 0.95 } : [0.5, 0.8, 0.9, 0.95, 1.0]).Select(a => new GridPoint(
                        L(("α", a)),
                        P(("alpha", a)),
                        P(("data", train))
                    )),
                ],
                "α 0.5–1 (FusionBench 0.95), Grams of 256 examples"
            ),
            new(
                "regmean_plusplus",
                "data-aware",
                BaseUse.None,
                [new GridPoint("α 0.95", P(("alpha", 0.95)), P(("data", train)))],
                "α 0.95, Grams of 256 examples behind the merged blocks"
            ),
            new("adamerging", "data-aware", BaseUse.Shared, Ada("task", "none"), "task-wise, 500 steps")
            {
                Title = "adamerging (task-wise)",
            },
            new("adamerging", "data-aware", BaseUse.Shared, Ada("layer", "none"), "layer-wise, 500 steps")
            {
                Title = "adamerging (layer-wise)",
            },
            new("adamerging", "data-aware", BaseUse.Shared, Ada("layer", "ties"), "layer-wise on TIES τ, density 0.2")
            {
                Title = "adamerging++ (layer-wise)",
            },
            new("adamerging", "data-aware", BaseUse.Shared, Ada("layer", "none", 1e-2), "layer-wise, 500 steps")
            {
                Title = "adamerging (layer-wise, lr 0.01)",
            },
            new(
                "concrete_subspace",
                "data-aware",
                BaseUse.Shared,
                [
                    .. (quick ? new[] { 0.3 } : [0.3, 0.6, 1.0]).Select(l => new GridPoint(
                        L(("λ", l)),
                        P(("steps", quick ? 40 : 2000)),
                        P(("data", prompts), ("lambda", l))
                    )),
                ],
                "mask by entropy (2000 steps at λ 0.3), then λ 0.3 / 0.6 / 1 chosen on validation"
            )
            {
                Title = "concrete_subspace (task arithmetic)",
            },
        ];
    }

    /// <summary>
    /// Methods that take exactly two models, for pairs of experts: slerp between them, NuSLERP of their task vectors.
    /// </summary>
    public static IReadOnlyList<MethodGrid> PairMethods(bool quick) =>
        [
            new(
                "slerp",
                "geometric",
                BaseUse.FirstExpert,
                [
                    .. (quick ? new[] { 0.5 } : [0.1, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9]).Select(t => new GridPoint(
                        L(("t", t)),
                        P(("t", t)),
                        P()
                    )),
                ],
                "t 0.1–0.9 between the two experts"
            ),
            new("nuslerp", "geometric", BaseUse.Shared, One(), "equal weights, task vectors around the base"),
        ];

    /// <summary>
    /// The methods also run on the LoRA experts' task vectors (base+adapter), in the full weight space.
    /// </summary>
    public static readonly string[] OnLoraExperts =
    [
        "task_arithmetic",
        "ties",
        "dare_ties",
        "tsv_m",
        "iso_c",
        "magmax",
    ];

    /// <summary>
    /// <c>alloy merge-adapters</c>'s combination types on the LoRA experts: every adapter weighted alike (the weights
    /// play λ's part), with PEFT's densities and SVD ranks.
    /// </summary>
    public static IReadOnlyList<AdapterGrid> Adapters(bool quick)
    {
        double[] weights = quick ? [0.5, 1.0] : [0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5];
        double[] densities = quick ? [0.5] : [0.2, 0.5, 0.8, 1.0];
        AdapterGrid Grid(CombinationType type, string source, double[]? density = null, int?[]? ranks = null) =>
            new(
                AdapterMerger.Name(type),
                [
                    .. from w in weights
                    from d in density ?? [double.NaN]
                    from r in ranks ?? [null]
                    select new AdapterPoint(
                        L([("weight", w), .. double.IsNaN(d) ? [] : new[] { ("density", (object)d) }])
                            + (r is null ? "" : $", svd_rank {r}"),
                        w,
                        new AdapterMergeOptions
                        {
                            Type = type,
                            Density = double.IsNaN(d) ? null : d,
                            SvdRank = r,
                        }
                    ),
                ],
                source
            );
        int?[] svdRanks = quick ? [null] : [null, 48, 80];
        int?[] legoRanks = quick ? [null] : [null, 48, 80];
        return
        [
            Grid(CombinationType.Cat, "weight 0.2–1.5; the exact sum of the updates, rank 5 × 16"),
            Grid(CombinationType.Linear, "weight 0.2–1.5; factors summed, so cross terms B_s·A_t"),
            Grid(
                CombinationType.Svd,
                "weight × svd_rank 16 (PEFT's default: the largest input), 48, 80",
                ranks: svdRanks
            ),
            Grid(CombinationType.TiesSvd, "weight × density 0.2–1", densities),
            Grid(CombinationType.DareLinearSvd, "weight × density 0.2–1", densities),
            Grid(CombinationType.DareTiesSvd, "weight × density 0.2–1", densities),
            Grid(CombinationType.MagnitudePruneSvd, "weight × density 0.2–1", densities),
            Grid(CombinationType.Ties, "weight × density 0.2–1 (on A and B separately)", densities),
            Grid(CombinationType.DareLinear, "weight × density 0.2–1 (on A and B separately)", densities),
            Grid(CombinationType.MagnitudePrune, "weight × density 0.2–1 (on A and B separately)", densities),
            Grid(CombinationType.KnotsLinear, "weight 0.2–1.5 (the weighted sum in the joint basis)"),
            Grid(
                CombinationType.KnotsTies,
                "weight × density 0.2–1 (Stoica et al.: 0.2 for ViT, 1 for Llama)",
                densities
            ),
            Grid(CombinationType.KnotsDareTies, "weight × density 0.2–1 (DARE keep rate, no trim)", densities),
            Grid(CombinationType.LoraLego, "weight × k 16 (the input rank), 48, 80", ranks: legoRanks),
        ];
    }
}
