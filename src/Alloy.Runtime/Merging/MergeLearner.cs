using Alloy.Methods.DataAware;
using Alloy.Planning;
using Alloy.Recipes;

namespace Alloy.Runtime.Merging;

/// <summary>
/// The runtime's side of data-aware merges that learn before they merge: AdaMerging's coefficients
/// (<see cref="AdaMergingCoefficients"/>) and RegMean++'s block-by-block Gram matrices
/// (<see cref="RegMeanPlusPlusGrams"/>, kept in <paramref name="statisticsFolder"/> like other statistics).
/// </summary>
public sealed class MergeLearner(string statisticsFolder, RuntimeOptions? options = null, Action<string>? report = null)
    : IMergeLearner
{
    public LambdaTable LearnCoefficients(MergeSession session, CancellationToken cancellation = default) =>
        AdaMergingCoefficients.Learn(session, options, report, cancellation);

    public MergeRecipe SequentialGrams(MergeRecipe recipe, ModelSet models, CancellationToken cancellation = default) =>
        RegMeanPlusPlusGrams.Gather(recipe, models, statisticsFolder, options, report, cancellation);
}
