using Alloy.Recipes;

namespace Alloy.Tests.Recipes;

internal static class RecipeTestHelpers
{
    public const string Cfg = "cfg.yml";

    public static MergeRecipe Parse(string yaml) => RecipeParser.Parse(yaml, Cfg, Diagnostics.Silent());

    public static MergeRecipe Parse(string yaml, out Diagnostics diagnostics)
    {
        diagnostics = Diagnostics.Silent();
        return RecipeParser.Parse(yaml, Cfg, diagnostics);
    }

    /// <summary>The error message of a config that must fail.</summary>
    public static string Error(string yaml)
    {
        var ex = Assert.Throws<AlloyException>(() => Parse(yaml));
        Assert.DoesNotContain('\n', ex.Message);
        return ex.Message;
    }

    public static double Scalar(ParameterSettings set, string name)
    {
        Assert.True(set.TryGet(name, out var s), $"parameter {name} missing");
        return Assert.IsType<ParameterValue.Scalar>(s.Value).Value;
    }

    public static IReadOnlyList<double> Gradient(ParameterSettings set, string name)
    {
        Assert.True(set.TryGet(name, out var s), $"parameter {name} missing");
        return Assert.IsType<ParameterValue.Gradient>(s.Value).Values;
    }

    public static IReadOnlyList<ConditionalEntry> Conditional(ParameterSettings set, string name)
    {
        Assert.True(set.TryGet(name, out var s), $"parameter {name} missing");
        return Assert.IsType<ParameterValue.Conditional>(s.Value).Entries;
    }
}
