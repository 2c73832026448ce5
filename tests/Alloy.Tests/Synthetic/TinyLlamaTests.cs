using System.Text.Json.Nodes;
using Alloy.Synthetic;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.Synthetic;

public sealed class TinyLlamaTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    [Fact]
    public void Generation_is_deterministic_to_the_byte()
    {
        var spec = new TinyLlamaSpec { Layers = 2 };
        TinyLlama.Write(_work["a"], spec, 2);
        TinyLlama.Write(_work["b"], spec, 2);
        Assert.Equal(TestCheckpoints.FolderDigest(_work["a"]), TestCheckpoints.FolderDigest(_work["b"]));
        TinyLlama.Write(_work["c"], spec with { Seed = 2 }, 2);
        Assert.NotEqual(TestCheckpoints.FolderDigest(_work["a"]), TestCheckpoints.FolderDigest(_work["c"]));
    }

    [Fact]
    public void A_model_folder_has_the_tensors_config_and_tokenizer_transformers_expects()
    {
        var spec = new TinyLlamaSpec { Layers = 3, DType = DType.F16 };
        TinyLlama.Write(_work["m"], spec);
        var tensors = TestCheckpoints.ReadAll(_work["m"]);
        Assert.Equal(1 + 9 * 3 + 2, tensors.Count);
        Assert.Equal(spec.VocabSize * spec.HiddenSize, tensors["model.embed_tokens.weight"].Length);
        var config = JsonNode.Parse(File.ReadAllText(_work["m/config.json"]))!;
        Assert.Equal("float16", (string)config["torch_dtype"]!);
        Assert.Equal(3, (int)config["num_hidden_layers"]!);
        var tokenizer = JsonNode.Parse(File.ReadAllText(_work["m/tokenizer.json"]))!;
        Assert.Equal(260, tokenizer["model"]!["vocab"]!.AsObject().Count);
        Assert.Equal("<s>", (string)tokenizer["added_tokens"]![0]!["content"]!);
    }

    [Fact]
    public void Sharded_and_tied_variants()
    {
        TinyLlama.Write(_work["m"], new TinyLlamaSpec { ShardBytes = 30_000, TieEmbeddings = true });
        Assert.True(File.Exists(_work["m/model.safetensors.index.json"]));
        Assert.DoesNotContain("lm_head.weight", TestCheckpoints.ReadAll(_work["m"]).Keys);
    }

    [Fact]
    public void Fine_tunes_have_task_vectors_whose_signs_conflict_between_them()
    {
        var spec = new TinyLlamaSpec { DType = DType.F32 };
        var shape = new long[] { spec.IntermediateSize, spec.HiddenSize };
        const string name = "model.layers.0.mlp.up_proj.weight";
        var b = TinyLlama.Values(spec, name, shape, 0);
        var d1 = TinyLlama.Values(spec, name, shape, 1).Zip(b, (x, y) => x - y).ToArray();
        var d2 = TinyLlama.Values(spec, name, shape, 2).Zip(b, (x, y) => x - y).ToArray();
        double agreement = d1.Zip(d2).Count(p => Math.Sign(p.First) == Math.Sign(p.Second)) / (double)d1.Length;
        // Related (not identical, not independent): the shared component agrees on some blocks and is flipped on
        // others.
        Assert.InRange(agreement, 0.3, 0.7);
        Assert.All(d1, d => Assert.True(Math.Abs(d) < 1.0));
        Assert.True(d1.Max(Math.Abs) > 4 * d1.Average(Math.Abs), "expected sparse outliers in the task vector");
    }
}
