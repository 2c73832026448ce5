using System.Runtime.CompilerServices;
using Alloy.Checkpoints;
using Alloy.Methods;
using Alloy.Methods.TaskVectors;
using Alloy.Planning;
using Alloy.Tensors;

namespace Alloy.Execution;

public sealed record ExecutionOptions
{
    /// <summary>Worker threads for merge math (the writer runs on the calling thread).</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>
    /// Upper bound on the working buffers in flight (input memory maps are not counted: their pages are released as
    /// chunks and tensors finish, and between statistics passes for a tensor whose inputs exceed half of it).
    /// Elementwise and streamed methods merge any tensor in chunks within it; a whole-tensor method whose single tensor
    /// needs more is refused before anything is written.
    /// </summary>
    public long MemoryLimitBytes { get; init; } = DefaultMemoryLimit;

    /// <summary>
    /// Elements per work item for elementwise and streamed methods (rounded down to whole rows where a method needs
    /// them).
    /// </summary>
    public int ChunkElements { get; init; } = 1 << 20;

    /// <summary>1 GiB: room for a few hundred MB of chunks per thread plus a large whole-tensor item.</summary>
    public const long DefaultMemoryLimit = 1L << 30;

    /// <summary>
    /// True when the limit was set by the user (--memory-limit): a whole-tensor item that needs more is then refused.
    /// With the default budget such an item runs alone, after a warning that says how much it needs.
    /// </summary>
    public bool StrictMemoryLimit { get; init; }
}

/// <summary>Progress at the start of each phase and after each write: output tensors finished and bytes done.</summary>
public readonly record struct MergeProgress(int TensorsDone, int TensorsTotal, long BytesDone, long BytesTotal)
{
    /// <summary>
    /// "merging" (bytes are bytes written), or a pre-pass over the inputs, "statistics pass 1/3 (coarse)" … (bytes
    /// read).
    /// </summary>
    public string Phase { get; init; } = "merging";
}

/// <summary>
/// Runs a plan: work items (whole tensors, or chunks of tensors for elementwise and streamed methods) are computed in
/// parallel and written strictly in plan order by the calling thread, so the output bytes never depend on the thread
/// count. A streamed tensor (<see cref="MergeMethod.Chunking"/>) first gets a statistics item, whose passes run over
/// the memory-mapped inputs on all threads; its chunks start when it is done. Buffers are pooled and admitted against a
/// memory budget; unchanged tensors are copied straight from the input map.
/// </summary>
public static class MergeExecutor
{
    private const int CopyBlockBytes = 64 << 20;

