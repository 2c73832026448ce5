using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.ExceptionServices;
using Alloy.Methods.TaskVectors;
using Alloy.Planning;
using Alloy.Tensors;

namespace Alloy.Execution;

/// <summary>
/// The model-wide pre-pass (<see cref="Methods.MergeMethod.ModelWideKeepFraction"/>): before any tensor is merged,
/// finds for each model the magnitude cut that keeps exactly ⌊fraction·N⌋ of the N task-vector entries of all its
/// tensors that asked, and gives every tensor its share of the cut.
/// </summary>
/// <remarks>
/// The cut is a <see cref="CutSearch"/> over a population that spans tensors, the same search a streamed tensor runs
/// over itself: two streaming passes over the memory-mapped inputs (coarse, then fine), chunk by chunk on all threads,
/// so memory stays at small tables per model and thread. When the threshold magnitude is shared by more entries than
/// the cut may keep, a third pass counts them per chunk, and they are kept in plan order (tensor, then input, then
/// index), the same tie rule as the per-tensor top-k.
/// </remarks>
internal sealed class ModelWideCuts
{
    /// <summary>One model's task-vector entries over every (tensor, input) that joined it.</summary>
    private sealed class Population(string model, double fraction, string firstTensor)
    {
        public string Model { get; } = model;
        public double Fraction { get; } = fraction;
        public string FirstTensor { get; } = firstTensor;
        public long Count { get; set; }
        public CutSearch? Search { get; set; }
        public MagnitudeCut Cut => Search!.Cuts[0];
        public bool SplitsTies => Search!.SplitsTies(0);
    }

    /// <summary>A (tensor, input) whose task vector belongs to a population.</summary>
    private sealed class Unit(int input, Population population, int chunks)
    {
        public int Input { get; } = input;
        public Population Population { get; } = population;

        /// <summary>
        /// Entries equal to the cut's key per chunk, then (after the pass) the population's such entries before each
        /// chunk.
        /// </summary>
        public long[] Ties { get; } = new long[chunks + 1];
    }

    private sealed record Chunk(TensorJob Job, IReadOnlyList<Unit> Units, int Index, long Start, int Count);

    private readonly Dictionary<int, List<Unit>> _units;

    private ModelWideCuts(Dictionary<int, List<Unit>> units) => _units = units;

