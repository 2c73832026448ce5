using System.Buffers;
using Alloy.Checkpoints;
using Alloy.Methods;
using Alloy.Planning;
using Alloy.Tensors;

namespace Alloy.Execution;

/// <summary>
/// One work item's side outputs (<see cref="TensorJob.Side"/>): the values the method fills, then, encoded on the
/// worker thread, each side tensor's bytes for the item's entries.
/// </summary>
internal sealed class SideChunk : IDisposable
{
    private readonly byte[]?[] _encoded;
    private readonly int[] _encodedLength;

    public SideChunk(TensorJob job, int jobIndex, long start, int count)
    {
        Job = job;
        JobIndex = jobIndex;
        Start = start;
        Values = new SideValues(job.Side!, count);
        _encoded = new byte[job.Side!.Tensors.Count][];
        _encodedLength = new int[_encoded.Length];
    }

    public TensorJob Job { get; }
    public int JobIndex { get; }
    public long Start { get; }
    public SideValues Values { get; }
    public int Count => Values.Length;
    public bool EndsTensor => Start + Count == Job.Output.ElementCount;

    /// <summary>
    /// Encodes every side tensor's values (rounded once, or packed into bits) and releases the float buffers.
    /// </summary>
    public void Encode()
    {
        var tensors = Job.Side!.Tensors;
        for (int k = 0; k < tensors.Count; k++)
        {
            var values = Values.Tensor(k);
            if (tensors[k].IsPackedBits)
            {
                long columns = PackedBits.Columns(Job.Output.Shape);
                _encoded[k] = ArrayPool<byte>.Shared.Rent(Math.Max(1, PackedBits.ByteCount(Start, Count, columns)));
                _encodedLength[k] = PackedBits.Pack(values, Start, columns, _encoded[k]);
            }
            else
            {
                _encodedLength[k] = Count * tensors[k].DType.Size();
                _encoded[k] = ArrayPool<byte>.Shared.Rent(Math.Max(1, _encodedLength[k]));
                TensorConvert.FromFloat32(values, tensors[k].DType, _encoded[k].AsSpan(0, _encodedLength[k]));
            }
        }
        Values.Dispose();
    }

    /// <summary>Side tensor <paramref name="k"/>'s encoded bytes (after <see cref="Encode"/>).</summary>
    public Span<byte> Encoded(int k) => _encoded[k].AsSpan(0, _encodedLength[k]);

    public void Dispose()
    {
        Values.Dispose();
        for (int k = 0; k < _encoded.Length; k++)
        {
            if (_encoded[k] is not { } buffer)
                continue;
            ArrayPool<byte>.Shared.Return(buffer);
            _encoded[k] = null;
        }
    }
}

/// <summary>
/// Writes a method's side outputs (<see cref="MergePlan.SideOutputs"/>) into the output's temporary folder as the
/// executor writes the model: side tensors in plan order into their safetensors files (each header first, data
/// streamed), every tensor's totals added up exactly as its work items arrive, and, after the last tensor, the files
/// the method makes from the totals. A failed merge deletes the temporary folder, and these files with it.
/// </summary>
internal sealed class SideOutputWriter : IDisposable
{
    private readonly string _folder;
    private readonly SideOutputPlan _plan;
    private readonly Dictionary<string, ShardedWriter> _writers;
    private readonly List<TensorTotals> _totals = [];

    // The tensor being written: its totals so far, and per packed side tensor the last byte written so far, held back
    // because the next work item may set bits of it.
    private int _job = -1;
    private ExactSum[] _running = [];
    private (long Index, byte Value)?[] _held = [];

    private SideOutputWriter(string folder, SideOutputPlan plan, Dictionary<string, ShardedWriter> writers)
    {
        _folder = folder;
        _plan = plan;
        _writers = writers;
    }

