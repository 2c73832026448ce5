using System.Text.Json;
using System.Text.Json.Nodes;

namespace Alloy.Checkpoints;

/// <summary>
/// A model checkpoint: a Hugging Face folder (sharded with an index, or a single file; safetensors or PyTorch .bin) or
/// one .safetensors / .bin / .pt / .pth file. Opening maps the weight files and reads their headers (a .bin's pickle)
/// only.
/// </summary>
public sealed class Checkpoint : IDisposable
{
    public const string IndexFileName = "model.safetensors.index.json";
    public const string SingleFileName = "model.safetensors";
    public const string TorchIndexFileName = "pytorch_model.bin.index.json";
    public const string TorchSingleFileName = "pytorch_model.bin";
    public const string ConfigFileName = "config.json";

    private readonly IReadOnlyList<IWeightFile> _files;
    private readonly Dictionary<string, StoredTensor> _byName;

    private Checkpoint(
        string path,
        string folder,
        JsonObject? config,
        IReadOnlyList<IWeightFile> files,
        IReadOnlyList<StoredTensor> tensors
    )
    {
        Path = path;
        Folder = folder;
        Config = config;
        _files = files;
        Tensors = tensors;
        _byName = WeightFile.ByName(tensors);
        TotalBytes = tensors.Sum(t => t.Info.ByteLength);
    }

