using System.Text.Json;
using System.Text.Json.Nodes;
using Alloy.Checkpoints;
using Alloy.Tensors;

namespace Alloy.Adapters;

/// <summary>One tensor of an adapter file, as float32 values to be stored in <see cref="DType"/>.</summary>
public sealed record AdapterTensor(string Name, DType DType, long[] Shape, float[] Values);

/// <summary>
/// Writes a PEFT LoRA adapter folder: <c>adapter_model.safetensors</c> (tensors under PEFT's names),
/// <c>adapter_config.json</c> (<c>r</c> = the largest module rank, <c>lora_alpha</c> = r, and <c>rank_pattern</c> /
/// <c>alpha_pattern</c> with α = rank for the modules of lower rank, so every module's scale is 1 — or α/r for a given
/// α) and a card.
/// </summary>
public static class AdapterFolder
{
    /// <summary>What PEFT puts before a module's name.</summary>
    public const string Prefix = "base_model.model.";

    /// <summary>The adapter's weights file, in the folder.</summary>
    public const string WeightsFile = "adapter_model.safetensors";

    public static void Write(
        string folder,
        IReadOnlyList<AdapterTensor> tensors,
        IReadOnlyList<(string Module, int Rank)> modules,
        IReadOnlyCollection<string> modulesToSave,
        string? baseModel,
        string card,
        double? alpha = null
    )
    {
        using (
            var file = new AdapterFileWriter(folder, [.. tensors.Select(t => new TensorInfo(t.Name, t.DType, t.Shape))])
        )
        {
            foreach (var tensor in tensors)
                file.Append(tensor);
            file.Complete();
        }
        WriteConfig(folder, modules, modulesToSave, baseModel, card, alpha: alpha);
    }

    /// <summary>
    /// adapter_config.json and the card. <paramref name="loraBias"/>: the file holds <c>lora_B.bias</c> updates, which
    /// PEFT applies only with <c>lora_bias: true</c>. <paramref name="alpha"/>: a trained adapter's α (every module's
    /// scale α/r); without it α = r.
    /// </summary>
    public static void WriteConfig(
        string folder,
        IReadOnlyList<(string Module, int Rank)> modules,
        IReadOnlyCollection<string> modulesToSave,
        string? baseModel,
        string card,
        bool loraBias = false,
        double? alpha = null
    )
    {
        int rank = modules.Max(m => m.Rank);
        var lower = modules.Where(m => m.Rank < rank).ToList();
        // Every module's scale α/r is the same: 1 unless a trained adapter's α says otherwise.
        double scale = (alpha ?? rank) / rank;
        var config = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["base_model_name_or_path"] = baseModel,
            ["r"] = rank,
            ["lora_alpha"] = alpha ?? rank,
            ["rank_pattern"] = new JsonObject(lower.Select(m => KeyValuePair.Create(m.Module, (JsonNode?)m.Rank))),
            ["alpha_pattern"] = new JsonObject(
                lower.Select(m => KeyValuePair.Create(m.Module, (JsonNode?)(m.Rank * scale)))
            ),
            ["target_modules"] = new JsonArray([
                .. modules
                    .Select(m => m.Module[(m.Module.LastIndexOf('.') + 1)..])
                    .Distinct()
                    .Order(StringComparer.Ordinal)
                    .Select(n => (JsonNode?)n),
            ]),
            ["modules_to_save"] =
                modulesToSave.Count == 0 ? null : new JsonArray([.. modulesToSave.Select(n => (JsonNode?)n)]),
            ["lora_dropout"] = 0.0,
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["use_rslora"] = false,
            ["bias"] = "none",
        };
        if (loraBias)
            config["lora_bias"] = true;
        File.WriteAllText(
            Path.Combine(folder, "adapter_config.json"),
            config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n"
        );
        File.WriteAllText(Path.Combine(folder, "README.md"), card);
    }
}

/// <summary>
/// Streams an adapter's tensors into <c>adapter_model.safetensors</c> as they come, so only the tensor being written is
/// in memory. A safetensors header lists every shape before the data: when the shapes are known up front
/// (<c>plan</c>) the bytes go straight to a <see cref="ShardedWriter"/>; when they are not (ranks lowered by the
/// spectrum), they go to a spill file beside it and <see cref="Complete"/> copies them behind the header.
/// </summary>
public sealed class AdapterFileWriter : IDisposable
{
    private const int Chunk = 1 << 20; // elements converted, or bytes copied, at a time

    private readonly string _folder;
    private readonly ShardedWriter? _direct;
    private readonly FileStream? _spill;
    private readonly List<TensorInfo> _spilled = [];

    /// <param name="plan">The tensors in the order they will come, or null when their shapes are not yet known.</param>
    public AdapterFileWriter(string folder, IReadOnlyList<TensorInfo>? plan)
    {
        _folder = folder;
        if (plan is not null)
            _direct = new ShardedWriter(folder, ShardPlan.SingleFile(plan, AdapterFolder.WeightsFile));
        else
            _spill = new FileStream(SpillPath, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 4 << 20);
    }

    private string SpillPath => Path.Combine(_folder, AdapterFolder.WeightsFile + ".spill");

    /// <summary>Float32 values stored in the tensor's dtype.</summary>
    public void Append(AdapterTensor tensor)
    {
        var info = new TensorInfo(tensor.Name, tensor.DType, tensor.Shape);
        _spilled.Add(info);
        var bytes = new byte[Math.Min(tensor.Values.Length, Chunk) * tensor.DType.Size()];
        for (int done = 0; done < tensor.Values.Length; done += Chunk)
        {
            int count = Math.Min(Chunk, tensor.Values.Length - done);
            var part = bytes.AsSpan(0, count * tensor.DType.Size());
            TensorConvert.FromFloat32(tensor.Values.AsSpan(done, count), tensor.DType, part);
            Write(info.Name, part);
        }
    }

    /// <summary>A stored tensor's bytes, as they are, under <paramref name="name"/>.</summary>
    public void Copy(string name, StoredTensor source)
    {
        var info = source.Info with { Name = name };
        _spilled.Add(info);
        for (long done = 0; done < info.ByteLength; done += Chunk)
        {
            int count = (int)Math.Min(Chunk, info.ByteLength - done);
            Write(name, source.Bytes(done, count));
        }
        source.File.Release(source.Offset, info.ByteLength);
    }

    private void Write(string name, ReadOnlySpan<byte> bytes)
    {
        if (_direct is not null)
            _direct.Append(name, bytes);
        else
            _spill!.Write(bytes);
    }

    public void Complete()
    {
        if (_direct is not null)
        {
            _direct.Complete();
            return;
        }
        _spill!.Position = 0;
        using (var writer = new ShardedWriter(_folder, ShardPlan.SingleFile(_spilled, AdapterFolder.WeightsFile)))
        {
            var buffer = new byte[Chunk];
            foreach (var info in _spilled)
            {
                for (long done = 0; done < info.ByteLength; )
                {
                    int read = _spill.Read(buffer, 0, (int)Math.Min(buffer.Length, info.ByteLength - done));
                    if (read == 0)
                        throw new IOException($"{SpillPath} ended inside '{info.Name}'");
                    writer.Append(info.Name, buffer.AsSpan(0, read));
                    done += read;
                }
            }
            writer.Complete();
        }
        _spill.Dispose();
        File.Delete(SpillPath);
    }

    public void Dispose()
    {
        _direct?.Dispose();
        _spill?.Dispose();
    }
}
