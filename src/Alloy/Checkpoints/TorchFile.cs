using System.Text;
using Alloy.Tensors;

namespace Alloy.Checkpoints;

/// <summary>
/// One PyTorch checkpoint written by torch.save (the zip format, PyTorch 1.6 and later): &lt;archive&gt;/data.pkl
/// describes the state dict and &lt;archive&gt;/data/&lt;key&gt; holds each storage's raw bytes. torch stores those
/// entries uncompressed, so every tensor is a byte range of the memory-mapped file. Opening reads the zip directory and
/// the pickle only, through <see cref="RestrictedUnpickler"/>: nothing in the file is ever executed.
/// </summary>
public sealed class TorchFile : IWeightFile
{
    private readonly MappedFile _file;
    private readonly Dictionary<string, StoredTensor> _byName;

    private TorchFile(MappedFile file, string archive, IReadOnlyList<StoredTensor> tensors)
    {
        _file = file;
        Archive = archive;
        Tensors = tensors;
        _byName = WeightFile.ByName(tensors);
    }

    /// <summary>
    /// Maps and reads a torch.save file. Every problem is an <see cref="AlloyException"/> naming the file.
    /// </summary>
    public static TorchFile Open(string path) => WeightFile.Open(path, Read);

    public string Path => _file.Path;

    public MappedFile File => _file;

    /// <summary>The folder name inside the zip that holds data.pkl (torch uses the file's stem or "archive").</summary>
    public string Archive { get; }

    /// <summary>The tensors in state-dict order.</summary>
    public IReadOnlyList<StoredTensor> Tensors { get; }

    public StoredTensor? Find(string name) => _byName.GetValueOrDefault(name);

    public void Dispose() => _file.Dispose();

    public override string ToString() => Path;

