using Alloy.Methods.DataAware;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Merging;

/// <summary>
/// Learns an <c>adamerging</c> recipe's coefficients (<see cref="AdaMergingLearner"/>) through its merge session: the
/// base and each model's task vector — trimmed and sign-elected with <c>sparsify: ties</c> — are taken from in-memory
/// merges with one model's λ at 1 and the others at 0 (the merge is linear in λ, and the election does not depend on
/// them), so learning runs on exactly the task vectors the final merge adds. Memory: the base and every task vector in
/// float32, besides the model.
/// </summary>
public static class AdaMergingCoefficients
{
    /// <summary>Longest prompt in tokens (longer ones keep their last tokens).</summary>
    public const int PromptLength = 256;

    public static LambdaTable Learn(
        MergeSession session,
        RuntimeOptions? options = null,
        Action<string>? report = null,
        CancellationToken cancellation = default
    )
    {
        var recipe = session.Recipe;
        var info = session.Plan.Jobs.First(j => j.Info is not null).Info!;
        var tasks = Enumerable.Range(0, info.Count).Where(i => i != info.BaseIndex).ToList();
        var names = tasks.Select(i => info.ModelNames[i]).ToList();
        string granularity = info[AdaMerging.Granularity];

        var tokenizer = MergedModel.Tokenizer(session);
        var model = MergedModel.Create(session, options, cancellation: cancellation);
        var prompts = tasks
            .Select(i =>
                TrainingData.LoadPrompts(
                    info[AdaMerging.Data, i]
                        ?? throw new AlloyException(
                            $"{recipe.SourceName}: model '{info.ModelNames[i]}' has no data: (prompts of its task), "
                                + "which adamerging learns from; or give learnt coefficients with lambdas:"
                        ),
                    tokenizer,
                    PromptLength,
                    model.Config.VocabSize
                )
            )
            .ToList();

        ParameterSet MergeWith(Func<int, double> lambda)
        {
            var table = new LambdaTable(
                "task",
                [.. names.Select((n, t) => new ModelLambdas(n, new Dictionary<string, double> { ["*"] = lambda(t) }))],
                []
            );
            session.Reparameterize(table.ApplyTo(recipe, LambdaTable.FileName));
            MergedModel.Refill(session, model, cancellation: cancellation);
            return new ParameterSet(model.Parameters.Select(p => new Parameter(p.Name, p.Shape, [.. p.Data])));
        }

        report?.Invoke($"adamerging: task vectors of {names.Count} models");
        var @base = MergeWith(_ => 0);
        var vectors = names
            .Select(
                (_, t) =>
                {
                    var merged = MergeWith(u => u == t ? 1 : 0);
                    foreach (var p in merged)
                    {
                        var b = @base[p.Name].Data;
                        for (int j = 0; j < p.Data.Length; j++)
                            p.Data[j] -= b[j];
                    }
                    return merged;
                }
            )
            .ToList();
        session.Reparameterize(recipe);

        var learning = new AdaMergingOptions
        {
            Steps = info[AdaMerging.Steps],
            LearningRate = info[AdaMerging.LearningRate],
            BatchSize = info[AdaMerging.BatchSize],
            Initial = info[AdaMerging.Lambda, tasks[0]],
            Granularity = granularity == "task" ? LambdaGranularity.Task : LambdaGranularity.Layer,
            Seed = session.Plan.Options.Seed,
        };
        int every = Math.Max(1, learning.Steps / 10);
        var result = AdaMergingLearner.Learn(
            model,
            @base,
            vectors,
            prompts,
            learning,
            (step, loss) =>
            {
                if (step % every == 0 || step == learning.Steps)
                    report?.Invoke($"adamerging: step {step}/{learning.Steps}, entropy {loss:F4}");
            },
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
