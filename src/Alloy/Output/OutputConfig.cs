using System.Text.Json;
using System.Text.Json.Nodes;
using Alloy.Architecture;
using Alloy.Planning;
using Alloy.Tensors;
using Alloy.Tokenizers;

namespace Alloy.Output;

/// <summary>
/// The output config.json: the donor's, with dtype, layer count, head tying and vocabulary size brought in line with
/// the merge.
/// </summary>
public static class OutputConfig
{
    public static JsonObject Build(MergePlan plan)
    {
        var config = (JsonObject)plan.Donor.Checkpoint.Config!.DeepClone();
        if (plan.ConfigDType is { } dtype)
        {
            // transformers ≥ 4.56 writes "dtype"; older versions "torch_dtype". Keep whichever the donor uses.
            var key = config.ContainsKey("dtype") && !config.ContainsKey("torch_dtype") ? "dtype" : "torch_dtype";
            config[key] = dtype.TorchName();
        }
        if (plan.LayerCountChanged && plan.Donor.Layout.LayerCountKey is { } countKey)
            SetDotted(config, countKey, plan.OutputLayerCount);
        if (plan.UntiesHead)
            config["tie_word_embeddings"] = false;
        if (plan.Tokenizer?.Vocabulary is { } vocabulary)
        {
            // Every vocab_size the donor states (top level, or text_config's for multimodal models) follows the new
            // vocabulary.
            var keys = ModelTokenizer
                .VocabSizeKeys.Where(k => ModelLayout.ReadLong(config, k) is not null)
                .DefaultIfEmpty("vocab_size");
            foreach (var key in keys)
                SetDotted(config, key, vocabulary.Rows);
        }
        if (plan.Donor.Reference.OverrideArchitecture is { } architecture)
            config["architectures"] = new JsonArray(architecture);
        return config;
    }

    public static void Write(JsonObject config, string path) =>
        File.WriteAllText(path, config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");

    private static void SetDotted(JsonObject config, string dottedKey, int value)
    {
        var parts = dottedKey.Split('.');
        JsonObject node = config;
        foreach (var part in parts[..^1])
            node =
                node[part] as JsonObject
                ?? throw new InvalidOperationException($"config key {dottedKey} is not an object path");
        node[parts[^1]] = value;
    }
}
