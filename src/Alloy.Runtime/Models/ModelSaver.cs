using System.Text.Json.Nodes;
using Alloy.Checkpoints;
using Alloy.Output;
using Alloy.Tensors;

namespace Alloy.Runtime.Models;

/// <summary>
/// Writes a model back as a Hugging Face folder that <c>alloy merge</c>, the runtime and transformers load: safetensors
/// (sharded like a merge's output) in the chosen dtype, the source folder's config.json with its dtype updated, and
/// its tokenizer and generation files. Written into a temporary folder beside the target and moved into place when
/// complete; never into the source folder.
/// </summary>
public static class ModelSaver
{
    /// <summary>Hugging Face's default shard size.</summary>
    public const long DefaultShardBytes = 5_000_000_000;

    public static void Save(
        LlamaModel model,
        string sourceFolder,
        string target,
        DType dtype,
        bool overwrite = false,
        long shardBytes = DefaultShardBytes
    )
    {
        using var output = OutputFolder.Prepare(target, overwrite, [sourceFolder]);
        Save(model, sourceFolder, output, dtype, shardBytes);
    }

    /// <summary>
    /// Saves into an output folder prepared before the work started (so a bad target is refused before training, not
    /// after), and commits it.
    /// </summary>
    public static void Save(
        LlamaModel model,
        string sourceFolder,
        OutputFolder output,
        DType dtype,
        long shardBytes = DefaultShardBytes
    )
    {
        if (dtype is not (DType.F32 or DType.BF16 or DType.F16))
            throw new AlloyException($"cannot save a model as {dtype.TorchName()}; use float32, bfloat16 or float16");
        string configPath = Path.Combine(sourceFolder, Checkpoint.ConfigFileName);
        if (!File.Exists(configPath))
            throw new AlloyException($"{sourceFolder}: no {Checkpoint.ConfigFileName} to write beside the weights");
        var config = StrictJson.ReadObjectFile(configPath);
        // transformers ≥ 4.56 writes "dtype", older versions "torch_dtype": keep whichever the source uses.
        config[config.ContainsKey("dtype") && !config.ContainsKey("torch_dtype") ? "dtype" : "torch_dtype"] =
            dtype.TorchName();
        // A mixture whose experts were merged (alloy moe-compress) has fewer of them than its source.
        if (model.Config.Moe is { } moe)
        {
            config[model.Config.Family == ArchitectureFamily.Mixtral ? "num_local_experts" : "num_experts"] =
                moe.Experts;
            config["num_experts_per_tok"] = moe.TopK;
        }

        var tensors = model
            .Parameters.Select(p => new TensorInfo(p.Name, dtype, [.. p.Shape.Select(d => (long)d)]))
            .ToList();
        using (var writer = new ShardedWriter(output.Temporary, ShardPlan.Create(tensors, shardBytes)))
        {
            byte[] buffer = [];
            foreach (var (parameter, info) in model.Parameters.Zip(tensors))
            {
                if (buffer.Length < info.ByteLength)
                    buffer = new byte[info.ByteLength];
                var bytes = buffer.AsSpan(0, (int)info.ByteLength);
                TensorConvert.FromFloat32(parameter.Data, dtype, bytes);
                writer.Append(parameter.Name, bytes);
            }
            writer.Complete();
        }
        OutputConfig.Write(config, Path.Combine(output.Temporary, Checkpoint.ConfigFileName));
        DonorFiles.Copy(sourceFolder, output.Temporary, copyTokenizer: true);
        output.Commit();
    }

    /// <summary>
    /// The dtype config.json in <paramref name="folder"/> states (torch_dtype or dtype), when it is one a model can be
    /// saved in.
    /// </summary>
    public static DType? StatedDType(string folder)
    {
        var path = Path.Combine(folder, Checkpoint.ConfigFileName);
        if (StrictJson.ReadObjectFileIfPresent(path) is not { } config)
            return null;
        var name = config.StringField("torch_dtype", path) ?? config.StringField("dtype", path);
        return
            name is not null
            && DTypes.TryParseTorch(name, out var dtype)
            && dtype is DType.F32 or DType.BF16 or DType.F16
            ? dtype
            : null;
    }
}
