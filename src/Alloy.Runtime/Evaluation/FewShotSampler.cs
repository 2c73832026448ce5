using Alloy.Tensors;

namespace Alloy.Runtime.Evaluation;

/// <summary>
/// Where few-shot examples come from: the tasks file itself (<see cref="IsTasksFile"/>: an item's examples are other
/// items of its task, never the item) or a separate pool file in the tasks-file format.
/// </summary>
public sealed record FewShotPool(IReadOnlyList<TaskItem> Items, string Source, bool IsTasksFile)
{
    /// <summary>
    /// Every item of the tasks file (not only those scored under a limit), as lm-eval-harness's same-split draw.
    /// </summary>
    public static FewShotPool TasksFile(IReadOnlyList<TaskItem> allItems, string source) => new(allItems, source, true);

    public static FewShotPool File(IReadOnlyList<TaskItem> items, string source) => new(items, source, false);
}

/// <summary>
/// Draws each item's few-shot examples: <c>count</c> distinct items of its task from the pool, in a random order, as
/// lm-eval-harness samples them without replacement. The draw is a function of (seed, task, the item's line) alone —
/// a counter-based <see cref="RandomStream"/> — so it does not depend on the thread count, the batch size, the limit
/// or the other items; when the pool is the tasks file, the item itself is left out by identity (a duplicate line
/// elsewhere in the file stays a candidate).
/// </summary>
public sealed class FewShotSampler
{
    private readonly FewShotPool _pool;
    private readonly int _count;
    private readonly ulong _seed;
    private readonly Dictionary<string, List<TaskItem>> _byTask = new(StringComparer.Ordinal);
    private readonly Dictionary<TaskItem, int> _positions = new(ReferenceEqualityComparer.Instance);

    /// <summary>
    /// Checks, before any model runs, that every task of <paramref name="scored"/> has enough examples in the pool
    /// and that the pool's items of a task are of the task's type.
    /// </summary>
    public FewShotSampler(FewShotPool pool, int count, int seed, IReadOnlyList<TaskItem> scored)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        _pool = pool;
        _count = count;
        _seed = unchecked((ulong)(long)seed);
        var types = new Dictionary<string, TaskItem>(StringComparer.Ordinal);
        foreach (var item in scored)
            types.TryAdd(item.Task, item);
        foreach (var candidate in pool.Items)
        {
            if (!types.TryGetValue(candidate.Task, out var first))
                continue;
            if (candidate.GetType() != first.GetType())
                throw new AlloyException(
                    $"{candidate.Where}: task '{candidate.Task}' is a {TypeName(first)} task ({first.Where}) but this "
                        + $"few-shot example is a {TypeName(candidate)} item"
                );
            var list = _byTask.TryGetValue(candidate.Task, out var known) ? known : _byTask[candidate.Task] = [];
            _positions[candidate] = list.Count;
            list.Add(candidate);
        }
        foreach (var task in types.Keys)
        {
            int available = _byTask.GetValueOrDefault(task)?.Count ?? 0;
            if (pool.IsTasksFile)
                available--; // an item is never its own example
            if (available < count)
            {
                string kind = (pool.IsTasksFile ? "other item" : "item") + (available == 1 ? "" : "s");
                throw new AlloyException(
                    $"task '{task}': {count} few-shot example{(count == 1 ? "" : "s")} asked "
                        + $"for, but {pool.Source} has only {Math.Max(available, 0)} {kind} of it"
                );
            }
        }
    }

    /// <summary>The examples for <paramref name="item"/>, in the order they go before it.</summary>
    public IReadOnlyList<TaskItem> Draw(TaskItem item)
    {
        if (_count == 0)
            return [];
        var candidates = _byTask[item.Task];
        int self = _pool.IsTasksFile && _positions.TryGetValue(item, out int at) ? at : -1;
        int size = candidates.Count - (self >= 0 ? 1 : 0);
        var stream = RandomStream.For(_seed, item.Task, item.Line);
        // A Fisher–Yates shuffle of [0, size) stopped after _count steps, keeping only the swapped entries.
        var swapped = new Dictionary<int, int>();
        var examples = new List<TaskItem>(_count);
        for (int k = 0; k < _count; k++)
        {
            int j = k + Below(stream.Bits(k), size - k);
            int pick = swapped.GetValueOrDefault(j, j);
            swapped[j] = swapped.GetValueOrDefault(k, k);
            examples.Add(candidates[self >= 0 && pick >= self ? pick + 1 : pick]);
        }
        return examples;
    }

    /// <summary>
    /// An integer in [0, n) from 64 random bits (Lemire's multiply-shift; its bias, n / 2^32, is negligible).
    /// </summary>
    private static int Below(ulong bits, int n) => (int)(((bits >> 32) * (ulong)n) >> 32);

    private static string TypeName(TaskItem item) => item is ChoiceItem ? TaskFile.ChoiceType : TaskFile.GenerateType;
}