    private static TorchFile Read(MappedFile file)
    {
        string where = file.Path;
        if (!ZipDirectory.LooksLikeZip(file))
        {
            var start = file.Span(0, (int)Math.Min(4, file.Length));
            // Legacy torch.save (before 1.6, or _use_new_zipfile_serialization=False) is a bare pickle stream.
            if (start.Length >= 2 && start[0] == 0x80)
            {
                throw new AlloyException(
                    $"{where}: a legacy torch.save file (not the zip format of PyTorch 1.6 and later), which Alloy "
                        + $"does not read; re-save it with torch.save in a current PyTorch or convert it to safetensors"
                );
            }
            // A zip's directory is at its end, so a zip that lost it was cut short (an interrupted download).
            throw new AlloyException(
                start.SequenceEqual("PK\u0003\u0004"u8)
                    ? $"{where}: a zip archive without its central directory; the file is truncated"
                    : $"{where}: not a PyTorch checkpoint (no zip directory); expected a file written by torch.save"
            );
        }
        var zip = ZipDirectory.Read(file);

        // torch names every entry <archive>/…; the archive folder is the one holding data.pkl.
        var pickleEntry = zip.Entries.FirstOrDefault(e =>
            e.Name.EndsWith("/data.pkl", StringComparison.Ordinal)
            && e.Name.IndexOf('/') == e.Name.Length - "/data.pkl".Length
        )
            ?? throw new AlloyException(
                $"{where}: zip archive has no <archive>/data.pkl, so it is not a torch.save checkpoint"
            );
        string archive = pickleEntry.Name[..^"/data.pkl".Length];

        if (zip.Find($"{archive}/byteorder") is { } byteOrder)
        {
            string order = Encoding.ASCII.GetString(ZipDirectory.ReadAll(file, byteOrder)).Trim();
            if (order != "little")
            {
                throw new AlloyException(
                    $"{where}: tensors are stored with byte order '{order}'; Alloy reads only little-endian checkpoints"
                );
            }
        }

        object? root;
        try
        {
            root = RestrictedUnpickler.Load(ZipDirectory.ReadAll(file, pickleEntry));
        }
        catch (PickleException e)
        {
            // The refusal message stands on its own; other problems say which entry they are in.
            throw new AlloyException(
                e.Message.StartsWith("refusing", StringComparison.Ordinal)
                    ? $"{where}: {e.Message}"
                    : $"{where}: {pickleEntry.Name}: {e.Message}",
                e
            );
        }

        var stateDict = StateDict(where, root);
        var tensors = new List<StoredTensor>(stateDict.Items.Count);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (key, value) in stateDict.Items)
        {
            if (key is not string name)
            {
                throw new AlloyException(
                    $"{where}: the state dict has the key {RestrictedUnpickler.Describe(key)}; tensor names must be "
                        + $"strings"
                );
            }
            if (!seen.Add(name))
                throw new AlloyException($"{where}: tensor '{name}' appears twice in the state dict");
            if (value is not PickleTensor tensor)
            {
                throw new AlloyException(
                    $"{where}: state dict entry '{name}' is {RestrictedUnpickler.Describe(value)}, not a tensor"
                );
            }
            tensors.Add(Locate(file, zip, archive, name, tensor));
        }
        return new TorchFile(file, archive, tensors);
    }

    /// <summary>
    /// The dict of tensors: the pickled dict itself, or its "state_dict" entry (training checkpoints), as mergekit
    /// does.
    /// </summary>
    private static PickleDict StateDict(string where, object? root)
    {
        if (root is not PickleDict dict)
        {
            throw new AlloyException(
                $"{where}: the pickle holds {RestrictedUnpickler.Describe(root)}, not a dict of tensors"
            );
        }
        foreach (var (key, value) in dict.Items)
        {
            if (key is "state_dict")
            {
                return value as PickleDict
                    ?? throw new AlloyException(
                        $"{where}: its 'state_dict' entry is {RestrictedUnpickler.Describe(value)}, not a dict of "
                            + $"tensors"
                    );
            }
        }
        return dict;
    }

    /// <summary>
    /// Where a tensor's bytes are: its storage's zip entry, from storage_offset, which must be stored and large enough.
    /// </summary>
    private static StoredTensor Locate(
        MappedFile file,
        ZipDirectory zip,
        string archive,
        string name,
        PickleTensor tensor
    )
    {
        string at = $"{file.Path}: tensor '{name}'";
        var storage = tensor.Storage;
        string entryName = $"{archive}/data/{storage.Key}";
        var entry = zip.Find(entryName)
            ?? throw new AlloyException(
                $"{at}: its storage '{storage.Key}' is missing: the archive has no entry '{entryName}'"
            );
        if (entry.Method != ZipEntry.Stored)
        {
            throw new AlloyException(
                $"{at}: its storage entry '{entryName}' is compressed ({entry.MethodName}); torch.save stores tensors "
                    + $"uncompressed, so re-save the file with torch.save rather than re-zipping it"
            );
        }

        var dtype = tensor.DType;
        int itemSize = dtype.Size();
        // numel counts elements of a typed storage, bytes of an untyped one (newer dtypes).
        long storageBytes = storage.DType is { } storageType
            ? Checked(at, storage.Numel, storageType.Size())
            : storage.Numel;
        if (storage.DType is { } typed && typed != dtype)
        {
            throw new AlloyException($"{at}: its storage is {storage.TypeName} but the tensor is {dtype.TorchName()}");
        }
        if (entry.Size < storageBytes)
        {
            throw new AlloyException(
                $"{at}: its storage '{storage.Key}' declares {storageBytes} bytes, but entry '{entryName}' holds only "
                    + $"{entry.Size}"
            );
        }

        var shape = tensor.Shape;
        string shapeText = $"[{string.Join(", ", shape)}]";
        if (shape.Length != tensor.Stride.Length)
        {
            throw new AlloyException(
                $"{at}: shape {shapeText} and stride [{string.Join(", ", tensor.Stride)}] differ in length"
            );
        }
        if (shape.Any(d => d < 0) || TensorInfo.TryProduct(shape) is not { } elements)
        {
            throw new AlloyException($"{at}: shape {shapeText} is invalid");
        }
        if (elements > 0 && !IsRowMajor(shape, tensor.Stride))
        {
            throw new AlloyException(
                $"{at}: stored as a non-contiguous view (shape {shapeText}, stride "
                    + $"[{string.Join(", ", tensor.Stride)}]); save tensor.contiguous() instead, or convert to "
                    + $"safetensors"
            );
        }
        long storageElements = storageBytes / itemSize;
        if (tensor.Offset < 0 || tensor.Offset > storageElements || elements > storageElements - tensor.Offset)
        {
            throw new AlloyException(
                $"{at}: storage offset {tensor.Offset} + {elements} elements of {dtype.TorchName()} run past its "
                    + $"storage '{storage.Key}' ({storageElements} elements)"
            );
        }
        return new StoredTensor(new TensorInfo(name, dtype, shape), file, entry.DataStart + tensor.Offset * itemSize);
    }

    /// <summary>Row-major strides; a dimension of size 1 may have any stride (torch itself treats it so).</summary>
    private static bool IsRowMajor(long[] shape, long[] stride)
    {
        long expected = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            if (shape[i] != 1 && stride[i] != expected)
                return false;
            expected *= shape[i];
        }
        return true;
    }

    private static long Checked(string at, long count, int size) =>
        count <= long.MaxValue / size
            ? count * size
            : throw new AlloyException($"{at}: its storage size {count} is impossible");
}