    /// <summary>
    /// Runs <paramref name="plan"/> into <paramref name="sink"/>; the method's side outputs
    /// (<see cref="MergePlan.SideOutputs"/>) go into <paramref name="sideFolder"/>, or are not computed when it is
    /// null.
    /// </summary>
    public static void Run(
        MergePlan plan,
        ITensorSink sink,
        string? sideFolder,
        ExecutionOptions options,
        Action<MergeProgress>? progress = null,
        CancellationToken cancellation = default
    )
    {
        if (sideFolder is null && plan.SideOutputs is not null)
            plan = plan with
            {
                SideOutputs = null,
                Jobs = plan.Jobs.Select(j => j.Side is null ? j : j with { Side = null }).ToList(),
            };
        var scheduler = new ConcurrentExclusiveSchedulerPair(
            TaskScheduler.Default,
            Math.Max(1, options.Threads)
        ).ConcurrentScheduler;
        var pending = new Queue<(WorkItem Item, Task<byte[]?> Result, SideChunk? Side)>();
        int maxInFlight = Math.Max(2, options.Threads * 2);
        long reserved = 0,
            bytesDone = 0,
            bytesTotal = plan.OutputBytes;
        int tensorsDone = 0;
        if (options.StrictMemoryLimit && OversizedWholeTensors(plan, options).FirstOrDefault() is { } refusal)
            throw new AlloyException(refusal + " (raise it with --memory-limit)");
        foreach (var file in plan.Jobs.SelectMany(j => j.Inputs).Select(i => i.Tensor.File).Distinct())
            file.AdviseSequential();
        // Methods that trim by a threshold over whole models need it before their first tensor.
        var modelWideCuts = ModelWideCuts.Compute(plan, options, progress, cancellation);
        progress?.Invoke(new MergeProgress(0, plan.Jobs.Count, 0, bytesTotal));
        using var sideOutputs = sideFolder is null ? null : SideOutputWriter.Create(plan, sideFolder);
        // The statistics of the streamed tensor whose chunks are being admitted.
        Task<TensorStatistics>? statistics = null;

        void WriteOldest()
        {
            var (item, task, side) = pending.Dequeue();
            using var sideBuffers = side;
            var bytes = task.GetAwaiter().GetResult();
            try
            {
                if (item.Kind == ItemKind.Copy)
                    CopyStored(item, sink);
                else if (bytes is not null)
                    sink.Append(item.Job.Output, bytes.AsSpan(0, item.OutputByteCount));
                if (side is not null)
                    sideOutputs!.Append(side);
            }
            finally
            {
                if (bytes is not null)
                    BufferPool<byte>.Return(bytes);
                reserved -= item.Reservation;
            }
            if (item.Kind == ItemKind.Statistics)
                return;
            bytesDone += item.WrittenBytes;
            if (item.IsLast)
            {
                tensorsDone++;
                foreach (var input in item.Job.Inputs)
                    input.Tensor.File.Release(input.Tensor.Offset, input.Tensor.Info.ByteLength);
                foreach (var statistic in item.Job.Statistics ?? [])
                    statistic.Tensor.File.Release(statistic.Tensor.Offset, statistic.Tensor.Info.ByteLength);
            }
            else if (item.Chunked)
            {
                // Nothing reads a written chunk's inputs again (statistics passes come first), so resident memory stays
                // at a few chunks however large the tensor.
                foreach (var input in item.Job.Inputs)
                    TensorReader.Release(input, item.Start, item.Count);
            }
            progress?.Invoke(new MergeProgress(tensorsDone, plan.Jobs.Count, bytesDone, bytesTotal));
        }

        try
        {
            foreach (var item in WorkItems(plan, options))
            {
                cancellation.ThrowIfCancellationRequested();
                while (
                    pending.Count >= maxInFlight
                    || (pending.Count > 0 && reserved + item.Reservation > options.MemoryLimitBytes)
                )
                    WriteOldest();
                reserved += item.Reservation;
                Task<byte[]?> task;
                var side =
                    item.Kind == ItemKind.Merge
                        ? SideOutputWriter.Begin(item.Job, item.JobIndex, item.Start, item.Count)
                        : null;
                switch (item.Kind)
                {
                    case ItemKind.Copy:
                        task = Task.FromResult<byte[]?>(null);
                        break;
                    case ItemKind.Statistics:
                        statistics = GatherAsync(item, options, modelWideCuts, scheduler, cancellation);
                        // Nothing to write; waiting for it in write order surfaces its errors before its chunks'. Not
                        // cancellable itself, so that waiting for it always waits for the passes reading the inputs.
                        task = statistics.ContinueWith(
                            t =>
                            {
                                t.GetAwaiter().GetResult();
                                return (byte[]?)null;
                            },
                            CancellationToken.None,
                            TaskContinuationOptions.ExecuteSynchronously,
                            TaskScheduler.Default
                        );
                        break;
                    case ItemKind.Merge when item.Plan?.NeedsStatistics == true && item.Chunked:
                        task = statistics!.ContinueWith<byte[]?>(
                            t => Compute(item, null, t.GetAwaiter().GetResult().ForChunk(item.Chunk), side),
                            cancellation,
                            TaskContinuationOptions.None,
                            scheduler
                        );
                        break;
                    default:
                        // A chunk of a tensor that needs no statistics reads none; a whole tensor's method gathers its
                        // own.
                        var whole = item.Chunked
                            ? null
                            : modelWideCuts?.TensorCuts(item.JobIndex, item.Job.Inputs.Count);
                        task = Task.Factory.StartNew<byte[]?>(
                            () => Compute(item, whole, item.Chunked ? TensorStatistics.Empty : null, side),
                            cancellation,
                            TaskCreationOptions.None,
                            scheduler
                        );
                        break;
                }
                pending.Enqueue((item, task, side));
            }
            while (pending.Count > 0)
                WriteOldest();
            sideOutputs?.Complete();
        }
        catch
        {
            // Let running work finish before the caller disposes the memory maps it reads.
            foreach (var (_, task, side) in pending)
            {
                try
                {
                    task.Wait();
                }
                catch (AggregateException) { }
                if (task.IsCompletedSuccessfully && task.Result is { } buffer)
                    BufferPool<byte>.Return(buffer);
                side?.Dispose();
            }
            throw;
        }
    }

