using Alloy.Methods.DataAware;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Merging;

/// <summary>
/// Learns an <c>adamerging</c> recipe's coefficients (<see cref="AdaMergingLearner"/>) through its merge session, on
/// the task vectors the final merge adds (<see cref="SessionTaskVectors"/>); inside a Concrete subspace too.
/// </summary>
public static class AdaMergingCoefficients
{
    public static LambdaTable Learn(
        MergeSession session,
        RuntimeOptions? options = null,
        Action<string>? report = null,
        CancellationToken cancellation = default
    )
    {
        var setup = SessionTaskVectors.Of(session, options, report, cancellation);
        var (info, tasks, names, model) = (setup.Info, setup.Inputs, setup.Names, setup.Model);
        string granularity = info[AdaMerging.Granularity];
        bool inside = session.Plan.Method is ConcreteSubspace;
        var learning = new AdaMergingOptions
        {
            Steps = inside ? info[ConcreteSubspace.AdaMergingSteps] : info[AdaMerging.Steps],
            LearningRate = inside ? info[ConcreteSubspace.AdaMergingLearningRate] : info[AdaMerging.LearningRate],
            BatchSize = info[AdaMerging.BatchSize],
            Initial = inside ? info[ConcreteSubspace.Lambda, tasks[0]] : info[AdaMerging.Lambda, tasks[0]],
            Granularity = granularity == "task" ? LambdaGranularity.Task : LambdaGranularity.Layer,
            Seed = session.Plan.Options.Seed,
        };
        var result = AdaMergingLearner.Learn(
            model,
            setup.Base,
            setup.Vectors,
            setup.Prompts,
            learning,
            SessionTaskVectors.Progress("adamerging", learning.Steps, report),
            cancellation
        );
        var parameters = model.Parameters.Select(p => p.Name).ToList();
        return new LambdaTable(
            granularity,
            [
                .. names.Select(
                    (name, t) =>
                        new ModelLambdas(
                            name,
                            granularity == "task"
                                ? new Dictionary<string, double> { ["*"] = result.Lambdas[t][0] }
                                : parameters
                                    .Select((p, k) => (p, k))
                                    .ToDictionary(x => x.p, x => result.Lambdas[t][x.k], StringComparer.Ordinal)
                        )
                ),
            ],
            result.Losses
        );
    }
}
