namespace Alloy.Recipes;

/// <summary>Resolves a parameter's value for one tensor with mergekit's precedence.</summary>
public static class ParameterLookup
{
    /// <summary>
    /// mergekit's precedence, first non-null wins: the given source's parameters → slice → top-level → null. Pass
    /// <paramref name="source"/> = null for global (method-level) parameters. Each level's setting is evaluated with
    /// <see cref="ParameterValue.Evaluate"/>(tensorName, t), so a conditional with no matching filter falls through.
    /// </summary>
    /// <remarks>
    /// mergekit looks the model up among all of the slice's sources and takes the first that sets the parameter; when
    /// one model appears twice in a slice (e.g. two layer ranges of the same model) that picks the wrong source's
    /// parameters. We use exactly the source being merged. <c>models:</c> is one slice whose sources carry the entries'
    /// parameters and which has none of its own, as mergekit expands it.
    /// </remarks>
    public static SettingValue? Find(
        string name,
        MergeRecipe recipe,
        OutputSlice? slice,
        InputSlice? source,
        string tensorName,
        double t
    ) =>
        source?.Parameters.Evaluate(name, tensorName, t)
        ?? slice?.Parameters.Evaluate(name, tensorName, t)
        ?? recipe.Parameters.Evaluate(name, tensorName, t);
}
