using System.Text.Json.Nodes;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// <c>model+lora</c> references: a PEFT adapter applied while the model is read, with no merged copy on disk.
/// </summary>
public sealed class LoraReferenceTests : IClassFixture<ModelFamily>, IDisposable
{
    private const int Rank = 2;
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public LoraReferenceTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    private static float[] Values(int count, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
    }

    /// <summary>
    /// Writes an adapter (q_proj and v_proj of every layer, lm_head in modules_to_save) and the model PEFT's
    /// merge_and_unload would produce from it, computed here in double.
    /// </summary>
    private (string Adapter, string Merged) WriteAdapter(bool rsLora)
    {
        var model = TestCheckpoints.ReadAll(_models.FineTunes[0]);
        var shapes = new Dictionary<string, long[]>();
        using (var checkpoint = Alloy.Checkpoints.Checkpoint.Open(_models.FineTunes[0]))
            foreach (var t in checkpoint.Tensors)
                shapes[t.Name] = t.Info.Shape;

        double alpha = 4,
            scale = rsLora ? alpha / Math.Sqrt(Rank) : alpha / Rank;
        var adapterTensors = new List<(string, long[], float[])>();
        var merged = model.ToDictionary(p => p.Key, p => (float[])p.Value.Clone());
        int seed = 0;
        foreach (
            var name in model.Keys.Where(n =>
                n.EndsWith("q_proj.weight", StringComparison.Ordinal)
                || n.EndsWith("v_proj.weight", StringComparison.Ordinal)
            )
        )
        {
            long rows = shapes[name][0],
                cols = shapes[name][1];
            var a = Values((int)(Rank * cols), ++seed);
            var b = Values((int)(rows * Rank), ++seed);
            var module = "base_model.model." + name[..^".weight".Length];
            adapterTensors.Add(($"{module}.lora_A.weight", [Rank, cols], a));
            adapterTensors.Add(($"{module}.lora_B.weight", [rows, Rank], b));
            for (long i = 0; i < rows; i++)
            for (long j = 0; j < cols; j++)
            {
                double update = 0;
                for (int k = 0; k < Rank; k++)
                    update += b[i * Rank + k] * (double)a[k * cols + j];
                merged[name][i * cols + j] = (float)(model[name][i * cols + j] + scale * update);
            }
        }
        var head = Values(model["lm_head.weight"].Length, ++seed);
        adapterTensors.Add(("base_model.model.lm_head.weight", shapes["lm_head.weight"], head));
        merged["lm_head.weight"] = head;

        var adapter = _work[rsLora ? "adapter-rs" : "adapter"];
        TestCheckpoints.Write(adapter, null, adapterTensors);
        File.Move(Path.Combine(adapter, "model.safetensors"), Path.Combine(adapter, "adapter_model.safetensors"));
        File.WriteAllText(
            Path.Combine(adapter, "adapter_config.json"),
            new JsonObject
            {
                ["peft_type"] = "LORA",
                ["r"] = 8,
                ["lora_alpha"] = alpha,
                ["use_rslora"] = rsLora,
                ["fan_in_fan_out"] = false,
                ["target_modules"] = new JsonArray("q_proj", "v_proj"),
                ["modules_to_save"] = new JsonArray("lm_head"),
                ["rank_pattern"] = new JsonObject { ["q_proj"] = Rank, ["v_proj"] = Rank },
            }.ToJsonString()
        );

        var explicitModel = _work[rsLora ? "merged-rs" : "merged"];
        TestCheckpoints.Write(explicitModel, null, merged.Select(p => (p.Key, shapes[p.Key], p.Value)));
        File.Copy(Path.Combine(_models.FineTunes[0], "config.json"), Path.Combine(explicitModel, "config.json"));
        return (adapter, explicitModel);
    }

    private string Linear(string first) =>
        _work.Write(
            "linear.yml",
            $"""
            merge_method: linear
            models:
              - model: "{first}"
                parameters:
                  weight: 0.5
              - model: "{_models.FineTunes[1]}"
                parameters:
                  weight: 0.5
            dtype: float32
            """
        );

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_lora_reference_merges_like_the_explicitly_merged_model(bool rsLora)
    {
        var (adapter, explicitModel) = WriteAdapter(rsLora);
        var before = TestCheckpoints.FolderDigest(_models.FineTunes[0]);
        AlloyCli.Merge(Linear($"{_models.FineTunes[0]}+{adapter}"), _work["via-lora"]);
        AlloyCli.Merge(Linear(explicitModel), _work["via-merged"], "--overwrite");

        var expected = TestCheckpoints.ReadAll(_work["via-merged"]);
        foreach (var (name, actual) in TestCheckpoints.ReadAll(_work["via-lora"]))
            Expect.Close(name, expected[name].Select(v => (double)v).ToArray(), actual, DType.F32, 1);
        Assert.Equal(before, TestCheckpoints.FolderDigest(_models.FineTunes[0]));
        // No merged copy of the adapted model was written anywhere.
        Assert.All(Directory.GetDirectories(_work.Path).Select(Path.GetFileName), d =>
            Assert.True(
                d!.StartsWith("adapter", StringComparison.Ordinal)
                    || d.StartsWith("merged", StringComparison.Ordinal)
                    || d.StartsWith("via-", StringComparison.Ordinal),
                d
            )
        );
    }

    [Fact]
    public void An_adapter_for_another_model_is_refused_with_the_shapes()
    {
        var adapter = _work["wrong"];
        TestCheckpoints.Write(
            adapter,
            null,
            [
                ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", [Rank, 5], new float[Rank * 5]),
                ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", [16, Rank], new float[16 * Rank]),
            ]
        );
        File.Move(Path.Combine(adapter, "model.safetensors"), Path.Combine(adapter, "adapter_model.safetensors"));
        File.WriteAllText(
            Path.Combine(adapter, "adapter_config.json"),
            """{"peft_type": "LORA", "r": 2, "lora_alpha": 2}"""
        );
        AlloyCli.Fails(Linear($"{_models.FineTunes[0]}+{adapter}"), _work["out"], "is the adapter for this model?");
    }

    [Fact]
    public void A_folder_that_is_not_an_adapter_is_named()
    {
        AlloyCli.Fails(
            Linear($"{_models.FineTunes[0]}+{_models.FineTunes[1]}"),
            _work["out"],
            "not a PEFT LoRA adapter"
        );
    }
}
