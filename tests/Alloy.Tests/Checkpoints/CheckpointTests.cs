using Alloy.Checkpoints;
using Alloy.Tensors;

namespace Alloy.Tests.Checkpoints;

public sealed class CheckpointTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>The one-line message of opening <paramref name="path"/>, which must fail.</summary>
    internal static string OpenError(string path)
    {
        var e = Assert.Throws<AlloyException>(() => Checkpoint.Open(path).Dispose());
        Assert.DoesNotContain('\n', e.Message);
        return e.Message;
    }

    private static void WriteIndex(string folder, string weightMapJson) =>
        File.WriteAllText(
            Path.Combine(folder, "model.safetensors.index.json"),
            "{\"metadata\": {\"total_size\": 0}, \"weight_map\": " + weightMapJson + "}"
        );

    /// <summary>Two shards: a and b in shard 1, c in shard 2.</summary>
    private string TwoShardFolder(string name)
    {
        string folder = _dir.Folder(name);
        RawSafetensors.WriteValid(
            Path.Combine(folder, "model-00001-of-00002.safetensors"),
            ("a", DType.F32, [2]),
            ("b", DType.BF16, [3])
        );
        RawSafetensors.WriteValid(Path.Combine(folder, "model-00002-of-00002.safetensors"), ("c", DType.I64, [1]));
        return folder;
    }

    [Fact]
    public void Indexed_folder_opens_shards_in_name_order()
    {
        string folder = TwoShardFolder("indexed");
        // weight_map order differs from shard order; shard order wins.
        WriteIndex(
            folder,
            """
            {"c": "model-00002-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
             "a": "model-00001-of-00002.safetensors"}
            """
        );
        File.WriteAllText(
            Path.Combine(folder, "config.json"),
            """{"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2}"""
        );

        using var checkpoint = Checkpoint.Open(folder);
        Assert.Equal(["a", "b", "c"], checkpoint.Tensors.Select(t => t.Name));
        Assert.Equal(2, checkpoint.Files.Count);
        Assert.Equal(folder, checkpoint.Path);
        Assert.Equal(folder, checkpoint.Folder);
        Assert.Equal(2, checkpoint.Config!["num_hidden_layers"]!.GetValue<int>());
        Assert.True(checkpoint.Contains("c"));
        Assert.False(checkpoint.Contains("d"));
        Assert.Equal(new TensorInfo("b", DType.BF16, [3]), checkpoint.Find("b")!.Info);
        Assert.EndsWith("model-00002-of-00002.safetensors", checkpoint.Find("c")!.File.Path);
        Assert.Equal(8 + 6 + 8, checkpoint.TotalBytes);
        // Both tensors of shard 1 share one mapping: the shard is opened once.
        Assert.Same(checkpoint.Find("a")!.File, checkpoint.Find("b")!.File);
    }

    [Fact]
    public void Index_is_the_contract_for_which_tensors_exist()
    {
        string folder = TwoShardFolder("partial-index");
        WriteIndex(folder, """{"a": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}""");
        using var checkpoint = Checkpoint.Open(folder);
        Assert.Equal(["a", "c"], checkpoint.Tensors.Select(t => t.Name));
        Assert.Null(checkpoint.Find("b"));
    }

    [Fact]
    public void Index_preferred_over_single_file()
    {
        string folder = TwoShardFolder("both");
        WriteIndex(folder, """{"c": "model-00002-of-00002.safetensors"}""");
        RawSafetensors.WriteValid(Path.Combine(folder, "model.safetensors"), ("z", DType.U8, [1]));
        using var checkpoint = Checkpoint.Open(folder);
        Assert.Equal(["c"], checkpoint.Tensors.Select(t => t.Name));
    }

    [Fact]
    public void Folder_with_model_safetensors()
    {
        string folder = _dir.Folder("single");
        RawSafetensors.WriteValid(Path.Combine(folder, "model.safetensors"), ("w", DType.F16, [2, 2]));
        using var checkpoint = Checkpoint.Open(folder);
        Assert.Equal(["w"], checkpoint.Tensors.Select(t => t.Name));
        Assert.Null(checkpoint.Config);
    }

    [Fact]
    public void Single_file_path_opens_just_that_file()
    {
        string folder = TwoShardFolder("file");
        File.WriteAllText(Path.Combine(folder, "config.json"), """{"model_type": "llama"}""");
        string path = Path.Combine(folder, "model-00002-of-00002.safetensors");
        using var checkpoint = Checkpoint.Open(path);
        Assert.Equal(["c"], checkpoint.Tensors.Select(t => t.Name));
        Assert.Equal(path, checkpoint.Path);
        Assert.Equal(folder, checkpoint.Folder);
        Assert.Equal("llama", checkpoint.Config!["model_type"]!.GetValue<string>());
    }

    [Fact]
    public void Trailing_separator_is_dropped()
    {
        string folder = _dir.Folder("slash");
        RawSafetensors.WriteValid(Path.Combine(folder, "model.safetensors"), ("w", DType.U8, [1]));
        using var checkpoint = Checkpoint.Open(folder + Path.DirectorySeparatorChar);
        Assert.Equal(folder, checkpoint.Path);
        Assert.Equal(folder, checkpoint.Folder);
    }

    [Fact]
    public void Relative_path_is_made_absolute()
    {
        string folder = _dir.Folder("relative");
        RawSafetensors.WriteValid(Path.Combine(folder, "model.safetensors"), ("w", DType.U8, [1]));
        string relative = Path.GetRelativePath(Directory.GetCurrentDirectory(), folder);
        using var checkpoint = Checkpoint.Open(relative);
        Assert.Equal(folder, checkpoint.Path);
    }

    [Fact]
    public void Index_naming_a_missing_shard()
    {
        string folder = TwoShardFolder("missing-shard");
        WriteIndex(folder, """{"a": "model-00001-of-00002.safetensors", "d": "model-00003-of-00003.safetensors"}""");
        string message = OpenError(folder);
        Assert.Contains("model.safetensors.index.json", message);
        Assert.Contains("shard 'model-00003-of-00003.safetensors' (holding tensor 'd') does not exist", message);
    }

    [Theory]
    [InlineData("../x.safetensors")]
    [InlineData("/etc/x.safetensors")]
    [InlineData("sub/../../x.safetensors")]
    [InlineData("..")]
    [InlineData("")]
    public void Index_entry_outside_the_folder(string shard)
    {
        string folder = TwoShardFolder("escape");
        WriteIndex(folder, $$"""{"a": "model-00001-of-00002.safetensors", "model.w": "{{shard}}"}""");
        string message = OpenError(folder);
        Assert.Contains("model.safetensors.index.json", message);
        Assert.Contains(
            $"weight_map entry 'model.w' names the shard '{shard}', which is not a file name inside the model folder",
            message
        );
    }

    [Fact]
    public void Index_says_a_shard_holds_a_tensor_it_lacks()
    {
        string folder = TwoShardFolder("lacking");
        WriteIndex(folder, """{"a": "model-00001-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}""");
        string message = OpenError(folder);
        Assert.Contains("model.safetensors.index.json", message);
        Assert.Contains(
            "tensor 'c' is mapped to 'model-00001-of-00002.safetensors', which does not contain it",
            message
        );
    }

    [Fact]
    public void Index_with_a_tensor_twice()
    {
        string folder = TwoShardFolder("dup-index");
        WriteIndex(folder, """{"a": "model-00001-of-00002.safetensors", "a": "model-00002-of-00002.safetensors"}""");
        Assert.Contains("key 'a' appears twice in 'weight_map'", OpenError(folder));
    }

    [Fact]
    public void Index_without_weight_map()
    {
        string folder = TwoShardFolder("no-map");
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"), """{"metadata": {}}""");
        Assert.Contains("model.safetensors.index.json: \"weight_map\" is missing", OpenError(folder));
    }

    [Fact]
    public void Malformed_index_json()
    {
        string folder = TwoShardFolder("bad-index");
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"), """{"weight_map": {"a": """);
        Assert.Contains("model.safetensors.index.json: invalid JSON at line ", OpenError(folder));
    }

    [Fact]
    public void Malformed_shard_is_reported_with_its_name()
    {
        string folder = _dir.Folder("bad-shard");
        RawSafetensors.Write(
            Path.Combine(folder, "model-00001-of-00001.safetensors"),
            """{"model.layers.3.mlp.up_proj.weight":{"dtype":"F32","shape":[4],"data_offsets":[10,20]}}""",
            4096
        );
        WriteIndex(folder, """{"model.layers.3.mlp.up_proj.weight": "model-00001-of-00001.safetensors"}""");
        string message = OpenError(folder);
        Assert.Contains(
            "model-00001-of-00001.safetensors: tensor 'model.layers.3.mlp.up_proj.weight': data_offsets [10, 20] "
                + "span 10 bytes",
            message
        );
    }

    [Fact]
    public void Folder_with_no_weights()
    {
        string folder = _dir.Folder("empty");
        File.WriteAllText(Path.Combine(folder, "config.json"), "{}");
        string message = OpenError(folder);
        Assert.Contains(folder, message);
        Assert.Contains(
            "no model weights found; expected model.safetensors.index.json, model.safetensors, "
                + "pytorch_model.bin.index.json or pytorch_model.bin",
            message
        );
    }

    [Fact]
    public void Folder_with_unrecognized_safetensors_names_them()
    {
        string folder = _dir.Folder("consolidated");
        RawSafetensors.WriteValid(Path.Combine(folder, "consolidated.safetensors"), ("w", DType.U8, [1]));
        string message = OpenError(folder);
        Assert.Contains("no model weights found", message);
        Assert.Contains("found consolidated.safetensors", message);
    }

    [Fact]
    public void Folder_with_unrecognized_bin_names_them()
    {
        string folder = _dir.Folder("consolidated-bin");
        File.WriteAllBytes(Path.Combine(folder, "consolidated.00.pth"), [0x50, 0x4B]);
        Assert.Contains("found consolidated.00.pth", OpenError(folder));
    }

    [Theory]
    [InlineData("pytorch_model.bin", "pytorch_model.bin: not a PyTorch checkpoint (no zip directory)")]
    [InlineData("pytorch_model.bin.index.json", "pytorch_model.bin.index.json: invalid JSON at line ")]
    public void Folder_with_pytorch_bin_is_read_as_one(string file, string expected)
    {
        string folder = _dir.Folder("torch");
        File.WriteAllBytes(Path.Combine(folder, file), [0x50, 0x4B]);
        string message = OpenError(folder);
        Assert.Contains(folder, message);
        Assert.Contains(expected, message);
    }

    [Fact]
    public void Malformed_config_json()
    {
        string folder = _dir.Folder("bad-config");
        RawSafetensors.WriteValid(Path.Combine(folder, "model.safetensors"), ("w", DType.U8, [1]));
        File.WriteAllText(Path.Combine(folder, "config.json"), """{"hidden_size": 32,}""");
        string message = OpenError(folder);
        Assert.Contains(Path.Combine(folder, "config.json"), message);
        Assert.Contains("invalid JSON at line 1, column 20: ", message);
    }

    [Fact]
    public void Config_json_that_is_not_an_object()
    {
        string folder = _dir.Folder("array-config");
        RawSafetensors.WriteValid(Path.Combine(folder, "model.safetensors"), ("w", DType.U8, [1]));
        File.WriteAllText(Path.Combine(folder, "config.json"), "[1]");
        Assert.Contains("config.json: expected a JSON object, not [1]", OpenError(folder));
    }

    [Fact]
    public void Nonexistent_path()
    {
        string path = _dir.Combine("nope");
        string message = OpenError(path);
        Assert.Contains($"model path '{path}' does not exist", message);
    }

    [Fact]
    public void File_that_is_not_safetensors()
    {
        string path = _dir.Combine("notes.txt");
        File.WriteAllText(path, "hello");
        Assert.Contains(
            "notes.txt: not a .safetensors file, a PyTorch .bin/.pt/.pth file or a model folder",
            OpenError(path)
        );
    }

    [Fact]
    public void Config_json_with_a_duplicate_key()
    {
        string folder = _dir.Folder("dup-config");
        RawSafetensors.WriteValid(Path.Combine(folder, "model.safetensors"), ("w", DType.U8, [1]));
        File.WriteAllText(Path.Combine(folder, "config.json"), """{"hidden_size": 32, "hidden_size": 64}""");
        string message = OpenError(folder);
        Assert.Contains("config.json: key 'hidden_size' appears twice", message);
    }
}
