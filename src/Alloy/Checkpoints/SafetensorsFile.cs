using System.Buffers.Binary;
using System.Text.Json;
using Alloy.Tensors;

namespace Alloy.Checkpoints;

/// <summary>
/// One .safetensors file: an 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data section.
/// Opening maps the file and validates the header; no tensor data is read.
/// </summary>
public sealed class SafetensorsFile : IWeightFile
{
    /// <summary>The header size limit of the reference implementation; larger headers are refused as corrupt.</summary>
    public const long MaxHeaderLength = 100_000_000;

    internal const string MetadataKey = "__metadata__";

    private readonly MappedFile _file;
    private readonly Dictionary<string, StoredTensor> _byName;

    private SafetensorsFile(
        MappedFile file,
        long dataStart,
        IReadOnlyDictionary<string, string> metadata,
        IReadOnlyList<StoredTensor> tensors
    )
    {
        _file = file;
        DataStart = dataStart;
        Metadata = metadata;
        Tensors = tensors;
        _byName = WeightFile.ByName(tensors);
    }

    /// <summary>
    /// Maps and validates a safetensors file. Every problem is an <see cref="AlloyException"/> naming the file.
    /// </summary>
    public static SafetensorsFile Open(string path) => WeightFile.Open(path, Read);

    /// <summary>The full path of the file.</summary>
    public string Path => _file.Path;

    public MappedFile File => _file;

    /// <summary>The header's "__metadata__" (string → string); empty when absent.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>The tensors in data-offset order.</summary>
    public IReadOnlyList<StoredTensor> Tensors { get; }

    /// <summary>The absolute offset of the data section (8 + header length).</summary>
    public long DataStart { get; }

    public StoredTensor? Find(string name) => _byName.GetValueOrDefault(name);

    public void Dispose() => _file.Dispose();

    public override string ToString() => Path;

    private static SafetensorsFile Read(MappedFile file)
    {
        string where = file.Path;
        if (file.Length < 8)
        {
            throw new AlloyException(
                $"{where}: file is {file.Length} bytes, too short for safetensors (it must start with an 8-byte header "
                    + $"length)"
            );
        }
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(file.Span(0, 8));
        if (headerLength > MaxHeaderLength)
        {
            throw new AlloyException(
                $"{where}: header length {headerLength} is larger than the {MaxHeaderLength}-byte limit; the file is "
                    + $"corrupt or not safetensors"
            );
        }
        if ((long)headerLength > file.Length - 8)
        {
            throw new AlloyException(
                $"{where}: header length {headerLength} runs past the end of the file ({file.Length} bytes); the file "
                    + $"is truncated or not safetensors"
            );
        }
        long dataStart = 8 + (long)headerLength;
        long dataLength = file.Length - dataStart;

        // Copying the header (kilobytes for real models) keeps the JsonDocument independent of the map's lifetime.
        var document = StrictJson.Parse(file.Span(8, (int)headerLength).ToArray(), $"{where}: header");
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new AlloyException(
                    $"{where}: header is a JSON {Messages.Describe(root.ValueKind)}, expected an object of tensors"
                );
            }

            IReadOnlyDictionary<string, string> metadata = new Dictionary<string, string>();
            var entries = new List<(TensorInfo Info, long Begin, long End)>();
            foreach (var property in root.EnumerateObject())
            {
                string name = property.Name;
                if (name == MetadataKey)
                {
                    metadata = ReadMetadata(where, property.Value);
                    continue;
                }
                entries.Add(ReadEntry(where, name, property.Value, dataLength));
            }

            // Offset order is the order of the bytes on disk, which is the order sequential readers want.
            var ordered = entries
                .Select((e, i) => (e.Info, e.Begin, e.End, Index: i))
                .OrderBy(e => e.Begin)
                .ThenBy(e => e.End)
                .ThenBy(e => e.Index)
                .ToList();
            CheckOverlaps(where, ordered.Select(e => (e.Info.Name, e.Begin, e.End)));

