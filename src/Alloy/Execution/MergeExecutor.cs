using System.Buffers;
using Alloy.Checkpoints;
using Alloy.Methods;
using Alloy.Planning;
using Alloy.Tensors;

namespace Alloy.Execution;

public sealed record ExecutionOptions
{
    /// <summary>Worker threads for merge math (the writer runs on the calling thread).</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>
    /// Upper bound on the working buffers in flight (input memory maps are not counted: their pages are released as
    /// tensors finish). Elementwise methods stream any tensor in chunks within it; a whole-tensor method whose single
    /// tensor needs more is refused before anything is written.
    /// </summary>
    public long MemoryLimitBytes { get; init; } = DefaultMemoryLimit;

    /// <summary>Elements per work item for elementwise methods.</summary>
    public int ChunkElements { get; init; } = 1 << 20;

    /// <summary>1 GiB: room for a few hundred MB of chunks per thread plus a large whole-tensor item.</summary>
    public const long DefaultMemoryLimit = 1L << 30;

    /// <summary>
    /// True when the limit was set by the user (--memory-limit): a whole-tensor item that needs more is then refused.
    /// With the default budget such an item runs alone, after a warning that says how much it needs.
    /// </summary>
    public bool StrictMemoryLimit { get; init; }
}

/// <summary>Progress after each write: output tensors finished and output bytes written.</summary>
public readonly record struct MergeProgress(int TensorsDone, int TensorsTotal, long BytesDone, long BytesTotal);

/// <summary>
/// Runs a plan: work items (whole tensors, or chunks of tensors for elementwise methods) are computed in parallel
/// and written strictly in plan order by the calling thread, so the output bytes never depend on the thread count.
/// Buffers are pooled and admitted against a memory budget; unchanged tensors are copied straight from the input map.
/// </summary>
public static class MergeExecutor
{
    private const int CopyBlockBytes = 64 << 20;

    public static void Run(MergePlan plan, ShardedWriter writer, ExecutionOptions options, Action<MergeProgress>? progress = null, CancellationToken cancellation = default)
    {
        var scheduler = new ConcurrentExclusiveSchedulerPair(TaskScheduler.Default, Math.Max(1, options.Threads)).ConcurrentScheduler;
        var pending = new Queue<(WorkItem Item, Task<byte[]?> Result, SideChunk? Side)>();
        int maxInFlight = Math.Max(2, options.Threads * 2);
        long reserved = 0, bytesDone = 0, bytesTotal = plan.OutputBytes;
        int tensorsDone = 0;
        if (options.StrictMemoryLimit && OversizedWholeTensors(plan, options).FirstOrDefault() is { } refusal)
            throw new AlloyException(refusal + " (raise it with --memory-limit)");
        foreach (var file in plan.Jobs.SelectMany(j => j.Inputs).Select(i => i.Tensor.File).Distinct())
            file.AdviseSequential();
        // Methods that trim by a threshold over whole models need it before their first tensor.
        var modelWideCuts = ModelWideCuts.Compute(plan, options, cancellation);
        using var sideOutputs = SideOutputWriter.Create(plan, writer.Folder);

        void WriteOldest()
        {
            var (item, task, side) = pending.Dequeue();
            using var sideBuffers = side;
            var bytes = task.GetAwaiter().GetResult();
            try
            {
                if (bytes is null) CopyStored(item, writer);
                else writer.Append(item.Job.Output.Name, bytes.AsSpan(0, item.OutputByteCount));
                if (side is not null) sideOutputs!.Append(side);
            }
            finally
            {
                if (bytes is not null) ArrayPool<byte>.Shared.Return(bytes);
                reserved -= item.Reservation;
            }
            bytesDone += item.WrittenBytes;
            if (item.IsLast)
            {
                tensorsDone++;
                foreach (var input in item.Job.Inputs)
                    input.Tensor.File.Release(input.Tensor.Offset, input.Tensor.Info.ByteLength);
            }
            progress?.Invoke(new MergeProgress(tensorsDone, plan.Jobs.Count, bytesDone, bytesTotal));
        }

        try
        {
            foreach (var item in WorkItems(plan, options.ChunkElements))
            {
                cancellation.ThrowIfCancellationRequested();
                while (pending.Count >= maxInFlight || (pending.Count > 0 && reserved + item.Reservation > options.MemoryLimitBytes))
                    WriteOldest();
                reserved += item.Reservation;
                var side = SideOutputWriter.Begin(item.Job, item.JobIndex, item.Start, item.Count);
                var task = item.Job.IsCopy
                    ? Task.FromResult<byte[]?>(null)
                    : Task.Factory.StartNew<byte[]?>(() => Compute(item, modelWideCuts, side), cancellation, TaskCreationOptions.None, scheduler);
                pending.Enqueue((item, task, side));
            }
            while (pending.Count > 0) WriteOldest();
            sideOutputs?.Complete();
        }
        catch
        {
            // Let running work finish before the caller disposes the memory maps it reads.
            foreach (var (_, task, side) in pending)
            {
                try { task.Wait(); } catch (AggregateException) { }
                if (task.IsCompletedSuccessfully && task.Result is { } buffer) ArrayPool<byte>.Shared.Return(buffer);
                side?.Dispose();
            }
            throw;
        }
    }

