using System.Text.Json;
using System.Text.Json.Nodes;
using Alloy.Checkpoints;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Support;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Runtime.Tests.Models;

/// <summary>
/// Models whose config.json or tensors are wrong are refused with one line that names the file and the problem;
/// tensors transformers ignores too are accepted; parameters are reachable by their Hugging Face names.
/// </summary>
public sealed class ModelLoadingTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    public static TheoryData<string, string> ConfigProblems() =>
        new()
        {
            {
                "model_type=\"gpt2\"",
                "model_type 'gpt2' is not supported by Alloy.Runtime (supported: llama, mistral, qwen2, mixtral, "
                    + "qwen2_moe)"
            },
            { "model_type=", "has no \"model_type\"" },
            {
                "rope_scaling={\"rope_type\":\"yarn\",\"factor\":4.0}",
                "rope_scaling: type 'yarn' is not supported by Alloy.Runtime (supported: linear, llama3, or none)"
            },
            {
                "rope_scaling={\"rope_type\":\"llama3\",\"factor\":8.0}",
                "rope_scaling: \"low_freq_factor\" is missing"
            },
            { "rope_scaling={\"type\":\"linear\"}", "rope_scaling: \"factor\" is missing" },
            { "rope_scaling=4", "'rope_scaling' must be an object, not 4" },
            { "num_key_value_heads=3", "num_attention_heads (4) is not a multiple of num_key_value_heads (3)" },
            { "hidden_act=\"gelu\"", "hidden_act 'gelu' is not supported" },
            { "hidden_size=", "\"hidden_size\" is missing" },
            {
                "hidden_size=30",
                "hidden_size (30) is not a multiple of num_attention_heads (4) and no head_dim is given"
            },
            { "num_hidden_layers=-1", "'num_hidden_layers' must be a positive whole number, not -1" },
            { "vocab_size=\"61\"", "'vocab_size' must be a positive whole number, not \"61\"" },
            { "head_dim=7", "head_dim 7 is odd" },
            { "rms_norm_eps=0", "'rms_norm_eps' must be a positive number, not 0" },
            { "tie_word_embeddings=1", "'tie_word_embeddings' must be true or false, not 1" },
            {
                "model_type=\"qwen2\";use_sliding_window=true",
                "use_sliding_window is true; Alloy.Runtime runs Qwen2 models with full attention only"
            },
        };

    [Theory]
    [MemberData(nameof(ConfigProblems))]
    public void A_wrong_config_is_refused_with_one_line(string edits, string expected)
    {
        var config = ReferenceConfig();
        foreach (var edit in edits.Split(';'))
        {
            var (key, value) = (edit[..edit.IndexOf('=')], edit[(edit.IndexOf('=') + 1)..]);
            if (value.Length == 0)
                config.Remove(key);
            else
                config[key] = JsonNode.Parse(value);
        }
        var folder = Write(config, ReferenceTensors());
        Refused(folder, Path.Combine(folder, "config.json") + ": ", expected);
    }

    [Fact]
    public void A_folder_without_config_json_is_refused()
    {
        var folder = Write(null, ReferenceTensors());
        Refused(folder, folder, "no config.json beside the weights");
    }

    public static TheoryData<string, string> TensorProblems() =>
        new()
        {
            { "drop model.layers.1.mlp.up_proj.weight", "tensor 'model.layers.1.mlp.up_proj.weight' is missing" },
            {
                "drop lm_head.weight",
                "tensor 'lm_head.weight' is missing, and config.json says tie_word_embeddings is false"
            },
            {
                "transpose model.layers.0.self_attn.k_proj.weight",
                "tensor 'model.layers.0.self_attn.k_proj.weight' has shape [32, 16], but config.json implies [16, 32]"
            },
            {
                "integer model.norm.weight",
                "tensor 'model.norm.weight' is stored as I32; a model's weights must be floating point"
            },
            {
                "add model.layers.0.self_attn.q_proj.bias",
                "tensor 'model.layers.0.self_attn.q_proj.bias' has no place in a llama model as config.json describes "
                    + "it"
            },
            {
                "add model.layers.2.mlp.up_proj.weight",
                "tensor 'model.layers.2.mlp.up_proj.weight' has no place in a llama model"
            },
        };

    [Theory]
    [MemberData(nameof(TensorProblems))]
    public void Wrong_tensors_are_refused_with_one_line(string edit, string expected)
    {
        var (action, name) = (edit[..edit.IndexOf(' ')], edit[(edit.IndexOf(' ') + 1)..]);
        var tensors = ReferenceTensors();
        int index = tensors.FindIndex(t => t.Name == name);
        switch (action)
        {
            case "drop":
                tensors.RemoveAt(index);
                break;
            case "transpose":
                tensors[index] = tensors[index] with { Shape = [tensors[index].Shape[1], tensors[index].Shape[0]] };
                break;
            case "integer":
                tensors[index] = tensors[index] with { DType = DType.I32 };
                break;
            case "add":
                tensors.Add((name, DType.F32, [32], new float[32]));
                break;
        }
        var folder = Write(ReferenceConfig(), tensors);
        Refused(folder, folder + ": ", expected);
    }

    [Fact]
    public void Tensors_transformers_ignores_are_ignored()
    {
        // Old checkpoints store RoPE buffers; a tied model may still store its head (transformers ties it to the
        // embedding).
        var tensors = ReferenceTensors();
        tensors.Add(("model.layers.0.self_attn.rotary_emb.inv_freq", DType.F32, [4], new float[4]));
        var config = ReferenceConfig();
        config["tie_word_embeddings"] = true;
        var model = LlamaModel.Load(Write(config, tensors));
        Assert.Null(model.Parameters.Find("lm_head.weight"));
        Assert.Same(model.Parameters["model.embed_tokens.weight"], model.Head.Weight);
    }

    [Fact]
    public void Parameters_are_the_checkpoints_tensors_by_hugging_face_name_and_the_layers_use_them()
    {
        var folder = Reference.Folder("llama-linear-bias");
        var model = LlamaModel.Load(folder);
        using var checkpoint = Checkpoint.Open(folder);
        Assert.Equal(checkpoint.Tensors.Select(t => t.Name).Order(), model.Parameters.Select(p => p.Name).Order());
        foreach (var tensor in checkpoint.Tensors)
        {
            var values = new float[tensor.Info.ElementCount];
            TensorConvert.ToFloat32(tensor.Bytes(0, (int)tensor.Info.ByteLength), tensor.Info.DType, values);
            Assert.Equal(values, model.Parameters[tensor.Name].Data);
            Assert.Equal(tensor.Info.Shape, model.Parameters[tensor.Name].Shape.Select(d => (long)d));
        }
        Assert.Same(model.Parameters["model.layers.1.mlp.down_proj.bias"], model.Blocks[1].Mlp!.Down.Bias);
        Assert.Same(model.Parameters["lm_head.weight"], model.Head.Weight);

        // A change to a parameter's values (a training step) is what the next forward pass computes with.
        var batch = TokenBatch.FromSequences([3, 1, 4, 1, 5]);
        var before = model.Forward(batch).Row(4).ToArray();
        model.Parameters["lm_head.weight"].Data[7 * 32] += 1f;
        var after = model.Forward(batch).Row(4).ToArray();
        Assert.NotEqual(before[7], after[7]);
        Assert.Equal(before[8], after[8]);
    }

    [Fact]
    public void Bad_batches_are_refused_with_one_line()
    {
        var model = LlamaModel.Load(Reference.Folder("llama-gqa"));
        var e = Assert.Throws<AlloyException>(() => model.Forward(TokenBatch.FromSequences([1, 2], [5, 6, 61])));
        Assert.Equal("token id 61 (sequence 1, token 2) is outside the model's vocabulary of 61", e.Message);
        e = Assert.Throws<AlloyException>(() =>
            TokenBatch.FromPadded(
                [
                    [1, 2, 3],
                ],
                [
                    [1, 0, 1],
                ]
            )
        );
        Assert.Contains("attention mask row 0 has padding at column 1 between real tokens", e.Message);
        e = Assert.Throws<AlloyException>(() =>
            TokenBatch.FromPadded(
                [
                    [1, 2, 3],
                ],
                [
                    [1, 2, 1],
                ]
            )
        );
        Assert.Contains("use 1 for tokens and 0 for padding", e.Message);
        e = Assert.Throws<AlloyException>(() =>
            model.Forward(TokenBatch.FromSequences([1]), LogitSelection.All, model.CreateCache(2))
        );
        Assert.Equal("the batch has 1 sequences but the KV cache holds 2", e.Message);
    }

    private static void Refused(string folder, string prefix, string expected)
    {
        var e = Assert.Throws<AlloyException>(() => LlamaModel.Load(folder));
        Assert.StartsWith(prefix, e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    private static JsonObject ReferenceConfig() =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(Reference.Folder("llama-gqa"), "config.json")))!.AsObject();

    private static List<(string Name, DType DType, long[] Shape, float[] Values)> ReferenceTensors()
    {
        using var checkpoint = Checkpoint.Open(Reference.Folder("llama-gqa"));
        return
        [
            .. checkpoint.Tensors.Select(t =>
            {
                var values = new float[t.Info.ElementCount];
                TensorConvert.ToFloat32(t.Bytes(0, (int)t.Info.ByteLength), t.Info.DType, values);
                return (t.Name, DType.F32, t.Info.Shape, values);
            }),
        ];
    }

    private string Write(JsonObject? config, List<(string Name, DType DType, long[] Shape, float[] Values)> tensors)
    {
        var folder = Directory.CreateDirectory(_temp[Guid.NewGuid().ToString("N")[..8]]).FullName;
        var infos = tensors.Select(t => new TensorInfo(t.Name, t.DType, t.Shape)).ToList();
        using (var writer = new ShardedWriter(folder, ShardPlan.Create(infos, 0)))
        {
            foreach (var (info, values) in infos.Zip(tensors.Select(t => t.Values)))
            {
                var bytes = new byte[info.ByteLength];
                if (info.DType.IsFloat())
                    TensorConvert.FromFloat32(values.AsSpan(0, (int)info.ElementCount), info.DType, bytes);
                writer.Append(info.Name, bytes);
            }
            writer.Complete();
        }
        if (config is not null)
            File.WriteAllText(
                Path.Combine(folder, "config.json"),
                config.ToJsonString(new JsonSerializerOptions { WriteIndented = true })
            );
        return folder;
    }
}