    /// <summary>
    /// Opens a model folder or a single weight file. Every problem is an <see cref="AlloyException"/>.
    /// </summary>
    public static Checkpoint Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string fullPath = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(path));
        if (Directory.Exists(fullPath))
            return OpenFolder(fullPath);
        if (File.Exists(fullPath))
            return OpenFile(fullPath);
        throw new AlloyException($"model path '{fullPath}' does not exist");
    }

    /// <summary>The path as given, made absolute.</summary>
    public string Path { get; }

    /// <summary>The model folder (config.json and tokenizer live here); for a single file, its directory.</summary>
    public string? Folder { get; }

    /// <summary>config.json of <see cref="Folder"/>, parsed, or null when there is none.</summary>
    public JsonObject? Config { get; }

    /// <summary>The weight files, in shard order (sorted by file name, as mergekit does).</summary>
    public IReadOnlyList<IWeightFile> Files => _files;

    /// <summary>
    /// All tensors: shard order, then each file's order (data offsets for safetensors, the state dict's for .bin).
    /// </summary>
    public IReadOnlyList<StoredTensor> Tensors { get; }

    public StoredTensor? Find(string name) => _byName.GetValueOrDefault(name);

    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The sum of all tensors' byte lengths.</summary>
    public long TotalBytes { get; }

    public void Dispose()
    {
        foreach (var file in _files)
            file.Dispose();
    }

    public override string ToString() => Path;

    private static Checkpoint OpenFile(string fullPath)
    {
        string folder = System.IO.Path.GetDirectoryName(fullPath)!;
        string name = System.IO.Path.GetFileName(fullPath);
        if (
            name.Equals(IndexFileName, StringComparison.Ordinal)
            || name.Equals(TorchIndexFileName, StringComparison.Ordinal)
        )
        {
            return OpenIndexed(folder, fullPath, ReadConfig(folder));
        }
        if (name.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
            throw new AlloyException(
                $"{fullPath}: GGUF files (llama.cpp's format) are not supported; merge the Hugging Face model folder "
                    + $"it was "
                    + "converted from (safetensors or PyTorch .bin), then convert the merged folder to GGUF"
            );
        if (!IsSafetensors(name) && !IsTorch(name))
        {
            throw new AlloyException(
                $"{fullPath}: not a .safetensors file, a PyTorch .bin/.pt/.pth file or a model folder"
            );
        }
        var config = ReadConfig(folder);
        var file = OpenWeights(fullPath, torch: IsTorch(name));
        return new Checkpoint(fullPath, folder, config, [file], file.Tensors);
    }

    /// <summary>
    /// mergekit's discovery order: safetensors (index, single file), then PyTorch .bin (index, single file).
    /// </summary>
    private static Checkpoint OpenFolder(string folder)
    {
        foreach (var name in (string[])[IndexFileName, SingleFileName, TorchIndexFileName, TorchSingleFileName])
        {
            string path = System.IO.Path.Combine(folder, name);
            if (!File.Exists(path))
                continue;
            var config = ReadConfig(folder);
            if (name.EndsWith(".json", StringComparison.Ordinal))
                return OpenIndexed(folder, path, config);
            var file = OpenWeights(path, torch: name == TorchSingleFileName);
            return new Checkpoint(folder, folder, config, [file], file.Tensors);
        }

        var others = Directory
            .EnumerateFiles(folder)
            .Select(System.IO.Path.GetFileName)
            .OfType<string>()
            .Where(n => IsSafetensors(n) || IsTorch(n))
            .Order(StringComparer.Ordinal)
            .Take(4)
            .ToList();
        bool gguf = Directory.EnumerateFiles(folder, "*.gguf").Any();
        string hint =
            others.Count > 0
                ? $" (found {string.Join(", ", others)}, but like mergekit Alloy recognizes only these names)"
            : gguf
                ? " (found GGUF files, llama.cpp's format, which Alloy does not read: merge the Hugging Face folder "
                    + "they were converted from)"
            : "";
        throw new AlloyException(
            $"{folder}: no model weights found; expected {IndexFileName}, {SingleFileName}, {TorchIndexFileName} or "
                + $"{TorchSingleFileName}{hint}"
        );
    }

    private static bool IsSafetensors(string name) => name.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase);

    private static bool IsTorch(string name) =>
        name.EndsWith(".bin", StringComparison.OrdinalIgnoreCase)
        || name.EndsWith(".pt", StringComparison.OrdinalIgnoreCase)
        || name.EndsWith(".pth", StringComparison.OrdinalIgnoreCase);

    private static IWeightFile OpenWeights(string path, bool torch) =>
        torch ? TorchFile.Open(path) : SafetensorsFile.Open(path);

    private static Checkpoint OpenIndexed(string folder, string indexPath, JsonObject? config)
    {
        var weightMap = ReadWeightMap(indexPath);
        // A shard's own extension decides how it is read; otherwise the kind of index does.
        bool torchIndex = System.IO.Path.GetFileName(indexPath) == TorchIndexFileName;
        var opened = new List<IWeightFile>();
        try
        {
            // Each shard once, in name order (mergekit sorts the shard names).
            var shardNames = weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
            var wanted = weightMap
                .GroupBy(e => e.Value, StringComparer.Ordinal)
                .ToDictionary(
                    g => g.Key,
                    g => g.Select(e => e.Key).ToHashSet(StringComparer.Ordinal),
                    StringComparer.Ordinal
                );
            var tensors = new List<StoredTensor>(weightMap.Count);
            foreach (var shardName in shardNames)
            {
                string shardPath = System.IO.Path.Combine(folder, shardName);
                if (!File.Exists(shardPath))
                {
                    string example = wanted[shardName].Order(StringComparer.Ordinal).First();
                    int others = wanted[shardName].Count - 1;
                    string holding = others == 0 ? $"tensor '{example}'" : $"tensor '{example}' and {others} more";
                    throw new AlloyException(
                        $"{indexPath}: shard '{shardName}' (holding {holding}) does not exist in {folder}"
                    );
                }
                var shard = OpenWeights(
                    shardPath,
                    torch: IsTorch(shardName) || (torchIndex && !IsSafetensors(shardName))
                );
                opened.Add(shard);
                var names = wanted[shardName];
                foreach (var name in names.Order(StringComparer.Ordinal))
                {
                    if (shard.Find(name) is null)
                    {
                        throw new AlloyException(
                            $"{indexPath}: tensor '{name}' is mapped to '{shardName}', which does not contain it"
                        );
                    }
                }
                // The index is the contract: tensors a shard holds but the index does not list are left out.
                tensors.AddRange(shard.Tensors.Where(t => names.Contains(t.Name)));
            }
            return new Checkpoint(folder, folder, config, opened, tensors);
        }
        catch
        {
            foreach (var file in opened)
                file.Dispose();
            throw;
        }
    }

    /// <summary>Reads weight_map (tensor name → shard file name, in file order) and checks each shard name.</summary>
    private static List<KeyValuePair<string, string>> ReadWeightMapEntries(string indexPath)
    {
        var document = StrictJson.ParseFile(indexPath);
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new AlloyException(
                    $"{indexPath}: is a JSON {Messages.Describe(root.ValueKind)}, expected an object with "
                        + $"\"weight_map\""
                );
            }
            if (!root.TryGetProperty("weight_map", out var map))
            {
                throw new AlloyException($"{indexPath}: \"weight_map\" is missing");
            }
            if (map.ValueKind != JsonValueKind.Object)
            {
                throw new AlloyException(
                    $"{indexPath}: \"weight_map\" is a JSON {Messages.Describe(map.ValueKind)}, expected an object "
                        + $"(tensor name → shard file)"
                );
            }
            var entries = new List<KeyValuePair<string, string>>();
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                {
                    throw new AlloyException(
                        $"{indexPath}: weight_map entry '{entry.Name}' is a JSON "
                            + $"{Messages.Describe(entry.Value.ValueKind)}, expected a shard file name"
                    );
                }
                string shard = entry.Value.GetString()!;
                if (!IsPlainFileName(shard))
                {
                    throw new AlloyException(
                        $"{indexPath}: weight_map entry '{entry.Name}' names the shard '{shard}', which is not a file "
                            + $"name inside the model folder"
                    );
                }
                entries.Add(new(entry.Name, shard));
            }
            return entries;
        }
    }

    // Duplicate names are refused by StrictJson, like every duplicate key.
    private static Dictionary<string, string> ReadWeightMap(string indexPath) =>
        new(ReadWeightMapEntries(indexPath), StringComparer.Ordinal);

    /// <summary>
    /// A shard must be a bare file name: no directories, no "..", not rooted. Checked on the text (not the resolved
    /// path) because Hugging Face cache snapshots are symlinks into a blobs folder outside the model folder.
    /// </summary>
    private static bool IsPlainFileName(string name) =>
        name.Length > 0
        && name != "."
        && name != ".."
        && name.IndexOfAny(['/', '\\', '\0']) < 0
        && !System.IO.Path.IsPathRooted(name);

    private static JsonObject? ReadConfig(string folder) =>
        StrictJson.ReadObjectFileIfPresent(System.IO.Path.Combine(folder, ConfigFileName));
}