    /// <summary>
    /// A whole-tensor method cannot split a tensor: one line per tensor whose item alone needs more than the memory
    /// limit, saying how much it needs.
    /// </summary>
    public static IEnumerable<string> OversizedWholeTensors(MergePlan plan, ExecutionOptions options) =>
        plan.Jobs.Where(j => !j.IsCopy && !j.Method!.IsElementwise)
            .Select(j => WorkItem.Whole(j, 0))
            .Where(item => item.Reservation > options.MemoryLimitBytes)
            .Select(item => $"tensor '{item.Job.Output.Name}' needs {item.Reservation / (double)(1 << 30):F1} GiB of working memory for merge method " +
                $"'{item.Job.Method!.Name}', which works on whole tensors; the memory limit is {options.MemoryLimitBytes / (double)(1 << 30):F1} GiB");

    private static IEnumerable<WorkItem> WorkItems(MergePlan plan, int chunkElements)
    {
        for (int index = 0; index < plan.Jobs.Count; index++)
        {
            var job = plan.Jobs[index];
            long total = job.Output.ElementCount;
            if (job.IsCopy)
            {
                yield return new WorkItem(job, index, 0, 0, IsLast: true);
                continue;
            }
            if (!job.Method!.IsElementwise || total <= chunkElements)
            {
                if (total > Array.MaxLength)
                    throw new AlloyException($"tensor '{job.Output.Name}' has {total:N0} elements; merge method '{job.Method.Name}' needs the whole tensor in memory and supports at most {Array.MaxLength:N0}");
                yield return WorkItem.Whole(job, index);
                continue;
            }
            for (long start = 0; start < total; start += chunkElements)
                yield return new WorkItem(job, index, start, (int)Math.Min(chunkElements, total - start), IsLast: start + chunkElements >= total);
        }
    }

    private static byte[] Compute(WorkItem item, ModelWideCuts? modelWideCuts, SideChunk? side)
    {
        var job = item.Job;
        int n = item.Count;
        var inputs = new float[job.Inputs.Count][];
        var output = ArrayPool<float>.Shared.Rent(n);
        try
        {
            for (int i = 0; i < inputs.Length; i++)
            {
                inputs[i] = ArrayPool<float>.Shared.Rent(n);
                TensorReader.ReadFloat32(job.Inputs[i], item.Start, inputs[i].AsSpan(0, n));
            }
            var cuts = modelWideCuts?.For(item.JobIndex, inputs.Length, item.Start, n);
            job.Method!.Merge(new MergeInputs(job.Info!, inputs, n, item.Start, job.Output.Shape, cuts, side?.Values), output.AsSpan(0, n));
            side?.Encode();
            var bytes = ArrayPool<byte>.Shared.Rent(item.OutputByteCount);
            TensorConvert.FromFloat32(output.AsSpan(0, n), job.Output.DType, bytes.AsSpan(0, item.OutputByteCount));
            return bytes;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(output);
            foreach (var buffer in inputs)
                if (buffer is not null) ArrayPool<float>.Shared.Return(buffer);
        }
    }

    private static void CopyStored(WorkItem item, ShardedWriter writer)
    {
        var tensor = item.Job.Inputs[0].Tensor;
        long length = tensor.Info.ByteLength;
        for (long offset = 0; offset < length; offset += CopyBlockBytes)
            writer.Append(item.Job.Output.Name, tensor.Bytes(offset, (int)Math.Min(CopyBlockBytes, length - offset)));
        if (length == 0) writer.Append(item.Job.Output.Name, ReadOnlySpan<byte>.Empty);
    }

    /// <summary>A whole tensor or a chunk of one.</summary>
    private sealed record WorkItem(TensorJob Job, int JobIndex, long Start, int Count, bool IsLast)
    {
        public static WorkItem Whole(TensorJob job, int index) => new(job, index, 0, (int)Math.Min(job.Output.ElementCount, Array.MaxLength), IsLast: true);

        public int OutputByteCount => Job.IsCopy ? 0 : Count * Job.Output.DType.Size();

        public long WrittenBytes => Job.IsCopy ? Job.Output.ByteLength : OutputByteCount;

        /// <summary>Working memory: float32 inputs, output and the method's scratch buffers, the output bytes, and side outputs.</summary>
        public long Reservation => Job.IsCopy ? 0
            : (long)Count * (4L * (Job.Inputs.Count + 1 + Job.Method!.ScratchBuffers(Job.Inputs.Count)) + Job.Output.DType.Size())
              + (Job.Side?.WorkingBytes(Count) ?? 0);
    }
}
