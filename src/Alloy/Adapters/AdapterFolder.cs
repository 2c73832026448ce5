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
        var infos = tensors.Select(t => new TensorInfo(t.Name, t.DType, t.Shape)).ToList();
        using (var writer = new ShardedWriter(folder, ShardPlan.SingleFile(infos, "adapter_model.safetensors")))
        {
            foreach (var tensor in tensors)
            {
                var bytes = new byte[tensor.Values.Length * tensor.DType.Size()];
                TensorConvert.FromFloat32(tensor.Values, tensor.DType, bytes);
                writer.Append(tensor.Name, bytes);
            }
            writer.Complete();
        }
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
        File.WriteAllText(
            Path.Combine(folder, "adapter_config.json"),
            config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n"
        );
        File.WriteAllText(Path.Combine(folder, "README.md"), card);
    }
}
