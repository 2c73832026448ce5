using Alloy.Methods;
using Alloy.Methods.DataAware;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Merging;

/// <summary>
/// What learning on a merge session starts from: the merged model in memory, the base and each model's task vector
/// as the session's method adds it — trimmed and sign-elected with AdaMerging's <c>sparsify: ties</c>, masked inside a
/// Concrete subspace — taken from in-memory merges with one model's λ at 1 and the others at 0 (the merge is linear in
/// λ, and nothing else depends on them), each task's prompts (<c>data:</c>), and the resolved parameters. Memory: the
/// base and every task vector in float32, besides the model.
/// </summary>
internal sealed record SessionTaskVectors(
    LlamaModel Model,
    ParameterSet Base,
    IReadOnlyList<ParameterSet> Vectors,
    IReadOnlyList<string> Names,
    IReadOnlyList<int> Inputs,
    IReadOnlyList<IReadOnlyList<int[]>> Prompts,
    MergeInputsInfo Info
)
{
    /// <summary>Longest prompt in tokens (longer ones keep their last tokens).</summary>
    public const int PromptLength = 256;

    public static SessionTaskVectors Of(
        MergeSession session,
        RuntimeOptions? options,
        Action<string>? report,
        CancellationToken cancellation
    )
    {
        var recipe = session.Recipe;
        var info = session.Plan.FirstMerged;
        var tasks = Enumerable.Range(0, info.Count).Where(i => i != info.BaseIndex).ToList();
        var names = tasks.Select(i => info.ModelNames[i]).ToList();
        var tokenizer = MergedModel.Tokenizer(session);
        var model = MergedModel.Create(session, options, cancellation: cancellation);
        var prompts = tasks
            .Select(i =>
                TrainingData.LoadPrompts(
                    info[AdaMerging.Data, i]
                        ?? throw new AlloyException(
                            $"model '{info.ModelNames[i]}' has no data: (prompts of its task), which "
                                + $"{session.Plan.Method.Name} learns from"
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

        report?.Invoke($"{session.Plan.Method.Name}: task vectors of {names.Count} models");
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
        return new SessionTaskVectors(model, @base, vectors, names, tasks, prompts, info);
    }

    /// <summary>
    /// Reports every tenth of <paramref name="steps"/> as "<paramref name="what"/>: step s/S, entropy …".
    /// </summary>
    public static Action<int, double> Progress(string what, int steps, Action<string>? report)
    {
        int every = Math.Max(1, steps / 10);
        return (step, loss) =>
        {
            if (step % every == 0 || step == steps)
                report?.Invoke($"{what}: step {step}/{steps}, entropy {loss:F4}");
        };
    }
}
