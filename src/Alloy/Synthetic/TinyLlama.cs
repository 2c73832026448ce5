using System.Text.Json;
using System.Text.Json.Nodes;
using Alloy.Checkpoints;
using Alloy.Tensors;

namespace Alloy.Synthetic;

/// <summary>Shape and storage of a generated Llama-style model.</summary>
public sealed record TinyLlamaSpec
{
    public int VocabSize { get; init; } = 272;
    public int HiddenSize { get; init; } = 64;
    public int IntermediateSize { get; init; } = 128;
    public int Layers { get; init; } = 4;
    public int Heads { get; init; } = 4;
    public int KeyValueHeads { get; init; } = 2;
    public DType DType { get; init; } = DType.BF16;
    public bool TieEmbeddings { get; init; }

    /// <summary>Bytes per safetensors shard; ≤ 0 writes a single model.safetensors.</summary>
    public long ShardBytes { get; init; }

    /// <summary>Seed of the base weights; fine-tunes derive theirs from it.</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>Tokens, merges and a chat template the tokenizer adds to the byte vocabulary.</summary>
    public TokenizerExtras Tokenizer { get; init; } = TokenizerExtras.None;

    public int HeadDim => HiddenSize / Heads;
}

/// <summary>
/// The one deterministic generator of tiny Hugging Face Llama-style model folders (config.json, safetensors, a
/// byte-level tokenizer). Fine-tunes are the base plus structured task vectors: a component shared by all fine-tunes
/// whose sign flips between them on alternating blocks (so sign-election methods have conflicts to resolve), a
/// component of their own, and sparse large outliers (so magnitude trimming has something to keep).
/// </summary>
public static class TinyLlama
{
    /// <summary>Tensor names and shapes in the order Hugging Face writes them.</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> Tensors(TinyLlamaSpec spec)
    {
        long h = spec.HiddenSize,
            i = spec.IntermediateSize,
            kv = (long)spec.KeyValueHeads * spec.HeadDim;
        var list = new List<(string, long[])> { ("model.embed_tokens.weight", [spec.VocabSize, h]) };
        for (int layer = 0; layer < spec.Layers; layer++)
        {
            var p = $"model.layers.{layer}.";
            list.Add((p + "input_layernorm.weight", [h]));
            list.Add((p + "self_attn.q_proj.weight", [h, h]));
            list.Add((p + "self_attn.k_proj.weight", [kv, h]));
            list.Add((p + "self_attn.v_proj.weight", [kv, h]));
            list.Add((p + "self_attn.o_proj.weight", [h, h]));
            list.Add((p + "post_attention_layernorm.weight", [h]));
            list.Add((p + "mlp.gate_proj.weight", [i, h]));
            list.Add((p + "mlp.up_proj.weight", [i, h]));
            list.Add((p + "mlp.down_proj.weight", [h, i]));
        }
        list.Add(("model.norm.weight", [h]));
        if (!spec.TieEmbeddings)
            list.Add(("lm_head.weight", [spec.VocabSize, h]));
        return list;
    }

    /// <summary>
    /// The float32 values of a tensor: of the base model (<paramref name="fineTune"/> = 0) or of fine-tune k ≥ 1,
    /// before rounding to the stored dtype.
    /// </summary>
    public static float[] Values(TinyLlamaSpec spec, string name, long[] shape, int fineTune)
    {
        long count = shape.Aggregate(1L, (a, b) => a * b);
        var values = new float[count];
        bool isNorm = name.EndsWith("norm.weight", StringComparison.Ordinal);
        double scale = isNorm ? 0.05 : 1.0 / Math.Sqrt(shape[^1]);
        var weights = RandomStream.For(spec.Seed, name, 0);
        var shared = RandomStream.For(spec.Seed, name, 1_000);
        var own = RandomStream.For(spec.Seed, name, 1_000 + fineTune);
        double deltaScale = 0.1 * scale;
        // Every value depends on its index alone, so blocks can be drawn on all cores with the same result.
        const int Block = 1 << 16;
        Parallel.For(0, (int)((count + Block - 1) / Block), block =>
        {
            for (long j = (long)block * Block, end = Math.Min(count, j + Block); j < end; j++)
            {
                double value = (isNorm ? 1.0 : 0.0) + scale * weights.Normal(j);
                if (fineTune > 0)
                {
                    // Blocks of 16 elements: fine-tune k flips the shared direction on blocks where (block + k) % 3 ==
                    // 0.
                    int sign = ((j >> 4) + fineTune) % 3 == 0 ? -1 : 1;
                    double delta = deltaScale * (0.7 * sign * shared.Normal(j) + 0.7 * own.Normal(j));
                    if (own.Uniform(count + j) < 0.01)
                        delta += 8 * deltaScale * (own.Uniform(2 * count + j) < 0.5 ? -1 : 1);
                    values[j] = (float)value + (float)delta;
                }
                else
                    values[j] = (float)value;
            }
        });
        return values;
    }