    /// <summary>Plans and opens the side files, or returns null when the plan has no side outputs.</summary>
    public static SideOutputWriter? Create(MergePlan plan, string folder)
    {
        if (plan.SideOutputs is not { } side)
            return null;
        var files = new List<(string File, List<TensorInfo> Tensors)>();
        var byFile = new Dictionary<string, List<TensorInfo>>(StringComparer.Ordinal);
        foreach (var job in plan.Jobs)
        foreach (var tensor in job.Side?.Tensors ?? [])
        {
            if (!byFile.TryGetValue(tensor.File, out var list))
            {
                byFile[tensor.File] = list = [];
                files.Add((tensor.File, list));
            }
            list.Add(new TensorInfo(tensor.Name, tensor.DType, tensor.StoredShape(job.Output.Shape)));
        }
        var writers = new Dictionary<string, ShardedWriter>(StringComparer.Ordinal);
        var result = new SideOutputWriter(folder, side, writers);
        try
        {
            foreach (var (file, tensors) in files)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(folder, file))!);
                writers[file] = new ShardedWriter(folder, ShardPlan.SingleFile(tensors, file));
            }
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>A work item's side outputs to fill, or null when its tensor has none.</summary>
    public static SideChunk? Begin(TensorJob job, int jobIndex, long start, int count) =>
        job.Side is null ? null : new SideChunk(job, jobIndex, start, count);

    /// <summary>Writes an encoded work item; items arrive in plan order, as the model's do.</summary>
    public void Append(SideChunk chunk)
    {
        var tensors = chunk.Job.Side!.Tensors;
        if (chunk.JobIndex != _job)
        {
            _job = chunk.JobIndex;
            _running = Enumerable.Range(0, chunk.Job.Side.Totals).Select(_ => new ExactSum()).ToArray();
            _held = new (long, byte)?[tensors.Count];
        }
        for (int k = 0; k < tensors.Count; k++)
        {
            var writer = _writers[tensors[k].File];
            var bytes = chunk.Encoded(k);
            if (!tensors[k].IsPackedBits || bytes.IsEmpty)
            {
                writer.Append(tensors[k].Name, bytes);
                continue;
            }
            long columns = PackedBits.Columns(chunk.Job.Output.Shape);
            if (_held[k] is { } held)
            {
                // Consecutive items share a byte when one ends inside it: its bits combine.
                if (held.Index == PackedBits.ByteOf(chunk.Start, columns))
                    bytes[0] |= held.Value;
                else
                    writer.Append(tensors[k].Name, [held.Value]);
                _held[k] = null;
            }
            if (chunk.EndsTensor)
            {
                writer.Append(tensors[k].Name, bytes);
                continue;
            }
            writer.Append(tensors[k].Name, bytes[..^1]);
            _held[k] = (PackedBits.ByteOf(chunk.Start + chunk.Count - 1, columns), bytes[^1]);
        }
        for (int t = 0; t < _running.Length; t++)
            _running[t].Add(chunk.Values.Totals[t]);
        if (chunk.EndsTensor)
        {
            if (_running.Length > 0)
                _totals.Add(
                    new TensorTotals(
                        chunk.Job.Info!,
                        chunk.Job.Output.ElementCount,
                        _running.Select(s => s.Value).ToArray()
                    )
                );
            _job = -1;
        }
    }

    /// <summary>
    /// After the last tensor: finishes the side files and writes the method's files made from the totals.
    /// </summary>
    public void Complete()
    {
        foreach (var writer in _writers.Values)
            writer.Complete();
        foreach (var file in _plan.Finish(_totals))
        {
            SidePaths.Check(file.Path);
            var path = Path.Combine(_folder, file.Path);
            try
            {
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                File.WriteAllText(path, file.Text);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new AlloyException($"{path}: cannot write: {Messages.OneLine(e.Message)}", e);
            }
        }
    }

    public void Dispose()
    {
        foreach (var writer in _writers.Values)
            writer.Dispose();
    }
}
