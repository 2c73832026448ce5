using System.Text.Json.Nodes;
using Alloy.Architecture;
using Alloy.Checkpoints;
using Alloy.Tests.Support;

namespace Alloy.Tests.Architecture;

public sealed class ModelLayoutTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    private ModelLayout Analyze(JsonObject? config, params (string Name, long[] Shape)[] tensors)
    {
        var folder = _work[Guid.NewGuid().ToString("N")[..8]];
        TestCheckpoints.Write(
            folder,
            config,
            tensors.Select(t => (t.Name, t.Shape, new float[t.Shape.Aggregate(1L, (a, b) => a * b)]))
        );
        using var checkpoint = Checkpoint.Open(folder);
        return ModelLayout.Analyze(checkpoint);
    }

    private static (string, long[])[] Layers(string prefix, int count, params string[] suffixes) =>
        Enumerable
            .Range(0, count)
            .SelectMany(i => suffixes.Select(s => ($"{prefix}{i}.{s}", new long[] { 2, 2 })))
            .ToArray();

    [Fact]
    public void Llama_layers_embeddings_norm_and_head_are_found()
    {
        var layout = Analyze(
            TestCheckpoints.LlamaConfig(3, vocab: 8),
            [
                ("model.embed_tokens.weight", [8, 2]),
                .. Layers("model.layers.", 3, "self_attn.q_proj.weight", "mlp.up_proj.weight"),
                ("model.norm.weight", [2]),
                ("lm_head.weight", [8, 2]),
            ]
        );
        Assert.Equal("model.layers.", layout.LayerPrefix);
        Assert.Equal(3, layout.LayerCount);
        Assert.Equal("num_hidden_layers", layout.LayerCountKey);
        Assert.Equal(["model.embed_tokens.weight"], layout.PreWeights);
        Assert.Equal(["model.norm.weight", "lm_head.weight"], layout.PostWeights);
        Assert.Equal(["self_attn.q_proj.weight", "mlp.up_proj.weight"], layout.LayerSuffixes(1));
        Assert.False(layout.HeadTied);
        Assert.True(layout.IsEmbedding("lm_head.weight", [8, 2]));
        Assert.False(layout.IsEmbedding("model.norm.weight", [2]));
    }

    [Fact]
    public void Gpt2_naming_with_n_layer()
    {
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("GPT2LMHeadModel"),
            ["n_layer"] = 2,
            ["vocab_size"] = 8,
        };
        var layout = Analyze(
            config,
            [
                ("transformer.wte.weight", [8, 2]),
                ("transformer.wpe.weight", [4, 2]),
                .. Layers("transformer.h.", 2, "attn.c_attn.weight"),
                ("transformer.ln_f.weight", [2]),
            ]
        );
        Assert.Equal("transformer.h.", layout.LayerPrefix);
        Assert.Equal("n_layer", layout.LayerCountKey);
        Assert.Equal(["transformer.wte.weight", "transformer.wpe.weight"], layout.PreWeights);
        // GPT-2 ties its head to wte and stores none.
        Assert.True(layout.HeadTied);
        Assert.Equal("lm_head.weight", layout.HeadName);
        Assert.Equal(["transformer.ln_f.weight", "lm_head.weight"], layout.PostWeights);
        Assert.False(layout.IsEmbedding("transformer.wpe.weight", [4, 2]));
    }

    [Fact]
    public void A_position_embedding_stored_first_is_not_taken_for_the_token_embedding()
    {
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("GPT2LMHeadModel"),
            ["n_layer"] = 1,
            ["vocab_size"] = 8,
        };
        var layout = Analyze(
            config,
            [
                ("wpe.weight", [4, 2]),
                ("wte.weight", [8, 2]),
                .. Layers("h.", 1, "mlp.c_fc.weight"),
                ("ln_f.weight", [2]),
            ]
        );
        Assert.Equal("wte.weight", layout.InputEmbedding);
        Assert.Equal(["wpe.weight", "wte.weight"], layout.PreWeights);
        Assert.True(layout.HeadTied);
    }

    [Fact]
    public void Gpt_neox_naming_with_embed_out()
    {
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("GPTNeoXForCausalLM"),
            ["num_hidden_layers"] = 2,
        };
        var layout = Analyze(
            config,
            [
                ("gpt_neox.embed_in.weight", [8, 2]),
                .. Layers("gpt_neox.layers.", 2, "attention.dense.weight"),
                ("gpt_neox.final_layer_norm.weight", [2]),
                ("embed_out.weight", [8, 2]),
            ]
        );
        Assert.Equal("gpt_neox.layers.", layout.LayerPrefix);
        Assert.Equal(["gpt_neox.embed_in.weight"], layout.PreWeights);
        Assert.Equal(["gpt_neox.final_layer_norm.weight", "embed_out.weight"], layout.PostWeights);
        Assert.Equal("embed_out.weight", layout.HeadName);
    }

    [Fact]
    public void Opt_decoder_layers()
    {
        var config = new JsonObject { ["architectures"] = new JsonArray("OPTForCausalLM"), ["num_hidden_layers"] = 2 };
        var layout = Analyze(
            config,
            [
                ("model.decoder.embed_tokens.weight", [8, 2]),
                ("model.decoder.embed_positions.weight", [6, 2]),
                .. Layers("model.decoder.layers.", 2, "fc1.weight"),
                ("model.decoder.final_layer_norm.weight", [2]),
                ("lm_head.weight", [8, 2]),
            ]
        );
        Assert.Equal("model.decoder.layers.", layout.LayerPrefix);
        Assert.Equal(2, layout.LayerCount);
        Assert.Contains("model.decoder.embed_positions.weight", layout.PreWeights);
    }

    [Fact]
    public void The_decoder_stack_is_told_apart_from_a_vision_tower_by_the_layer_count()
    {
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("LlavaForConditionalGeneration"),
            ["text_config"] = new JsonObject { ["num_hidden_layers"] = 2 },
        };
        var layout = Analyze(
            config,
            [
                .. Layers("vision_tower.encoder.layers.", 3, "mlp.fc1.weight"),
                ("language_model.model.embed_tokens.weight", [8, 2]),
                .. Layers("language_model.model.layers.", 2, "mlp.up_proj.weight"),
                ("language_model.lm_head.weight", [8, 2]),
            ]
        );
        Assert.Equal("language_model.model.layers.", layout.LayerPrefix);
        Assert.Equal("text_config.num_hidden_layers", layout.LayerCountKey);
        Assert.Contains("vision_tower.encoder.layers.0.mlp.fc1.weight", layout.PreWeights);
    }

    [Fact]
    public void Tied_llama_has_an_implied_head_stored_as_the_embedding()
    {
        var config = TestCheckpoints.LlamaConfig(1);
        config["tie_word_embeddings"] = true;
        var folder = _work["tied"];
        TestCheckpoints.Write(
            folder,
            config,
            [
                ("model.embed_tokens.weight", [8, 2], new float[16]),
                ("model.layers.0.mlp.up_proj.weight", [2, 2], new float[4]),
                ("model.norm.weight", [2], new float[2]),
            ]
        );
        using var checkpoint = Checkpoint.Open(folder);
        var layout = ModelLayout.Analyze(checkpoint);
        Assert.True(layout.HeadTied);
        Assert.Equal("model.embed_tokens.weight", layout.StoredName(checkpoint, "lm_head.weight"));
        Assert.Null(layout.StoredName(checkpoint, "model.other.weight"));
    }

    [Fact]
    public void A_config_layer_count_that_disagrees_with_the_tensors_is_an_error()
    {
        var e = Assert.Throws<AlloyException>(() =>
            Analyze(TestCheckpoints.LlamaConfig(5), Layers("model.layers.", 3, "mlp.up_proj.weight"))
        );
        Assert.Contains("num_hidden_layers = 5", e.Message);
        Assert.Contains("3 layers", e.Message);
    }

    [Fact]
    public void A_gap_in_the_layers_is_an_error()
    {
        var tensors = Layers("model.layers.", 3, "mlp.up_proj.weight")
            .Where(t => !t.Item1.StartsWith("model.layers.1.", StringComparison.Ordinal))
            .ToArray();
        var e = Assert.Throws<AlloyException>(() => Analyze(null, tensors));
        Assert.Contains("incomplete", e.Message);
    }
}