    /// <summary>
    /// Writes a base model (fineTune = 0) or fine-tune k into <paramref name="folder"/>, telling
    /// <paramref name="written"/> the bytes of weights written after each tensor.
    /// </summary>
    public static void Write(string folder, TinyLlamaSpec spec, int fineTune = 0, Action<long>? written = null)
    {
        Directory.CreateDirectory(folder);
        var tensors = Tensors(spec).Select(t => new TensorInfo(t.Name, spec.DType, t.Shape)).ToList();
        using (var writer = new ShardedWriter(folder, ShardPlan.Create(tensors, spec.ShardBytes)))
        {
            foreach (var tensor in tensors)
            {
                var values = Values(spec, tensor.Name, tensor.Shape, fineTune);
                var bytes = new byte[tensor.ByteLength];
                TensorConvert.FromFloat32(values, spec.DType, bytes);
                writer.Append(tensor.Name, bytes);
                written?.Invoke(bytes.Length);
            }
            writer.Complete();
        }
        WriteJson(Path.Combine(folder, "config.json"), Config(spec));
        WriteJson(
            Path.Combine(folder, "generation_config.json"),
            new JsonObject
            {
                ["bos_token_id"] = ByteTokenizer.BosId,
                ["eos_token_id"] = ByteTokenizer.EosId,
                ["transformers_version"] = "4.46.0",
            }
        );
        ByteTokenizer.Write(folder, spec.VocabSize, spec.Tokenizer);
    }

    /// <summary>Writes base/ and fine-tune folders finetune-1 … finetune-n under <paramref name="root"/>.</summary>
    /// <remarks><paramref name="progress"/> hears (model, bytes written of the family, the family's bytes).</remarks>
    public static IReadOnlyList<string> WriteFamily(
        string root,
        TinyLlamaSpec spec,
        int fineTunes,
        Action<string, long, long>? progress = null
    )
    {
        long perModel = Tensors(spec).Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b)) * spec.DType.Size(),
            total = perModel * (fineTunes + 1),
            done = 0;
        var folders = new List<string>();
        for (int k = 0; k <= fineTunes; k++)
        {
            string name = k == 0 ? "base" : $"finetune-{k}";
            folders.Add(Path.Combine(root, name));
            progress?.Invoke(name, done, total);
            Write(folders[^1], spec, k, bytes => progress?.Invoke(name, done += bytes, total));
        }
        return folders;
    }

    public static JsonObject Config(TinyLlamaSpec spec) =>
        new()
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["vocab_size"] = spec.VocabSize,
            ["hidden_size"] = spec.HiddenSize,
            ["intermediate_size"] = spec.IntermediateSize,
            ["num_hidden_layers"] = spec.Layers,
            ["num_attention_heads"] = spec.Heads,
            ["num_key_value_heads"] = spec.KeyValueHeads,
            ["head_dim"] = spec.HeadDim,
            ["hidden_act"] = "silu",
            ["max_position_embeddings"] = 2048,
            ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = 10000.0,
            ["attention_bias"] = false,
            ["mlp_bias"] = false,
            ["initializer_range"] = 0.02,
            ["tie_word_embeddings"] = spec.TieEmbeddings,
            ["bos_token_id"] = ByteTokenizer.BosId,
            ["eos_token_id"] = ByteTokenizer.EosId,
            ["torch_dtype"] = spec.DType.TorchName(),
            ["transformers_version"] = "4.46.0",
            ["use_cache"] = true,
        };

    internal static void WriteJson(string path, JsonNode node) =>
        File.WriteAllText(path, node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
}
