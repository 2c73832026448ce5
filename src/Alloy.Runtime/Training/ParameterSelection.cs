using System.Text.RegularExpressions;
using Alloy.Runtime.Models;

namespace Alloy.Runtime.Training;

/// <summary>
/// The parameters <c>alloy train --only</c> trains: patterns over Hugging Face parameter names, where * stands for any
/// characters and a pattern must match the whole name (model.layers.*.self_attn.*), or the named group
/// <see cref="Router"/>: every router weight of a mixture of experts (mlp.gate.weight, Mixtral's
/// block_sparse_moe.gate.weight) and Qwen2-MoE's shared_expert_gate.weight.
/// </summary>
public static class ParameterSelection
{
    public const string Router = "router";

    public static bool IsRouter(string name) =>
        name.EndsWith(".mlp.gate.weight", StringComparison.Ordinal)
        || name.EndsWith(".block_sparse_moe.gate.weight", StringComparison.Ordinal)
        || name.EndsWith(".mlp.shared_expert_gate.weight", StringComparison.Ordinal);

    /// <summary>
    /// The parameters matching any of <paramref name="patterns"/>, in the model's order. A pattern that matches nothing
    /// is an <see cref="AlloyException"/>.
    /// </summary>
    public static ParameterSet Select(ParameterSet parameters, IReadOnlyList<string> patterns)
    {
        if (patterns.Count == 0)
            throw new AlloyException("--only names no parameter");
        var tests = new List<Func<string, bool>>();
        foreach (var pattern in patterns)
        {
            Func<string, bool> test = pattern == Router ? IsRouter : Glob(pattern);
            if (!parameters.Any(p => test(p.Name)))
                throw new AlloyException(
                    pattern == Router
                        ? "--only router: the model has no router (it is not a mixture of experts)"
                        : $"--only '{pattern}' matches no parameter (patterns match whole names, * any characters, "
                            + $"as 'model.layers.*.self_attn.*'; or '{Router}')"
                );
            tests.Add(test);
        }
        return new ParameterSet(parameters.Where(p => tests.Any(t => t(p.Name))));
    }

    private static Func<string, bool> Glob(string pattern)
    {
        var regex = new Regex(
            "^" + string.Join(".*", pattern.Split('*').Select(Regex.Escape)) + "$",
            RegexOptions.CultureInvariant
        );
        return regex.IsMatch;
    }
}
