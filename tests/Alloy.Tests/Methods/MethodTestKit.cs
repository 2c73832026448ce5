using Alloy.Methods;
using Alloy.Methods.TaskVectors;
using Alloy.Planning;
using Alloy.Recipes;

namespace Alloy.Tests.Methods;

/// <summary>Runs a method on small hand-written inputs, as the executor would.</summary>
public static class MethodTestKit
{
    /// <summary>
    /// Resolves parameters as the planner does (given values, else the method's defaults, for globals and for every
    /// input), validates, and merges the whole tensor. <paramref name="shape"/> defaults to one row.
    /// </summary>
    public static float[] Run(
        MergeMethod method,
        float[][] inputs,
        int baseIndex,
        IReadOnlyDictionary<string, double>? globals = null,
        IReadOnlyList<IReadOnlyDictionary<string, double>>? perModel = null,
        TensorPosition? position = null,
        long[]? shape = null,
        ulong seed = 0,
        IReadOnlyList<MagnitudeCut?>? modelWideCuts = null,
        string tensorName = "t.weight",
        IReadOnlyList<(float[] Values, long Count, double Norm)>? statistics = null
    )
    {
        var info = new MergeInputsInfo(
            tensorName,
            inputs.Select((_, i) => $"m{i}").ToList(),
            baseIndex,
            Resolve(method, inputs.Length, globals, perModel),
            seed,
            inputs.Select((_, i) => i).ToList(),
            position,
            statistics?.Select(s => (IStatisticSummary)new Summary(s.Count, s.Norm)).ToList()
        );
        method.Validate(info);
        var output = new float[inputs[0].Length];
        var values = statistics is null
            ? null
            : new StatisticValues(
                [.. statistics.Select(s => s.Values)],
                statistics[0].Values.Length == output.Length && method.Declaration.Elementwise,
                [.. statistics.Select(s => s.Values.Length)]
            );
        method.Merge(
            new MergeInputs(
                info,
                inputs,
                output.Length,
                0,
                shape ?? [output.Length],
                modelWideCuts,
                statisticValues: values
            ),
            output
        );
        return output;
    }

    /// <summary>A statistics file's summary, as a test states it.</summary>
    private sealed record Summary(long Count, double Norm) : IStatisticSummary;

    /// <summary>
    /// Parameters resolved as the planner does, from values by name: the given ones (checked against their declarations
    /// as the planner checks a recipe), else the declarations' defaults, for the globals and for each of
    /// <paramref name="inputs"/> inputs. An unknown name fails the test.
    /// </summary>
    public static ResolvedParameters Resolve(
        MergeMethod method,
        int inputs,
        IReadOnlyDictionary<string, double>? globals = null,
        IReadOnlyList<IReadOnlyDictionary<string, double>>? perModel = null
    )
    {
        MethodParameter Declared(string name) =>
            method.Declaration.Parameter(name)
            ?? throw new ArgumentException($"{method.Name} declares no parameter '{name}'");
        var g = new Dictionary<MethodParameter, SettingValue>();
        foreach (var p in method.Parameters.Where(p => p.Scope == ParameterScope.Global && p.DefaultValue is not null))
            g[p] = p.DefaultValue!.Value;
        SettingValue Checked(MethodParameter p, double v)
        {
            ParameterCheck.CheckValue(method, p, SettingValue.Of(v), "test");
            return SettingValue.Of(v);
        }
        foreach (var (k, v) in globals ?? new Dictionary<string, double>())
            g[Declared(k)] = Checked(Declared(k), v);
        var models = new List<IReadOnlyDictionary<MethodParameter, SettingValue>>();
        for (int i = 0; i < inputs; i++)
        {
            var values = new Dictionary<MethodParameter, SettingValue>();
            foreach (
                var p in method.Parameters.Where(p => p.Scope == ParameterScope.PerModel && p.DefaultValue is not null)
            )
                values[p] = p.DefaultValue!.Value;
            foreach (var (k, v) in perModel?[i] ?? new Dictionary<string, double>())
                values[Declared(k)] = Checked(Declared(k), v);
            models.Add(values);
        }
        return new ResolvedParameters(g, models);
    }

    /// <summary>Globals from name/value pairs: Globals(("t", 0.5)).</summary>
    public static IReadOnlyDictionary<string, double> Globals(params (string Name, double Value)[] values) =>
        values.ToDictionary(v => v.Name, v => v.Value, StringComparer.Ordinal);

    public static IReadOnlyList<IReadOnlyDictionary<string, double>> Weights(params double?[] weights) =>
        weights
            .Select(w =>
                (IReadOnlyDictionary<string, double>)(
                    w is { } v ? new Dictionary<string, double> { ["weight"] = v } : new Dictionary<string, double>()
                )
            )
            .ToList();
}