    /// <summary>
    /// A whole-tensor method cannot split a tensor: one line per tensor whose item alone needs more than the memory
    /// limit, saying how much it needs. Streamed methods are never listed: their items are chunks.
    /// </summary>
    public static IEnumerable<string> OversizedWholeTensors(MergePlan plan, ExecutionOptions options) =>
        plan
            .Jobs.Where(j => !j.IsCopy && j.Method!.Chunking(j.Info!, j.Output.Shape) is null)
            .Select(j => WorkItem.Whole(j, 0, null))
            .Where(item => item.Reservation > options.MemoryLimitBytes)
            .Select(item =>
                $"tensor '{item.Job.Output.Name}' needs {item.Reservation / (double)(1 << 30):F1} GiB of working "
                + $"memory for merge method '{item.Job.Method!.Name}', which works on whole tensors; the memory limit "
                + $"is {options.MemoryLimitBytes / (double)(1 << 30):F1} GiB"
            );

    /// <summary>
    /// The working memory of the plan's largest single work item (a chunk, a statistics pass, or a whole tensor).
    /// </summary>
    public static long LargestWorkItem(MergePlan plan, ExecutionOptions options) =>
        WorkItems(plan, options).Select(item => item.Reservation).DefaultIfEmpty(0).Max();

    /// <summary>
    /// How the executor feeds a tensor to its method, which decides how fast it goes (<see cref="ChunkPlan"/>).
    /// </summary>
    public enum Feed
    {
        Copy,
        Chunked,
        Streamed,
        StreamedCuts,
        StreamedRows,
        WholeTensor,
    }

    public static Feed FeedOf(TensorJob job)
    {
        if (job.IsCopy)
            return Feed.Copy;
        var plan = job.Method!.Chunking(job.Info!, job.Output.Shape);
        if (plan is null)
            return Feed.WholeTensor;
        if (!plan.NeedsStatistics)
            return Feed.Chunked;
        return plan.Cuts.Count > 0 ? Feed.StreamedCuts
            : plan.RowLength > 0 ? Feed.StreamedRows
            : Feed.Streamed;
    }

    private static IEnumerable<WorkItem> WorkItems(MergePlan plan, ExecutionOptions options)
    {
        for (int index = 0; index < plan.Jobs.Count; index++)
        {
            var job = plan.Jobs[index];
            long total = job.Output.ElementCount;
            if (job.IsCopy)
            {
                yield return new WorkItem(job, index, ItemKind.Copy, 0, 0, IsLast: true);
                continue;
            }
            var chunking = job.Method!.Chunking(job.Info!, job.Output.Shape);
            long chunk = chunking?.ChunkElements(options.ChunkElements) ?? long.MaxValue;
            if (chunking is null || total <= chunk)
            {
                if (total > Array.MaxLength)
                    throw new AlloyException(
                        $"tensor '{job.Output.Name}' has {total:N0} elements; merge method '{job.Method.Name}' needs "
                            + $"the whole tensor in memory and supports at most {Array.MaxLength:N0}"
                    );
                yield return WorkItem.Whole(job, index, chunking);
                continue;
            }
            if (chunk > Array.MaxLength)
                throw new AlloyException(
                    $"tensor '{job.Output.Name}' has rows of {chunking.RowLength:N0} elements; merge method "
                        + $"'{job.Method.Name}' needs whole rows in memory and supports at most {Array.MaxLength:N0}"
                );
            if (chunking.NeedsStatistics)
            {
                long unit = chunking.ChunkElements(StatisticsGatherer.UnitElements);
                int lanes = (int)Math.Min(Math.Max(1, options.Threads), (total + unit - 1) / unit);
                yield return new WorkItem(job, index, ItemKind.Statistics, 0, 0, IsLast: false, Plan: chunking)
                {
                    Reservation =
                        lanes * unit * 4L * (job.Inputs.Count + 1 + job.Method.ScratchBuffers(job.Inputs.Count)),
                };
            }
            int c = 0;
            for (long start = 0; start < total; start += chunk, c++)
                yield return new WorkItem(
                    job,
                    index,
                    ItemKind.Merge,
                    start,
                    (int)Math.Min(chunk, total - start),
                    IsLast: start + chunk >= total,
                    c,
                    chunking,
                    Chunked: true
                );
        }
    }

