using System.Buffers;
using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;
using Alloy.Tensors;

namespace Alloy.Checkpoints;

/// <summary>
/// Writes a <see cref="ShardPlan"/> into a folder as tensor bytes arrive in plan order: each shard's header first,
/// then its data, through a buffered stream, so memory stays flat whatever the model size. A shard file is created
/// when its first tensor begins and closed when its last byte arrives. Not thread-safe: one producer appends.
/// </summary>
public sealed class ShardedWriter : IDisposable, ITensorSink
{
    /// <summary>Large writes amortize syscalls; bigger appends bypass the buffer.</summary>
    private const int BufferSize = 4 << 20;

    private enum ShardState
    {
        NotStarted,
        Open,
        Done,
    }

    private readonly string _folder;
    private readonly ShardPlan _plan;
    private readonly IReadOnlyDictionary<string, string> _indexMetadata;
    private readonly IReadOnlyDictionary<string, string>? _fileMetadata;
    private readonly (int Shard, bool Last)[] _slots; // per flat tensor: its shard, and whether it ends it
    private readonly TensorInfo[] _tensors; // plan order, flattened across shards
    private readonly ShardState[] _states;
    private FileStream? _stream;
    private long _streamExpectedLength;
    private int _position; // index into _tensors of the tensor being written
    private long _written; // bytes of _tensors[_position] received so far
    private bool _completed;
    private bool _disposed;

