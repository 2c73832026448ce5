using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Alloy.Methods.TaskVectors;

/// <summary>
/// What <c>emr</c> writes beside the unified model with <c>write_task_masks</c>, in the folder <c>emr/</c>: per task
/// (each non-base model) <c>&lt;task&gt;.safetensors</c> holding, for every merged tensor, the mask Mₜ = [τₜγ &gt; 0]
/// as packed bits under the tensor's name; <c>rescalers.json</c> with each task's rescaler sₜ; and a README saying how
/// to rebuild task t's model as W_base + sₜ·Mₜ ⊙ (W_unified − W_base).
/// </summary>
public static partial class EmrTaskFiles
{
    public const string Folder = "emr";
    public const string RescalersFile = "rescalers.json";

    /// <summary>
    /// One task: its model (as the recipe names it) and its mask file's name inside <see cref="Folder"/>.
    /// </summary>
    private sealed record TaskMasksFile(string Model, string File);

    /// <summary>
    /// The side outputs for a plan, or null when <c>write_task_masks</c> is off. Refuses a setting that varies across
    /// tensors (the rescalers sum over every merged tensor), several base models, and a model listed twice.
    /// </summary>
    public static SideOutputPlan? Plan(IReadOnlyList<MergeInputsInfo> tensors)
    {
        var on = tensors.Where(t => t[Emr.WriteTaskMasks]).ToList();
        if (on.Count == 0)
            return null;
        if (tensors.FirstOrDefault(t => !t[Emr.WriteTaskMasks]) is { } off)
            throw new AlloyException(
                $"emr: {Emr.WriteTaskMasks.Name} is on for '{on[0].TensorName}' but off for '{off.TensorName}'; the "
                    + $"rescalers sum over every merged tensor, so set it once for the whole merge (under the "
                    + $"top-level parameters, without a filter or gradient)"
            );
        var bases = tensors.Select(t => t.ModelNames[t.BaseIndex]).Distinct().ToList();
        if (bases.Count > 1)
            throw new AlloyException(
                $"emr: {Emr.WriteTaskMasks.Name} needs one base model for the whole merge, but the slices use "
                    + $"{string.Join(" and ", bases.Select(b => $"'{b}'"))}; rebuilding a task model takes a single "
                    + $"base"
            );

        var tasks = Tasks(tensors);
        var perTensor = tensors
            .Select(t =>
            {
                int[] models = InputRules.NonBase(t);
                if (models.Select(i => t.ModelIndices[i]).Distinct().Count() < models.Length)
                    throw new AlloyException(
                        $"emr: tensor '{t.TensorName}' has the same model twice among its inputs "
                            + $"({string.Join(", ", models.Select(i => t.ModelNames[i]))}); with "
                            + $"{Emr.WriteTaskMasks.Name} every task needs a model of its own"
                    );
                return models.Length == 0
                    ? null
                    : new SideOutputs(
                        models
                            .Select(i => SideTensor.Bits($"{Folder}/{tasks[t.ModelIndices[i]].File}", t.TensorName))
                            .ToList(),
                        2 * models.Length
                    );
            })
            .ToList();
        return new SideOutputPlan(perTensor, totals => Finish(bases[0], tasks, totals));
    }