    /// <summary>
    /// Runs a streamed tensor's statistics passes (<see cref="ChunkPlan"/>): each pass is one lane per thread taking
    /// units in turn from the memory-mapped inputs; units keep their own sums and the gatherer folds them in unit
    /// order, so the result does not depend on which lane took which unit.
    /// </summary>
    private static async Task<TensorStatistics> GatherAsync(
        WorkItem item,
        ExecutionOptions options,
        ModelWideCuts? modelWideCuts,
        TaskScheduler scheduler,
        CancellationToken cancellation
    )
    {
        var job = item.Job;
        var plan = item.Plan!;
        using var gatherer = new StatisticsGatherer(
            job.Method!,
            plan,
            job.Output.ElementCount,
            plan.ChunkElements(options.ChunkElements),
            input =>
                modelWideCuts?.TensorCut(item.JobIndex, input)
                ?? throw new InvalidOperationException(
                    $"{job.Method!.Name} asked for a model-wide cut of '{job.Output.Name}' that was not computed"
                )
        );
        while (gatherer.NextPass() is { } kind)
        {
            var next = new StrongBox<int>(-1);
            var lanes = new Task[
                Math.Min(Math.Max(1, options.Threads), (gatherer.UnitCount + UnitsPerBatch - 1) / UnitsPerBatch)
            ];
            for (int l = 0; l < lanes.Length; l++)
                lanes[l] = Task.Factory.StartNew(
                    () => RunLane(job, gatherer, gatherer.NewLane(kind, sole: lanes.Length == 1), next),
                    cancellation,
                    TaskCreationOptions.None,
                    scheduler
                );
            await Task.WhenAll(lanes).ConfigureAwait(false);
            gatherer.EndPass();
        }
        return gatherer.Result;
    }

    /// <summary>
    /// Statistics units a lane takes at a time: consecutive, so their input pages are released in one call.
    /// </summary>
    private const int UnitsPerBatch = 16;

    private static void RunLane(TensorJob job, StatisticsGatherer gatherer, StatisticsPass lane, StrongBox<int> next)
    {
        var inputs = new float[job.Inputs.Count][];
        try
        {
            int size = gatherer.Unit(0).Count;
            for (int i = 0; i < inputs.Length; i++)
                inputs[i] = BufferPool<float>.Rent(size);
            for (int batch; (batch = Interlocked.Increment(ref next.Value)) * UnitsPerBatch < gatherer.UnitCount; )
            {
                int first = batch * UnitsPerBatch,
                    end = Math.Min(first + UnitsPerBatch, gatherer.UnitCount);
                for (int unit = first; unit < end; unit++)
                {
                    var (start, count) = gatherer.Unit(unit);
                    for (int i = 0; i < inputs.Length; i++)
                        TensorReader.ReadFloat32(job.Inputs[i], start, inputs[i].AsSpan(0, count));
                    gatherer.Accumulate(
                        lane,
                        unit,
                        new MergeInputs(job.Info!, inputs, count, start, job.Output.Shape, statistics: gatherer.Known)
                    );
                }
                // The next pass reads these pages again, from the page cache: keeping them mapped would make resident
                // memory grow with the tensor.
                long from = gatherer.Unit(first).Start,
                    to = gatherer.Unit(end - 1).Start + gatherer.Unit(end - 1).Count;
                foreach (var input in job.Inputs)
                    TensorReader.Release(input, from, to - from);
            }
            gatherer.EndLane(lane);
        }
        finally
        {
            foreach (var buffer in inputs)
                if (buffer is not null)
                    BufferPool<float>.Return(buffer);
        }
    }

    private static byte[] Compute(
        WorkItem item,
        MagnitudeCut?[]? modelWideCuts,
        TensorStatistics? statistics,
        SideChunk? side
    )
    {
        var job = item.Job;
        int n = item.Count;
        var inputs = new float[job.Inputs.Count][];
        var output = BufferPool<float>.Rent(n);
        var statisticValues = ReadStatistics(item);
        try
        {
            for (int i = 0; i < inputs.Length; i++)
            {
                inputs[i] = BufferPool<float>.Rent(n);
                TensorReader.ReadFloat32(job.Inputs[i], item.Start, inputs[i].AsSpan(0, n));
            }
            job.Method!.Merge(
                new MergeInputs(
                    job.Info!,
                    inputs,
                    n,
                    item.Start,
                    job.Output.Shape,
                    modelWideCuts,
                    statistics,
                    side?.Values,
                    statisticValues
                ),
                output.AsSpan(0, n)
            );
            side?.Encode();
            var bytes = BufferPool<byte>.Rent(item.OutputByteCount);
            TensorConvert.FromFloat32(output.AsSpan(0, n), job.Output.DType, bytes.AsSpan(0, item.OutputByteCount));
            return bytes;
        }
        finally
        {
            BufferPool<float>.Return(output);
            foreach (var buffer in inputs)
                if (buffer is not null)
                    BufferPool<float>.Return(buffer);
            foreach (var buffer in statisticValues?.Data ?? [])
                if (buffer is not null)
                    BufferPool<float>.Return(buffer);
        }
    }

