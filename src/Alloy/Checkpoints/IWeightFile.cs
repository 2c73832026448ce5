namespace Alloy.Checkpoints;

/// <summary>One memory-mapped file of a checkpoint's weights: a .safetensors file or a torch.save .bin.</summary>
public interface IWeightFile : IDisposable
{
    /// <summary>The full path of the file.</summary>
    string Path { get; }

    MappedFile File { get; }

    /// <summary>The tensors, in the file's own order.</summary>
    IReadOnlyList<StoredTensor> Tensors { get; }

    StoredTensor? Find(string name);
}

/// <summary>What every weight-file reader does the same way.</summary>
internal static class WeightFile
{
    /// <summary>Maps the file and reads it; the map is released when reading fails.</summary>
    public static T Open<T>(string path, Func<MappedFile, T> read)
    {
        var file = MappedFile.Open(path);
        try
        {
            return read(file);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Tensors by name; names are unique (each reader checks that first, with a message).</summary>
    public static Dictionary<string, StoredTensor> ByName(IReadOnlyList<StoredTensor> tensors)
    {
        var byName = new Dictionary<string, StoredTensor>(tensors.Count, StringComparer.Ordinal);
        foreach (var tensor in tensors)
            byName.Add(tensor.Name, tensor);
        return byName;
    }
}