    /// <summary>
    /// Every non-base model, in recipe order, with a mask file named after the reference's last part (made unique).
    /// </summary>
    private static SortedDictionary<int, TaskMasksFile> Tasks(IReadOnlyList<MergeInputsInfo> tensors)
    {
        var tasks = new SortedDictionary<int, TaskMasksFile>();
        foreach (var t in tensors)
        foreach (int i in InputRules.NonBase(t))
            tasks.TryAdd(t.ModelIndices[i], new TaskMasksFile(t.ModelNames[i], ""));
        var taken = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (index, task) in tasks.ToList())
        {
            string stem = FileStem(task.Model),
                name = stem;
            for (int n = 2; !taken.Add(name); n++)
                name = $"{stem}-{n}";
            tasks[index] = task with { File = name + ".safetensors" };
        }
        return tasks;
    }

    /// <summary>
    /// "org/finetune-1" → "finetune-1": the last path part, with characters a file name should not hold replaced.
    /// </summary>
    private static string FileStem(string model)
    {
        var last = model.TrimEnd('/', '\\').Split('/', '\\')[^1];
        var stem = UnsafeFileCharacters().Replace(last, "_").TrimStart('.');
        return stem.Length == 0 ? "task" : stem;
    }

    [GeneratedRegex(@"[^A-Za-z0-9._+@=-]")]
    private static partial Regex UnsafeFileCharacters();

    /// <summary>
    /// The rescalers from the tensors' totals (plan order), as the reference code sums per-tensor means.
    /// </summary>
    private static IReadOnlyList<SideFile> Finish(
        string baseModel,
        SortedDictionary<int, TaskMasksFile> tasks,
        IReadOnlyList<TensorTotals> totals
    )
    {
        var taskMeans = tasks.Keys.ToDictionary(k => k, _ => 0.0);
        var maskedMeans = tasks.Keys.ToDictionary(k => k, _ => 0.0);
        foreach (var tensor in totals)
        {
            if (tensor.Elements == 0)
                continue;
            int[] models = InputRules.NonBase(tensor.Tensor);
            for (int k = 0; k < models.Length; k++)
            {
                int model = tensor.Tensor.ModelIndices[models[k]];
                taskMeans[model] += tensor.Values[2 * k] / tensor.Elements;
                maskedMeans[model] += tensor.Values[2 * k + 1] / tensor.Elements;
            }
        }
        // A task whose mask is empty everywhere rebuilds as the base whatever its rescaler; 1 keeps the file plain
        // JSON.
        var rescalers = tasks.Keys.ToDictionary(k => k, k => maskedMeans[k] > 0 ? taskMeans[k] / maskedMeans[k] : 1.0);

        var json = new JsonObject
        {
            ["merge_method"] = "emr",
            ["base_model"] = baseModel,
            ["rebuild"] = "W_t = W_base + rescaler * (mask ⊙ (W_unified − W_base))",
            ["mask_format"] =
                "uint8, numpy.packbits(mask, axis=-1): 8 entries per byte along the last axis, first entry in the "
                + "high bit",
            ["tasks"] = new JsonArray(
                tasks
                    .Select(t =>
                        (JsonNode)
                            new JsonObject
                            {
                                ["model"] = t.Value.Model,
                                ["masks"] = t.Value.File,
                                ["rescaler"] = rescalers[t.Key],
                                ["sum_mean_abs_task_vector"] = taskMeans[t.Key],
                                ["sum_mean_abs_masked_unified"] = maskedMeans[t.Key],
                            }
                    )
                    .ToArray()
            ),
        };
        var options = new JsonSerializerOptions
        {
            WriteIndented = true,
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        };
        return
        [
            new SideFile($"{Folder}/{RescalersFile}", json.ToJsonString(options) + "\n"),
            new SideFile(
                $"{Folder}/README.md",
                Readme(baseModel, tasks.Values.ToList(), tasks.Keys.Select(k => rescalers[k]).ToList())
            ),
        ];
    }

    private static string Readme(string baseModel, IReadOnlyList<TaskMasksFile> tasks, IReadOnlyList<double> rescalers)
    {
        var text = new StringBuilder();
        text.Append(
            $"""
            # EMR-Merging: per-task masks and rescalers

            The model one folder up is EMR-Merging's unified model (Huang et al., *EMR-Merging: Tuning-Free
            High-Performance Model Merging*, NeurIPS 2024), merged from base model `{baseModel}`. This folder turns it
            back into each task's model (an approximation of that fine-tune):

                W_t = W_base + s_t * (M_t ⊙ (W_unified − W_base))

            | task (model) | masks | rescaler s_t |
            |---|---|---|

            """
        );
        for (int k = 0; k < tasks.Count; k++)
            text.Append(
                CultureInfo.InvariantCulture,
                $"| `{tasks[k].Model}` | `{tasks[k].File}` | {rescalers[k]:R} |\n"
            );
        text.Append(
            $$"""

            - `<task>.safetensors` holds, for every tensor the method merged, a uint8 tensor of the same name: the mask M_t
              packed as `numpy.packbits(mask, axis=-1)` does (8 entries per byte along the last axis, the first in the
              high bit; a scalar is stored as one byte). `numpy.unpackbits(packed, axis=-1, count=columns)` unpacks it.
              Tensors without a mask (integer tensors, which are copied) are the unified model's unchanged.
            - `{{RescalersFile}}` holds each task's rescaler s_t = Σ mean|τ_t| / Σ mean|M_t ⊙ τ_uni| (sums over the
              merged tensors of per-tensor means, τ_t = fine-tune − base, τ_uni = W_unified − W_base before rounding).
            - W_base is the base model as the merge read it: the same tensor names unless the recipe renumbers layers
              with `slices`, and without a LoRA adapter or tokenizer settings changing it (docs/methods.md, `emr`).

            Rebuilding one task's model with PyTorch and `safetensors`:

            ```python
            import json, torch
            from safetensors.torch import load_file, save_file

            def unpack(packed, shape):
                bits = (packed.unsqueeze(-1) >> torch.arange(7, -1, -1, dtype=torch.uint8)) & 1
                return bits.flatten(-2)[..., : (shape[-1] if len(shape) else 1)].reshape(shape).bool()

            task = json.load(open("emr/{{RescalersFile}}"))["tasks"][0]
            unified = load_file("model.safetensors")              # and every other shard of a sharded model
            base = load_file("BASE_MODEL/model.safetensors")
            for name, packed in load_file("emr/" + task["masks"]).items():
                u, b = unified[name].float(), base[name].float()
                mask = unpack(packed, u.shape)
                unified[name] = (b + task["rescaler"] * mask * (u - b)).to(unified[name].dtype)
            save_file(unified, "task/model.safetensors", metadata={"format": "pt"})
            ```
            """
        );
        return text.ToString();
    }
}