    /// <summary>
    /// The statistics of a work item's inputs (data-aware methods), as float32: the item's entries of a per-entry
    /// statistic, or each input's whole Gram matrix.
    /// </summary>
    private static StatisticValues? ReadStatistics(WorkItem item)
    {
        if (item.Job.Statistics is not { } planned)
            return null;
        bool aligned = item.Job.Method!.Declaration.Statistics!.Shape == StatisticShape.SameAsTensor;
        var data = new float[planned.Count][];
        var lengths = new int[planned.Count];
        for (int i = 0; i < planned.Count; i++)
        {
            var tensor = planned[i].Tensor;
            long start = aligned ? item.Start : 0;
            lengths[i] = aligned ? item.Count : checked((int)tensor.Info.ElementCount);
            data[i] = BufferPool<float>.Rent(lengths[i]);
            tensor.ReadFloat32(start, data[i].AsSpan(0, lengths[i]));
        }
        return new StatisticValues(data, aligned, lengths);
    }

    private static void CopyStored(WorkItem item, ITensorSink sink)
    {
        var tensor = item.Job.Inputs[0].Tensor;
        long length = tensor.Info.ByteLength;
        for (long offset = 0; offset < length; offset += CopyBlockBytes)
            sink.Append(item.Job.Output, tensor.Bytes(offset, (int)Math.Min(CopyBlockBytes, length - offset)));
        if (length == 0)
            sink.Append(item.Job.Output, ReadOnlySpan<byte>.Empty);
    }

    private enum ItemKind
    {
        Copy,
        Merge,
        Statistics,
    }

    /// <summary>
    /// A whole tensor, a chunk of one (<paramref name="Chunked"/>: number <paramref name="Chunk"/> of its plan's
    /// chunking), or a streamed tensor's statistics passes.
    /// </summary>
    private sealed record WorkItem(
        TensorJob Job,
        int JobIndex,
        ItemKind Kind,
        long Start,
        int Count,
        bool IsLast,
        int Chunk = 0,
        ChunkPlan? Plan = null,
        bool Chunked = false
    )
    {
        public static WorkItem Whole(TensorJob job, int index, ChunkPlan? plan) =>
            new(
                job,
                index,
                ItemKind.Merge,
                0,
                (int)Math.Min(job.Output.ElementCount, Array.MaxLength),
                IsLast: true,
                Plan: plan
            );

        public int OutputByteCount => Kind == ItemKind.Merge ? Count * Job.Output.DType.Size() : 0;

        public long WrittenBytes => Kind == ItemKind.Copy ? Job.Output.ByteLength : OutputByteCount;

        /// <summary>
        /// Working memory: for a merge, float32 inputs, output and the method's scratch buffers, plus the output bytes
        /// and side outputs; for statistics, each lane's unit of inputs and scratch.
        /// </summary>
        public long Reservation { get; init; } =
            Kind != ItemKind.Merge
                ? 0
                : (long)Count
                    * (
                        4L * (Job.Inputs.Count + 1 + Job.Method!.ScratchBuffers(Job.Inputs.Count))
                        + Job.Output.DType.Size()
                    )
                    + (Job.Side?.WorkingBytes(Count) ?? 0)
                    + StatisticBytes(Job, Count);

        /// <summary>Float32 statistics read with the inputs, and the working memory the method needs with them.
        /// </summary>
        private static long StatisticBytes(TensorJob job, int count) =>
            job.Statistics is not { } statistics ? 0
            : job.Method!.Declaration.Statistics!.Shape == StatisticShape.SameAsTensor ? 4L * count * statistics.Count
            : statistics.Sum(s => 4L * s.Tensor.Info.ElementCount) + job.Method.ExtraWorkingBytes(job.Output.Shape);
    }
}
