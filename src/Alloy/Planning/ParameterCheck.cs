using Alloy.Methods;
using Alloy.Recipes;

namespace Alloy.Planning;

/// <summary>
/// Checks every parameter a recipe sets against the method's declarations before anything is planned, the same way for
/// YAML and for recipes built in code: a value of the wrong type or out of range is an error that says where it is and
/// what the parameter takes; a gradient is an error where the parameter is not a number. A name the method does not
/// read, or a global parameter set on one model, is a warning: mergekit ignores such keys, and configs carry them.
/// </summary>
public static class ParameterCheck
{
    public static void Check(MergeRecipe recipe, MergeMethod method, Diagnostics diagnostics)
    {
        var declaration = method.Declaration;
        foreach (var block in recipe.ParameterBlocks())
        {
            foreach (var setting in block.Settings)
            {
                string where =
                    setting.Location == SourceLocation.Code
                        ? $"{setting.Location} ({block.Owner})"
                        : setting.Location.ToString();
                if (declaration.Parameter(setting.Name) is not { } parameter)
                {
                    Unknown(setting.Name, where, method, diagnostics);
                    continue;
                }
                if (block.PerModel && parameter.Scope == ParameterScope.Global)
                    diagnostics.Warn(
                        $"{where}: '{setting.Name}' is one value for all models of merge method '{method.Name}'; set "
                            + $"on a model it has no effect (set it under the top-level parameters:)"
                    );
                if (setting.Value.HasGradient && !parameter.TakesGradients)
                    throw new AlloyException(
                        $"{where}: parameter '{setting.Name}' of {method.Name} takes one value ({parameter.Accepts}), "
                            + $"not a gradient across layers"
                    );
                foreach (var literal in setting.Value.Literals)
                    CheckValue(method, parameter, literal, where);
            }
        }
    }

    /// <summary>
    /// A name the method does not read: a warning when some method reads it (mergekit configs carry such keys, which
    /// mergekit ignores), an error naming the intended key when it is a close misspelling of one this method reads (a
    /// typo would otherwise merge with the default), else a warning.
    /// </summary>
    private static void Unknown(string name, string where, MergeMethod method, Diagnostics diagnostics)
    {
        var declared = method.Parameters.Select(p => p.Name).ToList();
        string reads = declared.Count == 0 ? "no parameters" : string.Join(", ", declared);
        bool another = MethodRegistry.All.Any(m => m.Declaration.Parameter(name) is not null);
        if (!another && Suggestions.Closest(name, declared) is { } intended)
            throw new AlloyException(
                $"{where}: unknown parameter '{name}' of merge method '{method.Name}'; did you mean '{intended}'?"
            );
        diagnostics.Warn(
            $"{where}: parameter '{name}' is not used by merge method '{method.Name}' (it reads: {reads})"
        );
    }

    /// <summary>Refuses a value the parameter does not take, saying where it is and what the parameter takes.</summary>
    public static void CheckValue(MergeMethod method, MethodParameter parameter, SettingValue value, string where)
    {
        if (parameter.Problem(value) is { } problem)
            throw new AlloyException(
                $"{where}: parameter '{parameter.Name}' of {method.Name}: {problem}; it takes {parameter.Accepts}"
            );
    }
}