    /// <summary>Runs the pre-pass, or returns null when no tensor of the plan asks for a model-wide cut.</summary>
    public static ModelWideCuts? Compute(
        MergePlan plan,
        ExecutionOptions options,
        Action<MergeProgress>? progress,
        CancellationToken cancellation
    )
    {
        var populations = new Dictionary<int, Population>();
        var units = new Dictionary<int, List<Unit>>();
        var chunks = new List<Chunk>();
        // The executor's chunks of a flat tensor, so each chunk's share of the ties can be read off directly.
        int chunkElements = options.ChunkElements;
        for (int j = 0; j < plan.Jobs.Count; j++)
        {
            var job = plan.Jobs[j];
            if (job.IsCopy)
                continue;
            long elements = job.Output.ElementCount;
            int chunkCount = (int)((elements + chunkElements - 1) / chunkElements);
            for (int i = 0; i < job.Inputs.Count; i++)
            {
                if (job.Method!.ModelWideKeepFraction(job.Info!, i) is not { } fraction)
                    continue;
                if (job.Info!.BaseIndex < 0)
                    throw new InvalidOperationException(
                        $"{job.Method.Name} asked for a model-wide cut of task vectors, but tensor '{job.Output.Name}' "
                            + $"has no base model"
                    );
                string model = job.Info!.ModelNames[i];
                if (!populations.TryGetValue(job.Info.ModelIndices[i], out var population))
                    populations[job.Info.ModelIndices[i]] = population = new Population(
                        model,
                        fraction,
                        job.Output.Name
                    );
                else if (population.Fraction != fraction)
                    throw new AlloyException(
                        $"{job.Method.Name}: a model-wide trim needs one density per model, but '{model}' has density "
                            + $"{population.Fraction} for '{population.FirstTensor}' and {fraction} for "
                            + $"'{job.Output.Name}'; set that model's density once, without gradients or filters"
                    );
                population.Count += elements;
                if (!units.TryGetValue(j, out var list))
                    units[j] = list = [];
                list.Add(new Unit(i, population, chunkCount));
            }
            if (units.TryGetValue(j, out var jobUnits))
                for (int c = 0; c < chunkCount; c++)
                    chunks.Add(
                        new Chunk(
                            job,
                            jobUnits,
                            c,
                            (long)c * chunkElements,
                            (int)Math.Min(chunkElements, elements - (long)c * chunkElements)
                        )
                    );
        }
        if (units.Count == 0)
            return null;

        try
        {
            foreach (var p in populations.Values)
                p.Search = new CutSearch(p.Count, [Sparsify.KeepCount(p.Fraction, p.Count)]);
            // Coarse, then fine: each pass counts into per-thread tallies, added when the thread is done.
            int pass = 0;
            while (populations.Values.Any(p => p.Search!.Counting))
            {
                var reporter = new PassProgress(
                    plan,
                    chunks,
                    ++pass == 1 ? "statistics pass 1/3 (coarse)" : "statistics pass 2/3 (fine)",
                    progress
                );
                ForEachChunk(
                    chunks,
                    options,
                    reporter,
                    cancellation,
                    () => new Dictionary<Population, CutSearch.Tally>(),
                    (unit, _, delta, local) =>
                    {
                        var search = unit.Population.Search!;
                        if (!search.Counting)
                            return;
                        if (!local.TryGetValue(unit.Population, out var tally))
                            local[unit.Population] = tally = search.NewTally();
                        search.Count(tally, delta);
                    },
                    local =>
                    {
                        foreach (var (population, tally) in local)
                        {
                            population.Search!.Add(tally);
                            tally.Dispose();
                        }
                    }
                );
                foreach (var p in populations.Values)
                    if (p.Search!.Counting)
                        p.Search.EndPass();
            }
        }
        finally
        {
            foreach (var p in populations.Values)
                p.Search?.Dispose();
        }

        if (populations.Values.Any(p => p.SplitsTies))
        {
            var reporter = new PassProgress(plan, chunks, "statistics pass 3/3 (ties)", progress);
            ForEachChunk(
                chunks,
                options,
                reporter,
                cancellation,
                () => 0,
                (unit, chunk, delta, _) =>
                {
                    if (unit.Population.SplitsTies)
                        unit.Ties[chunk] = MagnitudeCut.CountKey(delta, unit.Population.Cut.Key);
                },
                _ => { }
            );
            // Prefix sums in plan order turn per-chunk counts into "ties of this population before this chunk".
            var before = new Dictionary<Population, long>();
            foreach (var unit in units.OrderBy(u => u.Key).SelectMany(u => u.Value).Where(u => u.Population.SplitsTies))
            {
                long running = before.GetValueOrDefault(unit.Population);
                for (int c = 0; c < unit.Ties.Length; c++)
                    (unit.Ties[c], running) = (running, running + unit.Ties[c]);
                before[unit.Population] = running;
            }
        }
        return new ModelWideCuts(units);
    }

    /// <summary>
    /// Input <paramref name="input"/>'s share of its cut over tensor <paramref name="job"/>, and when it keeps only
    /// some of the entries equal to the key, the tensor's such entries before each of the executor's chunks (length
    /// chunks + 1).
    /// </summary>
    public (MagnitudeCut Cut, long[]? TiesBefore) TensorCut(int job, int input)
    {
        var unit = _units[job].Single(u => u.Input == input);
        var cut = unit.Population.Cut;
        if (!unit.Population.SplitsTies)
            return (cut == MagnitudeCut.KeepNone ? cut : cut with { TiesKept = long.MaxValue }, null);
        long first = unit.Ties[0];
        var before = unit.Ties.Select(t => t - first).ToArray();
        return (cut with { TiesKept = Math.Clamp(cut.TiesKept - first, 0, before[^1]) }, before);
    }

