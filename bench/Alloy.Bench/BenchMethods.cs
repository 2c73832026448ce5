using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Alloy.Methods;

namespace Alloy.Bench;

/// <summary>
/// The issue's two target classes: elementwise methods should reach 0.8 × the copy floor, whole-tensor ones 0.5 ×.
/// </summary>
public enum TargetClass
{
    Elementwise,
    WholeTensor,
}

/// <summary>Which generated models a method merges.</summary>
public enum Inputs
{
    /// <summary>The base and every fine-tune, all as weighted inputs (linear has no base model).</summary>
    AllWeighted,

    /// <summary><c>base_model</c> plus every fine-tune (task vectors).</summary>
    BasePlusFineTunes,

    /// <summary><c>base_model</c> plus the first fine-tune (slerp takes exactly two).</summary>
    BasePlusOne,
}

/// <summary>
/// One benchmarked method: its mergekit name and a sensible configuration, from which both the Alloy YAML recipe and
/// the PyTorch job are built, so the two columns always run the same merge. A method missing from Alloy's registry is
/// reported as not available and measured as soon as it is registered.
/// </summary>
public sealed record BenchMethod(
    string Name,
    TargetClass Target,
    Inputs Inputs,
    IReadOnlyDictionary<string, double> Globals,
    IReadOnlyDictionary<string, double> PerModel,
    bool Random
)
{
    public static IReadOnlyList<BenchMethod> All { get; } =
    [
        new("linear", TargetClass.Elementwise, Inputs.AllWeighted, Map(), Map(("weight", 1.0)), Random: false),
        new(
            "task_arithmetic",
            TargetClass.Elementwise,
            Inputs.BasePlusFineTunes,
            Map(),
            Map(("weight", 0.5)),
            Random: false
        ),
        new(
            "ties",
            TargetClass.Elementwise,
            Inputs.BasePlusFineTunes,
            Map(),
            Map(("weight", 1.0), ("density", 0.5)),
            Random: false
        ),
        new(
            "dare_ties",
            TargetClass.Elementwise,
            Inputs.BasePlusFineTunes,
            Map(),
            Map(("weight", 1.0), ("density", 0.5)),
            Random: true
        ),
        new(
            "breadcrumbs",
            TargetClass.WholeTensor,
            Inputs.BasePlusFineTunes,
            Map(),
            Map(("weight", 1.0), ("density", 0.5), ("gamma", 0.01)),
            Random: false
        ),
        new(
            "della",
            TargetClass.WholeTensor,
            Inputs.BasePlusFineTunes,
            Map(),
            Map(("weight", 1.0), ("density", 0.5), ("epsilon", 0.1)),
            Random: true
        ),
        new("slerp", TargetClass.WholeTensor, Inputs.BasePlusOne, Map(("t", 0.5)), Map(), Random: false),
        new("model_stock", TargetClass.WholeTensor, Inputs.BasePlusFineTunes, Map(), Map(), Random: false),
    ];

    /// <summary>Alloy's implementation, or null while the method is not registered.</summary>
    [JsonIgnore]
    public MergeMethod? Implementation => MethodRegistry.Find(Name);

    public double TargetFraction => Target == TargetClass.Elementwise ? 0.8 : 0.5;

    /// <summary>The model folders this method reads, base first.</summary>
    public IReadOnlyList<string> Models(ModelFamily family) =>
        Inputs switch
        {
            Inputs.BasePlusOne => [family.Base, family.FineTunes[0]],
            _ => [family.Base, .. family.FineTunes],
        };

    /// <summary>The mergekit YAML recipe.</summary>
    public string Recipe(ModelFamily family)
    {
        var yaml = new StringBuilder();
        yaml.Append("merge_method: ").Append(Name).Append('\n');
        if (Inputs != Inputs.AllWeighted)
            yaml.Append("base_model: ").Append(family.Base).Append('\n');
        if (Globals.Count > 0)
        {
            yaml.Append("parameters:\n");
            foreach (var (key, value) in Globals)
                yaml.Append("  ").Append(key).Append(": ").Append(Number(value)).Append('\n');
        }
        yaml.Append("models:\n");
        foreach (var model in Models(family))
        {
            yaml.Append("  - model: ").Append(model).Append('\n');
            bool weighted = model != family.Base || Inputs == Inputs.AllWeighted;
            if (weighted && PerModel.Count > 0)
            {
                yaml.Append("    parameters:\n");
                foreach (var (key, value) in PerModel)
                    yaml.Append("      ").Append(key).Append(": ").Append(Number(value)).Append('\n');
            }
        }
        yaml.Append("dtype: bfloat16\n");
        return yaml.ToString();
    }

    /// <summary>
    /// The job for bench/torch_merge.py: the same inputs and parameters, file paths instead of folders.
    /// </summary>
    public JsonObject TorchJob(ModelFamily family, string outputFile, int threads, ulong seed)
    {
        var models = new JsonArray();
        foreach (var model in Models(family))
        {
            if (Inputs != Inputs.AllWeighted && model == family.Base)
                continue;
            var parameters = new JsonObject();
            foreach (var (key, value) in PerModel)
                parameters[key] = value;
            models.Add(new JsonObject { ["path"] = ModelFamily.WeightsFile(model), ["parameters"] = parameters });
        }
        var globals = new JsonObject();
        foreach (var (key, value) in Globals)
            globals[key] = value;
        return new JsonObject
        {
            ["method"] = Name,
            ["base"] = Inputs == Inputs.AllWeighted ? null : ModelFamily.WeightsFile(family.Base),
            ["models"] = models,
            ["globals"] = globals,
            ["out"] = outputFile,
            ["threads"] = threads,
            ["seed"] = seed,
        };
    }

    /// <summary>
    /// Resolves a --methods list against the catalogue; an unknown name is an error, not a silent skip.
    /// </summary>
    public static IReadOnlyList<BenchMethod> Select(string? list)
    {
        if (string.IsNullOrWhiteSpace(list) || list == "all")
            return All;
        var chosen = new List<BenchMethod>();
        foreach (var name in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var method = All.FirstOrDefault(m => m.Name == name)
                ?? throw new ArgumentException(
                    $"--methods: '{name}' is not one of {string.Join(", ", All.Select(m => m.Name))}"
                );
            chosen.Add(method);
        }
        return chosen;
    }

    private static Dictionary<string, double> Map(params (string Key, double Value)[] entries) =>
        entries.ToDictionary(e => e.Key, e => e.Value);

    private static string Number(double value) => value.ToString("0.0###", CultureInfo.InvariantCulture);
}
