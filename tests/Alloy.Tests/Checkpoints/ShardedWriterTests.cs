using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Alloy.Checkpoints;
using Alloy.Tensors;

namespace Alloy.Tests.Checkpoints;

public sealed class ShardedWriterTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>One tensor per dtype plus a scalar, a zero-element tensor and one of 4096 bytes.</summary>
    private static List<TensorInfo> AllKindsOfTensors()
    {
        var tensors = Enum.GetValues<DType>()
            .Select(
                (d, i) => new TensorInfo($"model.layers.{i}.{d.SafetensorsName().ToLowerInvariant()}.weight", d, [3, 5])
            )
            .ToList();
        tensors.Add(new TensorInfo("model.norm.scale", DType.F32, []));
        tensors.Add(new TensorInfo("model.empty", DType.BF16, [0, 4]));
        tensors.Add(new TensorInfo("lm_head.weight", DType.F32, [32, 32]));
        tensors.Add(new TensorInfo("model.final.bias", DType.F16, [7]));
        return tensors;
    }

    private static Dictionary<string, byte[]> RandomContents(IEnumerable<TensorInfo> tensors, int seed)
    {
        var random = new Random(seed);
        return tensors.ToDictionary(
            t => t.Name,
            t =>
            {
                var bytes = new byte[t.ByteLength];
                random.NextBytes(bytes);
                return bytes;
            }
        );
    }

    private static void WriteAll(
        string folder,
        ShardPlan plan,
        Dictionary<string, byte[]> contents,
        int chunk = int.MaxValue,
        IReadOnlyDictionary<string, string>? indexMetadata = null
    )
    {
        using var writer = new ShardedWriter(folder, plan, indexMetadata);
        foreach (var tensor in plan.Shards.SelectMany(s => s.Tensors))
        {
            var bytes = contents[tensor.Name];
            if (bytes.Length == 0)
                writer.Append(tensor.Name, []);
            for (int i = 0; i < bytes.Length; i += chunk)
            {
                writer.Append(tensor.Name, bytes.AsSpan(i, Math.Min(chunk, bytes.Length - i)));
            }
        }
        writer.Complete();
    }

    private static void AssertSameTensors(ShardPlan plan, Dictionary<string, byte[]> contents, Checkpoint checkpoint)
    {
        var expected = plan.Shards.SelectMany(s => s.Tensors).ToList();
        Assert.Equal(expected, checkpoint.Tensors.Select(t => t.Info));
        foreach (var stored in checkpoint.Tensors)
        {
            Assert.Equal(contents[stored.Name], stored.Bytes(0, (int)stored.Info.ByteLength).ToArray());
        }
        Assert.Equal(plan.TotalBytes, checkpoint.TotalBytes);
    }

    private static void AssertShardLayout(string path, Shard shard)
    {
        var raw = File.ReadAllBytes(path);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(raw);
        Assert.Equal(0UL, headerLength % 8);
        Assert.Equal((long)(8 + headerLength) + shard.DataBytes, raw.LongLength);

        var header = Encoding.UTF8.GetString(raw, 8, (int)headerLength);
        Assert.Equal(header.TrimEnd(' ').Length, header.TrimEnd().Length); // padding is spaces only
        var json = JsonNode.Parse(header)!.AsObject();
        Assert.Equal("__metadata__", json.First().Key);
        Assert.Equal("""{"format":"pt"}""", json["__metadata__"]!.ToJsonString());
        // Header entries follow plan order, with back-to-back offsets.
        Assert.Equal(shard.Tensors.Select(t => t.Name), json.Skip(1).Select(p => p.Key));
        long offset = 0;
        foreach (var tensor in shard.Tensors)
        {
            var entry = json[tensor.Name]!;
            Assert.Equal(tensor.DType.SafetensorsName(), entry["dtype"]!.GetValue<string>());
            Assert.Equal(tensor.Shape, entry["shape"]!.AsArray().Select(n => n!.GetValue<long>()));
            Assert.Equal(
                [offset, offset + tensor.ByteLength],
                entry["data_offsets"]!.AsArray().Select(n => n!.GetValue<long>())
            );
            offset += tensor.ByteLength;
        }
    }

    [Fact]
    public void Single_shard_round_trip_is_bit_identical()
    {
        var tensors = AllKindsOfTensors();
        var contents = RandomContents(tensors, seed: 1);
        var plan = ShardPlan.Create(tensors, maxShardBytes: 0);
        string folder = _dir.Folder("single");
        WriteAll(folder, plan, contents);

        Assert.Equal(["model.safetensors"], Directory.GetFiles(folder).Select(Path.GetFileName));
        AssertShardLayout(Path.Combine(folder, "model.safetensors"), plan.Shards[0]);
        using var checkpoint = Checkpoint.Open(folder);
        AssertSameTensors(plan, contents, checkpoint);
        Assert.Equal("pt", Assert.IsType<SafetensorsFile>(checkpoint.Files.Single()).Metadata["format"]);
    }

    [Fact]
    public void Sharded_round_trip_is_bit_identical_and_indexed()
    {
        var tensors = AllKindsOfTensors();
        var contents = RandomContents(tensors, seed: 2);
        // 100 bytes: several small tensors share a shard; the 4096-byte lm_head gets its own.
        var plan = ShardPlan.Create(tensors, maxShardBytes: 100);
        int count = plan.Shards.Count;
        Assert.True(count > 3);
        Assert.Contains(plan.Shards, s => s.Tensors is [{ Name: "lm_head.weight" }]);
        string folder = _dir.Folder("sharded");
        WriteAll(
            folder,
            plan,
            contents,
            indexMetadata: new Dictionary<string, string> { ["mergekit_version"] = "0.1.4" }
        );

        var expectedNames = Enumerable.Range(1, count).Select(i => $"model-{i:D5}-of-{count:D5}.safetensors").ToList();
        Assert.Equal(expectedNames, plan.Shards.Select(s => s.FileName));
        Assert.Equal(
            expectedNames.Append("model.safetensors.index.json").Order(StringComparer.Ordinal),
            Directory.GetFiles(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal)
        );
        foreach (var shard in plan.Shards)
            AssertShardLayout(Path.Combine(folder, shard.FileName), shard);

        string indexText = File.ReadAllText(Path.Combine(folder, "model.safetensors.index.json"));
        Assert.StartsWith(
            "{\n  \"metadata\": {\n    \"total_size\": "
                + plan.TotalBytes
                + ",\n    \"mergekit_version\": \"0.1.4\"\n  },\n  \"weight_map\": {\n    \"",
            indexText
        );
        var index = JsonNode.Parse(indexText)!.AsObject();
        Assert.Equal(tensors.Sum(t => t.ByteLength), index["metadata"]!["total_size"]!.GetValue<long>());
        var weightMap = index["weight_map"]!.AsObject();
        Assert.Equal(
            plan.Shards.SelectMany(s => s.Tensors.Select(t => (t.Name, s.FileName))),
            weightMap.Select(p => (p.Key, p.Value!.GetValue<string>()))
        );

        using var checkpoint = Checkpoint.Open(folder);
        AssertSameTensors(plan, contents, checkpoint);
        Assert.Equal(count, checkpoint.Files.Count);
    }

    [Fact]
    public void Chunked_append_equals_whole_append()
    {
        var tensors = AllKindsOfTensors();
        var contents = RandomContents(tensors, seed: 3);
        var plan = ShardPlan.Create(tensors, maxShardBytes: 200);
        string whole = _dir.Folder("whole"),
            chunked = _dir.Folder("chunked");
        WriteAll(whole, plan, contents);
        WriteAll(chunked, plan, contents, chunk: 7);

        var names = Directory.GetFiles(whole).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(names, Directory.GetFiles(chunked).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        foreach (var name in names)
        {
            Assert.Equal(
                File.ReadAllBytes(Path.Combine(whole, name!)),
                File.ReadAllBytes(Path.Combine(chunked, name!))
            );
        }
    }

    [Fact]
    public void Zero_length_tensors_need_no_append_and_may_fill_a_shard_alone()
    {
        // The oversized tensor fills shard 1, so the empty tensor starts shard 2 on its own.
        var tensors = new List<TensorInfo> { new("big", DType.U8, [20]), new("empty", DType.F32, [0]) };
        var plan = ShardPlan.Create(tensors, maxShardBytes: 10);
        Assert.Equal(
            [
                ["big"],
                ["empty"],
            ],
            plan.Shards.Select(s => s.Tensors.Select(t => t.Name).ToArray())
        );
        string folder = _dir.Folder("empty-shard");
        using (var writer = new ShardedWriter(folder, plan))
        {
            writer.Append("big", new byte[20]);
            writer.Complete();
        }
        using var checkpoint = Checkpoint.Open(folder);
        Assert.Equal(["big", "empty"], checkpoint.Tensors.Select(t => t.Name));
        Assert.Equal(0, checkpoint.Find("empty")!.Info.ByteLength);
        Assert.Equal([0L], checkpoint.Find("empty")!.Info.Shape);
    }

    [Fact]
    public void Shard_file_is_closed_when_its_last_byte_arrives()
    {
        var plan = ShardPlan.Create(
            [new TensorInfo("a", DType.U8, [8]), new TensorInfo("b", DType.U8, [8])],
            maxShardBytes: 8
        );
        string folder = _dir.Folder("streaming");
        using var writer = new ShardedWriter(folder, plan);
        string first = Path.Combine(folder, "model-00001-of-00002.safetensors");
        string second = Path.Combine(folder, "model-00002-of-00002.safetensors");

        Assert.False(File.Exists(first));
        writer.Append("a", [1, 2, 3, 4, 5, 6, 7, 8]);
        // Closed: readable in full by someone else, and the next shard is not begun yet.
        using (var shard = SafetensorsFile.Open(first))
        {
            Assert.Equal([1, 2, 3, 4, 5, 6, 7, 8], shard.Find("a")!.Bytes(0, 8).ToArray());
        }
        Assert.False(File.Exists(second));
        writer.Append("b", new byte[8]);
        writer.Complete();
        Assert.True(File.Exists(Path.Combine(folder, "model.safetensors.index.json")));
    }

    [Fact]
    public void Header_escapes_names_as_json()
    {
        var tensors = new List<TensorInfo> { new("odd \"name\"\\ü", DType.U8, [1]) };
        var plan = ShardPlan.Create(tensors, 0);
        string folder = _dir.Folder("escaping");
        WriteAll(folder, plan, new() { [tensors[0].Name] = [42] });
        using var checkpoint = Checkpoint.Open(folder);
        Assert.Equal([42], checkpoint.Find("odd \"name\"\\ü")!.Bytes(0, 1).ToArray());
    }

    private ShardedWriter TwoTensorWriter(string name)
    {
        var plan = ShardPlan.Create([new TensorInfo("a", DType.F32, [2]), new TensorInfo("b", DType.F32, [2])], 0);
        return new ShardedWriter(_dir.Folder(name), plan);
    }

    [Fact]
    public void Wrong_order_throws()
    {
        using var writer = TwoTensorWriter("order");
        var e = Assert.Throws<InvalidOperationException>(() => writer.Append("b", new byte[8]));
        Assert.Contains("'b'", e.Message);
        Assert.Contains("'a' is incomplete (0 of 8 bytes)", e.Message);
    }

    [Fact]
    public void Going_back_to_a_finished_tensor_throws()
    {
        using var writer = TwoTensorWriter("back");
        writer.Append("a", new byte[8]);
        writer.Append("b", new byte[4]);
        var e = Assert.Throws<InvalidOperationException>(() => writer.Append("a", new byte[1]));
        Assert.Contains("'b' is incomplete (4 of 8 bytes)", e.Message);
    }

    [Fact]
    public void Unknown_tensor_throws()
    {
        using var writer = TwoTensorWriter("unknown");
        writer.Append("a", new byte[8]);
        writer.Append("b", new byte[8]);
        var e = Assert.Throws<InvalidOperationException>(() => writer.Append("c", new byte[1]));
        Assert.Contains("'c' is not in the shard plan", e.Message);
    }

    [Fact]
    public void Overflow_throws()
    {
        using var writer = TwoTensorWriter("overflow");
        writer.Append("a", new byte[5]);
        var e = Assert.Throws<ArgumentException>(() => writer.Append("a", new byte[4]));
        Assert.Contains("tensor 'a': 5 + 4 bytes overflow its 8 bytes", e.Message);
    }

    [Fact]
    public void Incomplete_complete_throws()
    {
        using var writer = TwoTensorWriter("incomplete");
        writer.Append("a", new byte[3]);
        var e = Assert.Throws<InvalidOperationException>(writer.Complete);
        Assert.EndsWith("tensor 'a' is incomplete (3 of 8 bytes); 1 more tensor has not arrived", e.Message);
    }

    [Fact]
    public void Complete_without_the_last_tensor_throws()
    {
        using var writer = TwoTensorWriter("missing-last");
        writer.Append("a", new byte[8]);
        var e = Assert.Throws<InvalidOperationException>(writer.Complete);
        Assert.EndsWith("tensor 'b' is incomplete (0 of 8 bytes)", e.Message);
    }

    [Fact]
    public void Append_after_complete_throws()
    {
        using var writer = TwoTensorWriter("after");
        writer.Append("a", new byte[8]);
        writer.Append("b", new byte[8]);
        writer.Complete();
        Assert.Throws<InvalidOperationException>(() => writer.Append("b", []));
        Assert.Throws<InvalidOperationException>(writer.Complete);
    }

    [Fact]
    public void Index_metadata_may_not_override_total_size()
    {
        var plan = ShardPlan.Create([new TensorInfo("a", DType.U8, [1])], 0);
        Assert.Throws<ArgumentException>(() =>
            new ShardedWriter(_dir.Folder("meta"), plan, new Dictionary<string, string> { ["total_size"] = "1" })
        );
    }

    [Fact]
    public void Build_header_pads_with_spaces_to_a_multiple_of_8()
    {
        for (int length = 1; length <= 9; length++)
        {
            var header = ShardedWriter.BuildHeader([new TensorInfo(new string('x', length), DType.U8, [1])]);
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(header);
            Assert.Equal(0UL, n % 8);
            Assert.Equal(header.Length - 8, (int)n);
            using var document = JsonDocument.Parse(header.AsMemory(8));
            Assert.True(document.RootElement.TryGetProperty(new string('x', length), out _));
        }
    }
}
