using Alloy.Architecture;
using Alloy.Checkpoints;

namespace Alloy.Alignment;

/// <summary>
/// Weight matching between two stored checkpoints, for a merge that aligns a model before merging it (a model entry's
/// <c>align: weight_matching</c>): both are read whole in float32, matched, and the result given as per-tensor index
/// maps the merge reads through.
/// </summary>
public static class CheckpointAlignment
{
    /// <summary>
    /// Index maps that permute <paramref name="model"/> onto <paramref name="reference"/> (only the tensors that move),
    /// and the sweeps weight matching took. Both must be dense Llama-family checkpoints of one shape.
    /// </summary>
    public static (IReadOnlyDictionary<string, TensorGather> Gathers, int Sweeps) Align(
        Checkpoint reference,
        string referenceName,
        Checkpoint model,
        string modelName,
        ulong seed = 0,
        CancellationToken cancellation = default
    )
    {
        var spec = PermutationSpec.ForDecoder(Shape(model, modelName));
        var (a, b) = (Read(spec, reference, referenceName), Read(spec, model, modelName));
        var (perms, sweeps) = WeightMatching.Match(spec, a, b, seed, cancellation: cancellation);
        var gathers = new Dictionary<string, TensorGather>(StringComparer.Ordinal);
        foreach (var name in spec.TensorShapes.Keys)
            if (spec.Gather(name, perms) is { } gather)
                gathers[name] = gather;
        return (gathers, sweeps);
    }

    /// <summary>The decoder's shape: head counts from config.json, the rest from the tensors themselves.</summary>
    private static DecoderShape Shape(Checkpoint checkpoint, string name)
    {
        var config = checkpoint.Config;
        string? type = config?["model_type"]?.GetValue<string>();
        if (type is not ("llama" or "mistral" or "qwen2"))
            throw new AlloyException(
                $"'{name}': align takes dense llama, mistral and qwen2 models; config.json says model_type "
                    + $"'{type ?? "(none)"}'"
            );
        long Field(string key) =>
            ModelLayout.ReadLong(config, key)
            ?? throw new AlloyException($"'{name}': config.json has no '{key}', which align needs");
        long[] TensorShape(string tensor) =>
            checkpoint.Find(tensor)?.Info.Shape
            ?? throw new AlloyException($"'{name}': tensor '{tensor}' is missing, which align needs");
        int heads = (int)Field("num_attention_heads");
        var embedding = TensorShape("model.embed_tokens.weight");
        int hidden = (int)embedding[1];
        return new DecoderShape(
            (int)embedding[0],
            hidden,
            (int)TensorShape("model.layers.0.mlp.gate_proj.weight")[0],
            (int)Field("num_hidden_layers"),
            heads,
            (int)(ModelLayout.ReadLong(config, "num_key_value_heads") ?? heads),
            (int)(ModelLayout.ReadLong(config, "head_dim") ?? hidden / heads),
            checkpoint.Contains("model.layers.0.self_attn.q_proj.bias"),
            checkpoint.Contains("model.layers.0.self_attn.o_proj.bias"),
            checkpoint.Contains("model.layers.0.mlp.gate_proj.bias"),
            !checkpoint.Contains("lm_head.weight")
        );
    }

    /// <summary>Every tensor the spec names, in float32; a missing tensor or another shape is an error.</summary>
    private static Dictionary<string, float[]> Read(PermutationSpec spec, Checkpoint checkpoint, string name)
    {
        var tensors = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var (tensor, shape) in spec.TensorShapes)
        {
            var stored = checkpoint.Find(tensor)
                ?? throw new AlloyException($"'{name}': tensor '{tensor}' is missing, so it cannot be aligned");
            if (!stored.Info.Shape.SequenceEqual(shape.Select(d => (long)d)))
                throw new AlloyException(
                    $"'{name}': tensor '{tensor}' is [{string.Join(", ", stored.Info.Shape)}], expected "
                        + $"[{string.Join(", ", shape)}]; alignment permutes models of one architecture and shape"
                );
            tensors[tensor] = stored.ReadFloat32();
        }
        return tensors;
    }
}
