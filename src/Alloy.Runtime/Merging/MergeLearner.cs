using Alloy.Methods.DataAware;
using Alloy.Planning;
using Alloy.Recipes;

namespace Alloy.Runtime.Merging;

/// <summary>
/// The runtime's side of data-aware merges that learn before they merge: AdaMerging's coefficients
/// (<see cref="AdaMergingCoefficients"/>), a Concrete subspace's mask (<see cref="ConcreteSubspaceMask"/>) and
/// RegMean++'s block-by-block Gram matrices (<see cref="RegMeanPlusPlusGrams"/>); the last two are kept in
/// <paramref name="statisticsFolder"/> like other statistics.
/// </summary>
public sealed class MergeLearner(string statisticsFolder, RuntimeOptions? options = null, Action<string>? report = null)
    : IMergeLearner
{
    public LambdaTable LearnCoefficients(MergeSession session, CancellationToken cancellation = default) =>
        AdaMergingCoefficients.Learn(session, options, report, cancellation);

    public string LearnSubspace(MergeSession session, CancellationToken cancellation = default) =>
        ConcreteSubspaceMask.Learn(session, statisticsFolder, options, report, cancellation);

    public IReadOnlyList<string> SequentialGrams(
        MergeRecipe recipe,
        ModelSet models,
        CancellationToken cancellation = default
    ) => RegMeanPlusPlusGrams.Gather(recipe, models, statisticsFolder, options, report, cancellation);
}