    /// <param name="folder">Created if missing. Existing files with the shard names are overwritten.</param>
    /// <param name="indexMetadata">Extra entries for the index's "metadata" (e.g. mergekit_version); not
    /// total_size.</param>
    /// <param name="fileMetadata">Extra entries for every shard header's "__metadata__" (beside "format":
    /// "pt").</param>
    public ShardedWriter(
        string folder,
        ShardPlan plan,
        IReadOnlyDictionary<string, string>? indexMetadata = null,
        IReadOnlyDictionary<string, string>? fileMetadata = null
    )
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        ArgumentNullException.ThrowIfNull(plan);
        if (indexMetadata is not null && indexMetadata.ContainsKey("total_size"))
        {
            throw new ArgumentException("total_size is computed by the writer", nameof(indexMetadata));
        }
        _folder = Path.GetFullPath(folder);
        _plan = plan;
        _indexMetadata = indexMetadata ?? new Dictionary<string, string>();
        if (fileMetadata is not null && fileMetadata.ContainsKey("format"))
            throw new ArgumentException("format is written by the writer", nameof(fileMetadata));
        _fileMetadata = fileMetadata;
        _tensors = plan.Shards.SelectMany(s => s.Tensors).ToArray();
        _slots = plan.Shards.SelectMany((s, i) => s.Tensors.Select((_, j) => (i, j == s.Tensors.Count - 1))).ToArray();
        _states = new ShardState[plan.Shards.Count];
        Directory.CreateDirectory(_folder);
    }

    public string Folder => _folder;

    void ITensorSink.Append(TensorInfo tensor, ReadOnlySpan<byte> bytes) => Append(tensor.Name, bytes);

    /// <summary>
    /// Appends bytes of <paramref name="tensorName"/>. Call once or several times (chunks) per tensor, tensors in plan
    /// order; zero-length tensors need no call. Misuse (wrong order, too many bytes) is a programming error.
    /// </summary>
    public void Append(string tensorName, ReadOnlySpan<byte> bytes)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed)
            throw new InvalidOperationException("the writer is complete");
        ArgumentNullException.ThrowIfNull(tensorName);

        // Move past finished tensors until the named one; an unfinished one in the way means bytes were skipped.
        while (_position < _tensors.Length && _tensors[_position].Name != tensorName)
        {
            var current = _tensors[_position];
            if (_written < current.ByteLength)
            {
                throw new InvalidOperationException(
                    $"tensor '{tensorName}' arrived while '{current.Name}' is incomplete ({_written} of "
                        + $"{current.ByteLength} bytes); tensors must come in plan order"
                );
            }
            FinishTensor();
        }
        if (_position == _tensors.Length)
        {
            throw new InvalidOperationException(
                _plan.ShardOf(tensorName) is null
                    ? $"tensor '{tensorName}' is not in the shard plan"
                    : $"tensor '{tensorName}' arrived after its place in the plan; tensors must come in plan order"
            );
        }

        var tensor = _tensors[_position];
        if (bytes.Length > tensor.ByteLength - _written)
        {
            throw new ArgumentException(
                $"tensor '{tensor.Name}': {_written} + {bytes.Length} bytes overflow its {tensor.ByteLength} bytes",
                nameof(bytes)
            );
        }
        if (bytes.Length == 0)
            return;

        var stream = EnsureOpen(_slots[_position].Shard);
        try
        {
            stream.Write(bytes);
        }
        catch (IOException e)
        {
            throw WriteFailed(_slots[_position].Shard, e);
        }
        _written += bytes.Length;
        if (_written == tensor.ByteLength && RestOfShardIsEmpty())
            CloseShard(_slots[_position].Shard);
    }

    /// <summary>
    /// Checks every byte arrived, finishes the remaining shard files and, when there is more than one shard, writes
    /// model.safetensors.index.json.
    /// </summary>
    public void Complete()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed)
            throw new InvalidOperationException("the writer is already complete");

        for (int i = _position; i < _tensors.Length; i++)
        {
            long have = i == _position ? _written : 0;
            if (have < _tensors[i].ByteLength)
            {
                int missing = _tensors.Skip(i + 1).Count(t => t.ByteLength > 0);
                throw new InvalidOperationException(
                    $"tensor '{_tensors[i].Name}' is incomplete ({have} of {_tensors[i].ByteLength} bytes)"
                        + missing switch
                        {
                            0 => "",
                            1 => "; 1 more tensor has not arrived",
                            _ => $"; {missing} more tensors have not arrived",
                        }
                );
            }
        }
        while (_position < _tensors.Length)
            FinishTensor();
        for (int s = 0; s < _states.Length; s++)
        {
            if (_states[s] != ShardState.Done)
            {
                EnsureOpen(s);
                CloseShard(s);
            }
        }
        if (_plan.Shards.Count > 1)
            WriteIndex();
        _completed = true;
    }

    /// <summary>Closes any open file. Without <see cref="Complete"/> the folder holds a partial model.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        try
        {
            _stream?.Dispose();
        }
        catch (IOException)
        {
            // Disposing after a failure (often a full disk) must not mask the exception that got us here.
        }
        _stream = null;
    }

    private void FinishTensor()
    {
        var (shard, last) = _slots[_position];
        if (last && _states[shard] != ShardState.Done)
        {
            EnsureOpen(shard);
            CloseShard(shard);
        }
        _position++;
        _written = 0;
    }

    private bool RestOfShardIsEmpty()
    {
        for (int i = _position; ; i++)
        {
            if (i > _position && _tensors[i].ByteLength > 0)
                return false;
            if (_slots[i].Last)
                return true;
        }
    }

    private FileStream EnsureOpen(int shardIndex)
    {
        switch (_states[shardIndex])
        {
            case ShardState.Open:
                return _stream!;
            case ShardState.Done:
                throw new InvalidOperationException($"shard {shardIndex + 1} is already closed");
        }
        var shard = _plan.Shards[shardIndex];
        var header = BuildHeader(shard.Tensors, _fileMetadata);
        long length = header.Length + shard.DataBytes;
        string path = Path.Combine(_folder, shard.FileName);
        FileStream stream;
        try
        {
            stream = new FileStream(
                path,
                new FileStreamOptions
                {
                    Mode = FileMode.Create,
                    Access = FileAccess.Write,
                    Share = FileShare.None,
                    BufferSize = BufferSize,
                    // Reserving the whole file up front fails early when the disk is too small, and limits
                    // fragmentation.
                    PreallocationSize = length,
                }
            );
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw WriteFailed(shardIndex, e);
        }
        _stream = stream;
        try
        {
            stream.Write(header);
        }
        catch (IOException e)
        {
            throw WriteFailed(shardIndex, e);
        }
        _streamExpectedLength = length;
        _states[shardIndex] = ShardState.Open;
        return stream;
    }

    private void CloseShard(int shardIndex)
    {
        var stream = _stream!;
        _stream = null;
        _states[shardIndex] = ShardState.Done;
        long length;
        try
        {
            stream.Flush();
            length = stream.Position;
            stream.Dispose();
        }
        catch (IOException e)
        {
            // Disposing retries the failed flush; its second failure adds nothing.
            try
            {
                stream.Dispose();
            }
            catch (IOException) { }
            throw WriteFailed(shardIndex, e);
        }
        if (length != _streamExpectedLength)
        {
            throw new InvalidOperationException(
                $"{_plan.Shards[shardIndex].FileName}: wrote {length} bytes, expected {_streamExpectedLength}"
            );
        }
    }

    /// <summary>
    /// A full disk or a read-only folder is the user's to fix, so it becomes a one-line AlloyException.
    /// </summary>
    private AlloyException WriteFailed(int shardIndex, Exception e) =>
        new(
            $"{Path.Combine(_folder, _plan.Shards[shardIndex].FileName)}: cannot write: {Messages.OneLine(e.Message)}",
            e
        );

    /// <summary>
    /// The 8-byte length and the JSON header for <paramref name="tensors"/> laid out back to back in order, padded
    /// with spaces so the data section starts at a multiple of 8 (as the reference writer does).
    /// </summary>
    internal static byte[] BuildHeader(
        IReadOnlyList<TensorInfo> tensors,
        IReadOnlyDictionary<string, string>? metadata = null
    )
    {
        var json = new ArrayBufferWriter<byte>();
        using (
            var writer = new Utf8JsonWriter(
                json,
                new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }
            )
        )
        {
            writer.WriteStartObject();
            writer.WriteStartObject(SafetensorsFile.MetadataKey);
            writer.WriteString("format", "pt");
            foreach (var (key, value) in metadata ?? new Dictionary<string, string>())
                writer.WriteString(key, value);
            writer.WriteEndObject();
            long offset = 0;
            foreach (var tensor in tensors)
            {
                writer.WriteStartObject(tensor.Name);
                writer.WriteString("dtype", tensor.DType.SafetensorsName());
                writer.WriteStartArray("shape");
                foreach (var dim in tensor.Shape)
                    writer.WriteNumberValue(dim);
                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(offset);
                writer.WriteNumberValue(offset + tensor.ByteLength);
                writer.WriteEndArray();
                writer.WriteEndObject();
                offset += tensor.ByteLength;
            }
            writer.WriteEndObject();
        }
        int padded = (json.WrittenCount + 7) / 8 * 8;
        var header = new byte[8 + padded];
        BinaryPrimitives.WriteUInt64LittleEndian(header, (ulong)padded);
        json.WrittenSpan.CopyTo(header.AsSpan(8));
        header.AsSpan(8 + json.WrittenCount).Fill((byte)' ');
        return header;
    }

    private void WriteIndex()
    {
        string path = Path.Combine(_folder, Checkpoint.IndexFileName);
        try
        {
            WriteIndex(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new AlloyException($"{path}: cannot write: {Messages.OneLine(e.Message)}", e);
        }
    }

    private void WriteIndex(string path)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None);
        // Python's json.dump(indent=2) layout, which the Hugging Face tools write.
        using var writer = new Utf8JsonWriter(
            stream,
            new JsonWriterOptions
            {
                Indented = true,
                IndentSize = 2,
                NewLine = "\n",
                Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
            }
        );
        writer.WriteStartObject();
        writer.WriteStartObject("metadata");
        writer.WriteNumber("total_size", _plan.TotalBytes);
        foreach (var (key, value) in _indexMetadata)
            writer.WriteString(key, value);
        writer.WriteEndObject();
        writer.WriteStartObject("weight_map");
        foreach (var shard in _plan.Shards)
        {
            foreach (var tensor in shard.Tensors)
                writer.WriteString(tensor.Name, shard.FileName);
        }
        writer.WriteEndObject();
        writer.WriteEndObject();
    }
}