            var tensors = ordered.Select(e => new StoredTensor(e.Info, file, dataStart + e.Begin)).ToArray();
            return new SafetensorsFile(file, dataStart, metadata, tensors);
        }
    }

    private static void CheckOverlaps(string where, IEnumerable<(string Name, long Begin, long End)> ordered)
    {
        // Empty ranges hold no bytes, so they cannot overlap anything.
        (string Name, long Begin, long End)? furthest = null;
        foreach (var range in ordered)
        {
            if (range.Begin == range.End)
                continue;
            if (furthest is { } previous && range.Begin < previous.End)
            {
                throw new AlloyException(
                    $"{where}: tensor '{range.Name}': data_offsets [{range.Begin}, {range.End}] overlap those of "
                        + $"tensor '{previous.Name}' [{previous.Begin}, {previous.End}]"
                );
            }
            if (furthest is null || range.End > furthest.Value.End)
                furthest = range;
        }
    }

    private static IReadOnlyDictionary<string, string> ReadMetadata(string where, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new AlloyException(
                $"{where}: \"{MetadataKey}\" is a JSON {Messages.Describe(value.ValueKind)}, expected an object of "
                    + $"strings"
            );
        }
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
            {
                throw new AlloyException(
                    $"{where}: \"{MetadataKey}\" entry '{item.Name}' is a JSON "
                        + $"{Messages.Describe(item.Value.ValueKind)}, expected a string"
                );
            }
            metadata[item.Name] = item.Value.GetString()!;
        }
        return metadata;
    }

    private static (TensorInfo Info, long Begin, long End) ReadEntry(
        string where,
        string name,
        JsonElement entry,
        long dataLength
    )
    {
        string at = $"{where}: tensor '{name}'";
        if (entry.ValueKind != JsonValueKind.Object)
        {
            throw new AlloyException(
                $"{at}: entry is a JSON {Messages.Describe(entry.ValueKind)}, expected an object with dtype, shape and "
                    + $"data_offsets"
            );
        }

        if (!entry.TryGetProperty("dtype", out var dtypeElement))
            throw new AlloyException($"{at}: \"dtype\" is missing");
        if (dtypeElement.ValueKind != JsonValueKind.String)
        {
            throw new AlloyException(
                $"{at}: \"dtype\" is a JSON {Messages.Describe(dtypeElement.ValueKind)}, expected a string such as "
                    + $"\"BF16\""
            );
        }
        string dtypeName = dtypeElement.GetString()!;
        if (!DTypes.TryParseSafetensors(dtypeName, out var dtype))
        {
            var known = string.Join(", ", Enum.GetValues<DType>().Select(d => d.SafetensorsName()));
            throw new AlloyException($"{at}: dtype '{dtypeName}' is not supported (supported: {known})");
        }

        if (!entry.TryGetProperty("shape", out var shapeElement))
            throw new AlloyException($"{at}: \"shape\" is missing");
        var shape = ReadIntegers(at, "shape", shapeElement, expectedCount: null);

        if (!entry.TryGetProperty("data_offsets", out var offsetsElement))
            throw new AlloyException($"{at}: \"data_offsets\" is missing");
        var offsets = ReadIntegers(at, "data_offsets", offsetsElement, expectedCount: 2);
        long begin = offsets[0],
            end = offsets[1];
        if (begin > end)
        {
            throw new AlloyException($"{at}: data_offsets [{begin}, {end}] end before they begin");
        }
        if (end > dataLength)
        {
            throw new AlloyException(
                $"{at}: data_offsets [{begin}, {end}] are outside the data section ({dataLength} bytes)"
            );
        }

        string shapeText = $"[{string.Join(", ", shape)}]";
        long? elements = TensorInfo.TryProduct(shape);
        if (elements is null)
        {
            throw new AlloyException($"{at}: shape {shapeText} is too large");
        }
        long expected = elements.Value * dtype.Size();
        if (end - begin != expected)
        {
            throw new AlloyException(
                $"{at}: data_offsets [{begin}, {end}] span {end - begin} bytes, but shape {shapeText} of "
                    + $"{dtype.SafetensorsName()} needs {expected} bytes"
            );
        }
        return (new TensorInfo(name, dtype, shape), begin, end);
    }

    private static long[] ReadIntegers(string at, string key, JsonElement value, int? expectedCount)
    {
        string expectation =
            expectedCount == 2 ? "an array [begin, end] of non-negative integers" : "an array of non-negative integers";
        if (value.ValueKind != JsonValueKind.Array)
        {
            throw new AlloyException(
                $"{at}: \"{key}\" is a JSON {Messages.Describe(value.ValueKind)}, expected {expectation}"
            );
        }
        string text = Messages.OneLine(value.GetRawText());
        if (expectedCount is { } count && value.GetArrayLength() != count)
        {
            throw new AlloyException($"{at}: {key} {text} has {value.GetArrayLength()} items, expected {expectation}");
        }
        var result = new long[value.GetArrayLength()];
        int i = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind == JsonValueKind.Number && item.TryGetInt64(out long number))
            {
                if (number < 0)
                {
                    throw new AlloyException(
                        $"{at}: {key} {text} has the negative value {number}; expected {expectation}"
                    );
                }
                result[i++] = number;
                continue;
            }
            throw new AlloyException(
                $"{at}: {key} {text} has the item {Messages.OneLine(item.GetRawText())}, expected {expectation}"
            );
        }
        return result;
    }
}
