using Alloy.Runtime.Training;
using Alloy.Tensors;

namespace Alloy.Runtime.Merging;

/// <summary>
/// The test-time objective of AdaMerging and Concrete subspace learning: each task's unlabeled prompts in one seeded
/// order, taken a batch at a time cyclically, and the loss Σ over tasks of the mean entropy of the next-token
/// distribution after each prompt of that task's batch.
/// </summary>
public sealed class TaskPrompts
{
    private readonly IReadOnlyList<IReadOnlyList<int[]>> _prompts;
    private readonly int[][] _orders;
    private readonly int _batchSize;

    public TaskPrompts(IReadOnlyList<IReadOnlyList<int[]>> prompts, int batchSize, ulong seed)
    {
        for (int t = 0; t < prompts.Count; t++)
            if (prompts[t].Count == 0)
                throw new AlloyException($"task {t + 1} has no prompts; learning needs unlabeled prompts per task");
        _prompts = prompts;
        _batchSize = batchSize;
        _orders = [.. prompts.Select((p, t) => RandomStream.For(seed, "adamerging-prompts", t).Permutation(p.Count))];
    }

    public int Tasks => _prompts.Count;

    /// <summary>
    /// Step <paramref name="step"/>'s batches: for each task the next min(batch size, count) prompts of its order,
    /// wrapping around.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<int[]>> Batches(int step) =>
        [
            .. _prompts.Select(
                (prompts, t) =>
                {
                    int size = Math.Min(_batchSize, prompts.Count);
                    long first = (long)step * size;
                    return (IReadOnlyList<int[]>)
                        [.. Enumerable.Range(0, size).Select(j => prompts[_orders[t][(first + j) % prompts.Count]])];
                }
            ),
        ];

    /// <summary>
    /// Σ over tasks of the mean entropy over that task's batch, for the model <paramref name="loss"/> runs; with
    /// <paramref name="gradient"/>, its gradient is added to <paramref name="loss"/>'s gradients.
    /// </summary>
    public static double Entropy(LossGradients loss, IReadOnlyList<IReadOnlyList<int[]>> batches, bool gradient) =>
        batches.Sum(batch =>
            (gradient ? loss.AccumulateEntropy(batch, 1.0 / batch.Count) : loss.Entropy(batch)) / batch.Count
        );
}
