namespace Alloy.Methods.DataAware;

/// <summary>
/// What a data-aware merge learns before it merges, with Alloy.Runtime running the models; given to a merge through
/// <see cref="MergeOptions.Learner"/>.
/// </summary>
public interface IMergeLearner
{
    /// <summary>
    /// AdaMerging's coefficients for <paramref name="session"/>'s recipe, learnt with its parameters.
    /// </summary>
    LambdaTable LearnCoefficients(MergeSession session, CancellationToken cancellation = default);

    /// <summary>
    /// A Concrete subspace's mask for <paramref name="session"/>'s recipe (planned without one): the path of the
    /// statistics file it was written to.
    /// </summary>
    string LearnSubspace(MergeSession session, CancellationToken cancellation = default);

    /// <summary>
    /// RegMean++'s Gram matrices for <paramref name="recipe"/>'s models (opened in <paramref name="models"/>), from
    /// each model's <c>data:</c>, block by block through the blocks merged before: a statistics file per model, in
    /// the recipe's order (<see cref="RegMeanPlusPlus.WithGrams"/> puts them in a recipe).
    /// </summary>
    IReadOnlyList<string> SequentialGrams(
        Recipes.MergeRecipe recipe,
        Planning.ModelSet models,
        CancellationToken cancellation = default
    );
}
