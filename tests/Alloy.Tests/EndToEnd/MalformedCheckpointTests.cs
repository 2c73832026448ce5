using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Alloy.Synthetic;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// Damaged inputs, through the CLI: each gets exit code 1 and one line naming the file, the tensor where there is one,
/// and the problem (the checkpoint tests cover every validation rule in detail).
/// </summary>
public sealed class MalformedCheckpointTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public MalformedCheckpointTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    /// <summary>
    /// A copy of fine-tune 1 whose safetensors header is rewritten by <paramref name="edit"/>; returns the recipe.
    /// </summary>
    private string RecipeWithDamagedHeader(Action<JsonObject> edit, Func<byte[], byte[]>? rewrite = null)
    {
        var folder = _work["damaged"];
        Directory.CreateDirectory(folder);
        foreach (var file in Directory.GetFiles(_models.FineTunes[0]))
            File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        var path = Path.Combine(folder, "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        int headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, headerLength))!.AsObject();
        edit(header);
        var newHeader = Encoding.UTF8.GetBytes(header.ToJsonString());
        var output = new byte[8 + newHeader.Length + bytes.Length - 8 - headerLength];
        BinaryPrimitives.WriteUInt64LittleEndian(output, (ulong)newHeader.Length);
        newHeader.CopyTo(output, 8);
        bytes.AsSpan(8 + headerLength).CopyTo(output.AsSpan(8 + newHeader.Length));
        File.WriteAllBytes(path, rewrite is null ? output : rewrite(output));
        return Recipe(folder);
    }

    private string Recipe(string damaged) =>
        _work.Write(
            "config.yml",
            $"""
            merge_method: linear
            models:
              - model: {_models.FineTunes[1]}
                parameters:
                  weight: 1
              - model: {damaged}
                parameters:
                  weight: 1
            """
        );

    private static JsonObject Entry(JsonObject header, string name) => header[name]!.AsObject();

    [Fact]
    public void Header_length_past_the_end_of_the_file()
    {
        var recipe = RecipeWithDamagedHeader(
            _ => { },
            bytes =>
            {
                BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)bytes.Length);
                return bytes;
            }
        );
        AlloyCli.Fails(recipe, _work["out"], "runs past the end of the file");
    }

    [Fact]
    public void Unknown_dtype_names_the_tensor()
    {
        var recipe = RecipeWithDamagedHeader(h => Entry(h, "model.norm.weight")["dtype"] = "Q4_K");
        var result = AlloyCli.Fails(recipe, _work["out"], "dtype 'Q4_K' is not supported");
        Assert.Contains("model.norm.weight", result.Stderr);
        Assert.Contains(Path.Combine("damaged", "model.safetensors"), result.Stderr);
    }

    [Fact]
    public void Offsets_outside_the_file_name_the_tensor()
    {
        var recipe = RecipeWithDamagedHeader(h =>
        {
            var offsets = Entry(h, "model.norm.weight")["data_offsets"]!.AsArray();
            long size = (long)offsets[1]! - (long)offsets[0]!;
            offsets[0] = 10_000_000;
            offsets[1] = 10_000_000 + size;
        });
        var result = AlloyCli.Fails(recipe, _work["out"], "outside the data section");
        Assert.Contains("model.norm.weight", result.Stderr);
    }

    [Fact]
    public void Overlapping_offsets_name_both_tensors()
    {
        var recipe = RecipeWithDamagedHeader(h =>
        {
            var norm = Entry(h, "model.norm.weight")["data_offsets"]!.AsArray();
            var layerNorm = Entry(h, "model.layers.0.input_layernorm.weight")["data_offsets"]!.AsArray();
            layerNorm[0] = (long)norm[0]!;
            layerNorm[1] = (long)norm[1]!;
        });
        var result = AlloyCli.Fails(recipe, _work["out"], "overlap");
        Assert.Contains("model.norm.weight", result.Stderr);
        Assert.Contains("model.layers.0.input_layernorm.weight", result.Stderr);
    }

    [Fact]
    public void An_index_entry_outside_the_model_folder_is_refused()
    {
        var sharded = _work["sharded"];
        TinyLlama.Write(sharded, _models.Spec with { ShardBytes = 20_000 }, 1);
        var indexPath = Path.Combine(sharded, "model.safetensors.index.json");
        var index = JsonNode.Parse(File.ReadAllText(indexPath))!;
        index["weight_map"]!["model.norm.weight"] = "../x.safetensors";
        File.WriteAllText(indexPath, index.ToJsonString());
        var result = AlloyCli.Fails(
            Recipe(sharded),
            _work["out"],
            "'../x.safetensors', which is not a file name inside the model folder"
        );
        Assert.Contains("model.safetensors.index.json", result.Stderr);
    }
}
