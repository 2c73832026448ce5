using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Alloy.Checkpoints;
using Alloy.Recipes;

namespace Alloy.Methods.DataAware;

/// <summary>
/// AdaMerging's coefficients, as learnt or as read from <c>adamerging.json</c>: for each model, one λ ("*", task-wise)
/// or one per tensor (layer-wise, by the tensor's name in the model), and the loss of each learning step.
/// </summary>
public sealed record LambdaTable(string Granularity, IReadOnlyList<ModelLambdas> Models, IReadOnlyList<double> Losses)
{
    /// <summary>The file name beside a merged model.</summary>
    public const string FileName = "adamerging.json";

    /// <summary>
    /// <paramref name="recipe"/> with each model's <c>lambda</c> set to its coefficients (per tensor through filters,
    /// longest name first so each filter, a substring test as in mergekit, picks out exactly its own tensor) and
    /// <c>lambdas</c> naming <paramref name="lambdasPath"/>, so the recipe as written reproduces this merge.
    /// </summary>
    public MergeRecipe ApplyTo(MergeRecipe recipe, string lambdasPath)
    {
        var entries = recipe.Models
            ?? throw new AlloyException($"{recipe.MethodLocation}: adamerging needs models:, not slices:");
        var byName = Models.ToDictionary(m => m.Model, StringComparer.Ordinal);
        var models = new List<ModelEntry>();
        foreach (var entry in entries)
        {
            if (entry.Model == recipe.BaseModel)
            {
                models.Add(entry);
                continue;
            }
            if (!byName.TryGetValue(entry.Model.ToString(), out var row))
                throw new AlloyException(
                    $"{entry.Location}: the coefficients have no model '{entry.Model}' (they are for "
                        + $"{string.Join(", ", Models.Select(m => $"'{m.Model}'"))})"
                );
            var parameters = new ParameterSettings(entry.Parameters)
            {
                [AdaMerging.Lambda.Name] = row.Lambdas.TryGetValue("*", out double all)
                    ? all
                    : new ParameterValue.Conditional([
                        .. row
                            .Lambdas.OrderByDescending(l => l.Key.Length)
                            .ThenBy(l => l.Key, StringComparer.Ordinal)
                            .Select(l => new ConditionalEntry(l.Key, new ParameterValue.Scalar(l.Value))),
                    ]),
            };
            models.Add(entry with { Parameters = parameters });
        }
        return (recipe with { Models = models }).WithParameter(
            AdaMerging.Lambdas.Name,
            new ParameterValue.Text(lambdasPath)
        );
    }

    public void Write(string path)
    {
        var json = new JsonObject
        {
            ["method"] = "adamerging",
            ["granularity"] = Granularity,
            ["models"] = new JsonArray([
                .. Models.Select(m => new JsonObject
                {
                    ["model"] = m.Model,
                    ["lambdas"] = new JsonObject(
                        m.Lambdas.Select(l => KeyValuePair.Create(l.Key, (JsonNode?)JsonValue.Create(l.Value)))
                    ),
                }),
            ]),
            ["losses"] = new JsonArray([.. Losses.Select(l => (JsonNode?)JsonValue.Create(l))]),
        };
        File.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>Reads an <c>adamerging.json</c>; anything else is refused in one line.</summary>
    public static LambdaTable Read(string path)
    {
        using var document = StrictJson.Parse(InputFile.ReadAllBytes(path), path);
        try
        {
            var root = document.RootElement;
            string granularity = root.GetProperty("granularity").GetString()!;
            var models = root.GetProperty("models")
                .EnumerateArray()
                .Select(m => new ModelLambdas(
                    m.GetProperty("model").GetString()!,
                    m.GetProperty("lambdas")
                        .EnumerateObject()
                        .ToDictionary(p => p.Name, p => Checked(p.Value.GetDouble(), path), StringComparer.Ordinal)
                ))
                .ToList();
            var losses = root.TryGetProperty("losses", out var l) ? l.EnumerateArray().Select(v => v.GetDouble()) : [];
            if (granularity is not ("task" or "layer") || models.Count == 0)
                throw new InvalidOperationException();
            return new LambdaTable(granularity, models, [.. losses]);
        }
        catch (Exception e) when (e is InvalidOperationException or KeyNotFoundException or FormatException)
        {
            throw new AlloyException(
                $"{path}: not an adamerging.json (expected \"granularity\": task or layer, and \"models\": a list of "
                    + "{\"model\", \"lambdas\": {name: number}})"
            );
        }
    }

    private static double Checked(double value, string path) =>
        value is >= 0 and <= 1
            ? value
            : throw new AlloyException(
                $"{path}: coefficient {value.ToString(CultureInfo.InvariantCulture)} is outside [0, 1]"
            );
}

/// <summary>One model's coefficients: by tensor name, or under "*" for all its tensors.</summary>
public sealed record ModelLambdas(string Model, IReadOnlyDictionary<string, double> Lambdas);
