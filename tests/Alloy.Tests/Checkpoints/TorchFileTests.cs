using System.Buffers.Binary;
using System.IO.Compression;
using Alloy.Checkpoints;
using Alloy.Tests.EndToEnd;

namespace Alloy.Tests.Checkpoints;

/// <summary>The committed files of tests/fixtures/torch (made once by make_fixtures.py with PyTorch).</summary>
internal static class TorchFixtures
{
    public static string Path(string relative) =>
        System.IO.Path.Combine(ExampleTests.RepositoryRoot, "tests", "fixtures", "torch", relative);
}

/// <summary>
/// PyTorch .bin checkpoints read through <see cref="Checkpoint.Open"/>, the path a user's model takes: every good
/// fixture equals its safetensors twin byte for byte; every malicious or damaged one is refused with its own line.
/// </summary>
public sealed class TorchFileTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string OpenError(string path) => CheckpointTests.OpenError(path);

    private static void AssertSameTensors(Checkpoint expected, Checkpoint actual)
    {
        Assert.Equal(expected.Tensors.Select(t => t.Name), actual.Tensors.Select(t => t.Name));
        foreach (var want in expected.Tensors)
        {
            var got = actual.Find(want.Name)!;
            Assert.Equal(want.Info, got.Info);
            int length = (int)want.Info.ByteLength;
            Assert.True(want.Bytes(0, length).SequenceEqual(got.Bytes(0, length)), $"{want.Name}: bytes differ");
        }
    }

    [Theory]
    [InlineData("state.bin", "state.safetensors")]
    [InlineData("state-protocol4.bin", "state.safetensors")]
    [InlineData("state-zip64.bin", "state.safetensors")]
    [InlineData("state-wrapped.pt", "state.safetensors")]
    [InlineData("state-parameters.pt", "state.safetensors")]
    [InlineData("sharded", "state.safetensors")]
    [InlineData("sharded/pytorch_model.bin.index.json", "state.safetensors")]
    [InlineData("sharded/pytorch_model-00002-of-00002.bin", null)]
    [InlineData("tiny-llama", "tiny-llama.safetensors")]
    [InlineData("float8.bin", "float8.safetensors")]
    public void Bin_fixture_has_the_tensors_of_its_safetensors_twin(string fixture, string? twin)
    {
        using var actual = Checkpoint.Open(TorchFixtures.Path(fixture));
        using var expected = Checkpoint.Open(TorchFixtures.Path(twin ?? "state.safetensors"));
        if (twin is not null)
        {
            AssertSameTensors(expected, actual);
            Assert.Equal(expected.TotalBytes, actual.TotalBytes);
            return;
        }
        // One shard alone: the second half of the state dict.
        Assert.Equal(expected.Tensors.Skip(6).Select(t => t.Info), actual.Tensors.Select(t => t.Info));
    }

    [Fact]
    public void Tensors_are_byte_ranges_of_the_one_mapped_file()
    {
        using var file = TorchFile.Open(TorchFixtures.Path("state.bin"));
        Assert.Equal("state", file.Archive);
        Assert.All(file.Tensors, t => Assert.Same(file.File, t.File));
        // Tied weights share one storage, so they are the same bytes, not copies.
        Assert.Equal(file.Find("model.embed_tokens.weight")!.Offset, file.Find("lm_head.weight")!.Offset);
        // k_proj is rows 3..6 of a 10×4 float32 storage: 12 elements in.
        var kProj = file.Find("model.layers.0.self_attn.k_proj.weight")!;
        using var zip = ZipFile.OpenRead(file.Path);
        var storages = zip
            .Entries.Where(e => e.FullName.StartsWith("state/data/", StringComparison.Ordinal) && e.Length == 160)
            .ToList();
        Assert.Single(storages);
        using var stream = storages[0].Open();
        var storage = new byte[160];
        stream.ReadExactly(storage);
        Assert.True(kProj.Bytes(0, 64).SequenceEqual(storage.AsSpan(48, 64)));
    }

    [Fact]
    public void Folder_with_model_bin_opens_it()
    {
        using var checkpoint = Checkpoint.Open(TorchFixtures.Path("tiny-llama"));
        Assert.IsType<TorchFile>(Assert.Single(checkpoint.Files));
        Assert.Equal("llama", checkpoint.Config!["model_type"]!.GetValue<string>());
    }

    [Fact]
    public void Discovery_prefers_safetensors_then_the_bin_index_as_mergekit_does()
    {
        string folder = _dir.Folder("both");
        foreach (var shard in Directory.GetFiles(TorchFixtures.Path("sharded")))
            File.Copy(shard, Path.Combine(folder, Path.GetFileName(shard)));
        File.Copy(TorchFixtures.Path("tiny-llama/pytorch_model.bin"), Path.Combine(folder, "pytorch_model.bin"));
        using (var checkpoint = Checkpoint.Open(folder))
        {
            // The index wins over pytorch_model.bin.
            Assert.Equal(2, checkpoint.Files.Count);
            Assert.Contains("position_ids", checkpoint.Tensors.Select(t => t.Name));
        }
        File.Copy(TorchFixtures.Path("float8.safetensors"), Path.Combine(folder, "model.safetensors"));
        using (var checkpoint = Checkpoint.Open(folder))
        {
            Assert.IsType<SafetensorsFile>(Assert.Single(checkpoint.Files));
        }
    }

    [Theory]
    [InlineData(
        "os-system.bin",
        "os-system.bin: refusing to load: the pickle calls os.system, which is not a tensor (Alloy never executes code "
            + "from checkpoints)"
    )]
    [InlineData(
        "posix-system.bin",
        "posix-system.bin: refusing to load: the pickle calls posix.system, which is not a tensor"
    )]
    [InlineData(
        "rebuild-from-type.bin",
        "refusing to load: the pickle calls torch._tensor._rebuild_from_type_v2, which Alloy does not read (only plain "
            + "tensors and parameters;"
    )]
    [InlineData("truncated.bin", "truncated.bin: truncated/data.pkl: the pickle is truncated: it ends at byte")]
    [InlineData(
        "unknown-opcode.bin",
        "unknown-opcode.bin: unknown-opcode/data.pkl: unknown pickle opcode 0xff at byte 2"
    )]
    [InlineData(
        "offset-past-data.bin",
        "offset-past-data.bin: tensor 'weight': storage offset 1000 + 6 elements of float32 run past its storage '0' "
            + "(6 elements)"
    )]
    [InlineData(
        "size-past-data.bin",
        "size-past-data.bin: tensor 'weight': its storage '0' declares 256 bytes, but entry 'archive/data/0' holds "
            + "only 24"
    )]
    [InlineData(
        "missing-entry.bin",
        "missing-entry.bin: tensor 'weight': its storage '7' is missing: the archive has no entry 'archive/data/7'"
    )]
    [InlineData(
        "compressed.bin",
        "compressed.bin: tensor 'weight': its storage entry 'compressed/data/0' is compressed (deflate)"
    )]
    [InlineData(
        "non-contiguous.bin",
        "non-contiguous.bin: tensor 'weight': stored as a non-contiguous view (shape [3, 2], stride [1, 3])"
    )]
    [InlineData("legacy.bin", "legacy.bin: a legacy torch.save file (not the zip format of PyTorch 1.6 and later)")]
    [InlineData(
        "big-endian.bin",
        "big-endian.bin: tensors are stored with byte order 'big'; Alloy reads only little-endian checkpoints"
    )]
    public void Refused_fixture_names_its_problem(string fixture, string expected)
    {
        string path = TorchFixtures.Path("refused/" + fixture);
        string message = OpenError(path);
        Assert.StartsWith(path + ": ", message);
        Assert.Contains(expected, message);
    }

    [Fact]
    public void Refused_inside_a_model_folder_too()
    {
        string folder = _dir.Folder("evil");
        File.Copy(TorchFixtures.Path("refused/os-system.bin"), Path.Combine(folder, "pytorch_model.bin"));
        Assert.Contains("pytorch_model.bin: refusing to load: the pickle calls os.system", OpenError(folder));
    }

    /// <summary>A copy of the sharded fixture with its own index text.</summary>
    private string ShardedWithIndex(string weightMapJson)
    {
        string folder = _dir.Folder("sharded-" + Guid.NewGuid().ToString("N")[..6]);
        foreach (var shard in Directory.GetFiles(TorchFixtures.Path("sharded"), "*.bin"))
            File.Copy(shard, Path.Combine(folder, Path.GetFileName(shard)));
        File.WriteAllText(
            Path.Combine(folder, Checkpoint.TorchIndexFileName),
            "{\"metadata\": {}, \"weight_map\": " + weightMapJson + "}"
        );
        return folder;
    }

    [Fact]
    public void Bin_index_is_the_contract_for_which_tensors_exist()
    {
        string folder = ShardedWithIndex(
            """{"counts": "pytorch_model-00002-of-00002.bin", "model.norm.scale": "pytorch_model-00001-of-00002.bin"}"""
        );
        using var checkpoint = Checkpoint.Open(folder);
        Assert.Equal(["model.norm.scale", "counts"], checkpoint.Tensors.Select(t => t.Name));
    }

    [Theory]
    [InlineData(
        """{"counts": "pytorch_model-00003-of-00003.bin"}""",
        "shard 'pytorch_model-00003-of-00003.bin' (holding tensor 'counts') does not exist"
    )]
    [InlineData(
        """{"counts": "../pytorch_model.bin"}""",
        "weight_map entry 'counts' names the shard '../pytorch_model.bin', which is not a file name inside the model "
            + "folder"
    )]
    [InlineData(
        """{"counts": "pytorch_model-00001-of-00002.bin"}""",
        "tensor 'counts' is mapped to 'pytorch_model-00001-of-00002.bin', which does not contain it"
    )]
    [InlineData(
        """{"counts": "pytorch_model-00002-of-00002.bin", "counts": "pytorch_model-00001-of-00002.bin"}""",
        "key 'counts' appears twice in 'weight_map'"
    )]
    public void Bin_index_is_validated_like_the_safetensors_index(string weightMap, string expected)
    {
        string message = OpenError(ShardedWithIndex(weightMap));
        Assert.Contains("pytorch_model.bin.index.json: ", message);
        Assert.Contains(expected, message);
    }

    [Fact]
    public void Bin_index_with_a_damaged_shard_names_the_shard()
    {
        string folder = ShardedWithIndex("""{"weight": "pytorch_model-00003-of-00003.bin"}""");
        File.Copy(
            TorchFixtures.Path("refused/offset-past-data.bin"),
            Path.Combine(folder, "pytorch_model-00003-of-00003.bin")
        );
        Assert.Contains("pytorch_model-00003-of-00003.bin: tensor 'weight': storage offset 1000", OpenError(folder));
    }

    [Fact]
    public void File_that_is_not_a_zip()
    {
        string path = _dir.Combine("notes.bin");
        File.WriteAllText(path, "hello, this is not a checkpoint");
        Assert.Contains(
            "notes.bin: not a PyTorch checkpoint (no zip directory); expected a file written by torch.save",
            OpenError(path)
        );
    }

    [Fact]
    public void Truncated_archive()
    {
        var bytes = File.ReadAllBytes(TorchFixtures.Path("state.bin"));
        string path = _dir.Combine("cut.bin");
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        Assert.Contains("cut.bin: a zip archive without its central directory; the file is truncated", OpenError(path));
    }

    [Fact]
    public void Zip_without_data_pkl()
    {
        string path = _dir.Combine("other.pt");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            using var writer = new StreamWriter(
                zip.CreateEntry("model/readme.txt", CompressionLevel.NoCompression).Open()
            );
            writer.Write("no pickle here");
        }
        Assert.Contains(
            "other.pt: zip archive has no <archive>/data.pkl, so it is not a torch.save checkpoint",
            OpenError(path)
        );
    }

    [Fact]
    public void Central_directory_pointing_at_a_missing_local_header()
    {
        var bytes = File.ReadAllBytes(TorchFixtures.Path("refused/missing-entry.bin"));
        // The first central-directory entry's local-header offset (at +42) now points past the file.
        int central = IndexOf(bytes, [0x50, 0x4B, 0x01, 0x02]);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(central + 42), (uint)bytes.Length + 100);
        string path = _dir.Combine("moved.bin");
        File.WriteAllBytes(path, bytes);
        Assert.Contains(
            "moved.bin: damaged zip: the local header of entry 'archive/data.pkl' is missing",
            OpenError(path)
        );
    }

    [Fact]
    public void Data_running_past_the_end_of_the_file()
    {
        var bytes = File.ReadAllBytes(TorchFixtures.Path("refused/missing-entry.bin"));
        int central = IndexOf(bytes, [0x50, 0x4B, 0x01, 0x02]);
        // The first entry's compressed size (at +20) now claims more than the file holds.
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(central + 20), 1_000_000);
        string path = _dir.Combine("long.bin");
        File.WriteAllBytes(path, bytes);
        Assert.Contains("long.bin: damaged zip: entry 'archive/data.pkl' (1000000 bytes from offset", OpenError(path));
    }

    [Fact]
    public void Stored_entry_claiming_more_than_it_holds()
    {
        var bytes = File.ReadAllBytes(TorchFixtures.Path("refused/missing-entry.bin"));
        int central = IndexOf(bytes, [0x50, 0x4B, 0x01, 0x02]);
        // The first entry's uncompressed size (at +24) no longer matches its stored bytes.
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(central + 24), 1_000_000);
        string path = _dir.Combine("claims.bin");
        File.WriteAllBytes(path, bytes);
        Assert.Contains(
            "claims.bin: damaged zip: stored entry 'archive/data.pkl' claims 1000000 bytes but holds",
            OpenError(path)
        );
    }

    private static int IndexOf(byte[] haystack, byte[] needle) => haystack.AsSpan().IndexOf(needle);
}
