using Alloy.LinearAlgebra;

namespace Alloy.Runtime.Compute;

/// <summary>
/// The GEMM backend and the thread budget every layer of a model computes with. Work is always split the same way
/// (by shape, never by thread count), so the number of threads changes the speed and nothing else.
/// </summary>
public sealed class ComputeContext
{
    private readonly ParallelOptions _parallel;

    public ComputeContext(RuntimeOptions options)
    {
        if (options.Threads < 1)
            throw new AlloyException($"threads must be at least 1 (got {options.Threads})");
        Threads = options.Threads;
        // The runtime parallelises by tiles and attention items itself, so each backend call stays on its thread.
        Backend = (options.Backend ?? DenseBackend.Current).SingleThreaded;
        _parallel = new ParallelOptions { MaxDegreeOfParallelism = Threads };
    }

    public int Threads { get; }

    public DenseBackend Backend { get; }

    /// <summary>
    /// Runs <paramref name="body"/> for 0 ≤ i &lt; <paramref name="count"/>, on up to <see cref="Threads"/> threads.
    /// </summary>
    public void For(int count, Action<int> body)
    {
        if (count <= 0)
            return;
        if (count == 1 || Threads == 1)
        {
            for (int i = 0; i < count; i++)
                body(i);
            return;
        }
        Parallel.For(0, count, _parallel, body);
    }

    /// <summary>
    /// Σ <paramref name="term"/>(i) for 0 ≤ i &lt; <paramref name="count"/>: the terms are computed in parallel but
    /// added in index order, so a loss or a norm is the same double at any thread count.
    /// </summary>
    public double Sum(int count, Func<int, double> term)
    {
        var terms = new double[Math.Max(0, count)];
        For(count, i => terms[i] = term(i));
        double total = 0;
        foreach (double t in terms)
            total += t;
        return total;
    }

    /// <summary>
    /// Runs <paramref name="body"/>(start, end) over blocks of about <paramref name="perBlock"/> of
    /// <paramref name="count"/> items (the blocks depend on the counts only).
    /// </summary>
    public void ForBlocks(int count, int perBlock, Action<int, int> body)
    {
        int blocks = (count + perBlock - 1) / Math.Max(1, perBlock);
        For(blocks, block => body(block * perBlock, Math.Min(count, (block + 1) * perBlock)));
    }
}