    /// <summary>
    /// The tensor shares of job <paramref name="job"/>'s cuts, one per input (null for inputs that did not ask), or
    /// null.
    /// </summary>
    public MagnitudeCut?[]? TensorCuts(int job, int inputCount)
    {
        if (!_units.TryGetValue(job, out var units))
            return null;
        var cuts = new MagnitudeCut?[inputCount];
        foreach (var unit in units)
            cuts[unit.Input] = TensorCut(job, unit.Input).Cut;
        return cuts;
    }

    /// <summary>
    /// Calls <paramref name="body"/> with every unit's task vector x − base, chunk by chunk, in parallel.
    /// </summary>
    private static void ForEachChunk<TLocal>(
        List<Chunk> chunks,
        ExecutionOptions options,
        PassProgress reporter,
        CancellationToken cancellation,
        Func<TLocal> local,
        Action<Unit, int, ReadOnlySpan<float>, TLocal> body,
        Action<TLocal> finish
    )
    {
        var parallel = new ParallelOptions
        {
            MaxDegreeOfParallelism = Math.Max(1, options.Threads),
            CancellationToken = cancellation,
        };
        try
        {
            Parallel.ForEach(
                chunks,
                parallel,
                local,
                (chunk, _, state) =>
                {
                    var @base = ArrayPool<float>.Shared.Rent(chunk.Count);
                    var delta = ArrayPool<float>.Shared.Rent(chunk.Count);
                    try
                    {
                        var info = chunk.Job.Info!;
                        TensorReader.ReadFloat32(
                            chunk.Job.Inputs[info.BaseIndex],
                            chunk.Start,
                            @base.AsSpan(0, chunk.Count)
                        );
                        foreach (var unit in chunk.Units)
                        {
                            var span = delta.AsSpan(0, chunk.Count);
                            TensorReader.ReadFloat32(chunk.Job.Inputs[unit.Input], chunk.Start, span);
                            TensorPrimitives.Subtract(span, @base.AsSpan(0, chunk.Count), span);
                            body(unit, chunk.Index, span, state);
                        }
                        // The pre-pass reads the whole model before anything is merged: keep none of it mapped.
                        foreach (var input in chunk.Job.Inputs)
                            TensorReader.Release(input, chunk.Start, chunk.Count);
                        reporter.Done(chunk);
                    }
                    finally
                    {
                        ArrayPool<float>.Shared.Return(@base);
                        ArrayPool<float>.Shared.Return(delta);
                    }
                    return state;
                },
                finish
            );
        }
        catch (AggregateException e) when (e.InnerExceptions.Count == 1)
        {
            ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }
    }

    /// <summary>A pass's progress: bytes of stored inputs read, reported in increasing order from any thread.</summary>
    private sealed class PassProgress
    {
        private readonly Action<MergeProgress>? _progress;
        private readonly string _phase;
        private readonly int _tensors;
        private readonly long _total;
        private long _done;

        public PassProgress(MergePlan plan, List<Chunk> chunks, string phase, Action<MergeProgress>? progress)
        {
            _progress = progress;
            _phase = phase;
            _tensors = plan.Jobs.Count;
            _total = chunks.Sum(Bytes);
            progress?.Invoke(new MergeProgress(0, _tensors, 0, _total) { Phase = phase });
        }

        public void Done(Chunk chunk)
        {
            if (_progress is null)
                return;
            lock (this)
            {
                _done += Bytes(chunk);
                _progress(new MergeProgress(0, _tensors, _done, _total) { Phase = _phase });
            }
        }

        private static long Bytes(Chunk chunk) =>
            (long)chunk.Count
            * chunk
                .Units.Select(u => u.Input)
                .Append(chunk.Job.Info!.BaseIndex)
                .Sum(i => chunk.Job.Inputs[i].Tensor.Info.DType.Size());
    }
}
