using Alloy.Runtime.Evaluation;
using Alloy.Runtime.Models;

namespace Alloy.Bench.Quality;

/// <summary>
/// Exact-match accuracy of a model on each task's validation or test items (greedy, as alloy eval scores them).
/// </summary>
public sealed class Scorer(ExpertSet experts)
{
    private static readonly EvaluationOptions Options = new() { BatchSize = 64, MaxBatchTokens = 16_384 };

    /// <summary>Evaluations run so far (each: every task's items of one split).</summary>
    public int Evaluations { get; private set; }

    public double Seconds { get; private set; }

    /// <summary>
    /// Accuracy per task (in <see cref="ExpertSet.Tasks"/> order) on the validation (or test) items of the given tasks.
    /// </summary>
    public double[] Score(LlamaModel model, bool test, IReadOnlyList<int>? tasks = null)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var evaluation = new TaskEvaluation(model, experts.Tokenizer, Options);
        var scores = new double[experts.Tasks.Count];
        Array.Fill(scores, double.NaN);
        foreach (int t in tasks ?? Enumerable.Range(0, experts.Tasks.Count).ToList())
        {
            var task = experts.Tasks[t];
            var items = (test ? task.Test : task.Validation).Cast<GenerationItem>().ToList();
            scores[t] = evaluation.RunGenerations(task.Name, items).Accuracy;
        }
        Evaluations++;
        Seconds += clock.Elapsed.TotalSeconds;
        return scores;
    }
}
