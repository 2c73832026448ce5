using System.Text.Json.Nodes;
using Alloy.Synthetic;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// Recipes run through the CLI entry point; every output tensor is checked against values computed here.
/// </summary>
public sealed class MergeEndToEndTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public MergeEndToEndTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    private string Base => _models.Base;

    private string Ft(int k) => _models.FineTunes[k - 1];

    private Dictionary<string, float[]> Load(string folder) => TestCheckpoints.ReadAll(folder);

    /// <summary>The largest magnitude among the inputs' values of one tensor.</summary>
    private static double Scale(string name, params Dictionary<string, float[]>[] models) =>
        models.Max(m => m[name].Max(Math.Abs));

    /// <summary>Layer index of a layer tensor name, or -1 for pre/post-layer weights.</summary>
    private static int LayerOf(string name) =>
        name.StartsWith("model.layers.", StringComparison.Ordinal) ? int.Parse(name.Split('.')[2]) : -1;

    [Fact]
    public void Linear_merge_is_the_normalized_weighted_average_of_every_tensor()
    {
        var config = _work.Write(
            "linear.yml",
            $"""
            models:
              - model: {Ft(1)}
                parameters:
                  weight: 0.6
              - model: {Ft(2)}
                parameters:
                  weight: 0.3
              - model: {Ft(3)}
                parameters:
                  weight: 0.1
            merge_method: linear
            dtype: float32
            """
        );
        AlloyCli.Merge(config, _work["out"]);

        var inputs = Enumerable.Range(1, 3).Select(k => Load(Ft(k))).ToList();
        double[] w = [0.6, 0.3, 0.1];
        var output = Load(_work["out"]);
        Assert.Equal(inputs[0].Keys.Order(), output.Keys.Order());
        foreach (var (name, actual) in output)
        {
            var expected = Enumerable
                .Range(0, actual.Length)
                .Select(j => (w[0] * inputs[0][name][j] + w[1] * inputs[1][name][j] + w[2] * inputs[2][name][j]) / 1.0)
                .ToArray();
            Expect.Close(name, expected, actual, DType.F32, Scale(name, [.. inputs]));
        }
    }

    [Fact]
    public void Task_arithmetic_applies_gradients_per_layer_filters_per_tensor_and_t0_outside_the_layers()
    {
        var config = _work.Write(
            "ta.yml",
            $"""
            merge_method: task_arithmetic
            base_model: {Base}
            models:
              - model: {Ft(1)}
                parameters:
                  weight: [0, 0.5, 1]
              - model: {Ft(2)}
                parameters:
                  weight:
                    - filter: mlp
                      value: 0.5
                    - value: 1.0
            parameters:
              lambda:
                - filter: self_attn
                  value: 2.0
                - value: 1.0
            dtype: float32
            """
        );
        AlloyCli.Merge(config, _work["out"]);

        var b = Load(Base);
        var x1 = Load(Ft(1));
        var x2 = Load(Ft(2));
        foreach (var (name, actual) in Load(_work["out"]))
        {
            int layer = LayerOf(name);
            // Gradient [0, .5, 1] is linear in t; t = layer/3 over 4 layers, and 0 for embeddings, final norm and head.
            double w1 = layer < 0 ? 0 : layer / 3.0;
            double w2 = name.Contains("mlp") ? 0.5 : 1.0;
            double lambda = name.Contains("self_attn") ? 2.0 : 1.0;
            var expected = Enumerable
                .Range(0, actual.Length)
                .Select(j =>
                    b[name][j]
                    + lambda * (w1 * ((double)x1[name][j] - b[name][j]) + w2 * ((double)x2[name][j] - b[name][j]))
                )
                .ToArray();
            Expect.Close(name, expected, actual, DType.F32, Scale(name, b, x1, x2));
        }
    }

    [Fact]
    public void Parameters_resolve_source_before_slice_before_global_and_pre_post_weights_follow_first_and_last_slice()
    {
        var config = _work.Write(
            "precedence.yml",
            $"""
            merge_method: linear
            slices:
              - sources:
                  - model: {Ft(1)}
                    layer_range: [0, 2]
                    parameters:
                      weight: 3.0
                  - model: {Ft(2)}
                    layer_range: [0, 2]
                parameters:
                  weight: 1.0
              - sources:
                  - model: {Ft(1)}
                    layer_range: [2, 4]
                  - model: {Ft(2)}
                    layer_range: [2, 4]
            parameters:
              weight: 2.0
            dtype: float32
            """
        );
        AlloyCli.Merge(config, _work["out"]);

        var x1 = Load(Ft(1));
        var x2 = Load(Ft(2));
        foreach (var (name, actual) in Load(_work["out"]))
        {
            int layer = LayerOf(name);
            bool firstSlice = layer is 0 or 1 || name == "model.embed_tokens.weight";
            (double w1, double w2) = firstSlice ? (3.0, 1.0) : (2.0, 2.0);
            var expected = Enumerable
                .Range(0, actual.Length)
                .Select(j => (w1 * x1[name][j] + w2 * x2[name][j]) / (w1 + w2))
                .ToArray();
            Expect.Close(name, expected, actual, DType.F32, Scale(name, x1, x2));
        }
    }

    [Fact]
    public void Passthrough_slices_renumber_layers_and_update_the_layer_count()
    {
        var config = _work.Write(
            "franken.yml",
            $"""
            slices:
              - sources:
                  - model: {Ft(1)}
                    layer_range: [0, 3]
              - sources:
                  - model: {Ft(2)}
                    layer_range: [1, 4]
            merge_method: passthrough
            """
        );
        AlloyCli.Merge(config, _work["out"]);

        var x1 = Load(Ft(1));
        var x2 = Load(Ft(2));
        var output = Load(_work["out"]);
        var suffixes = x1.Keys.Where(n => LayerOf(n) == 0).Select(n => n["model.layers.0.".Length..]).ToList();
        Assert.Equal(6 * suffixes.Count + 3, output.Count);
        for (int k = 0; k < 6; k++)
        {
            foreach (var suffix in suffixes)
            {
                var source = k < 3 ? x1[$"model.layers.{k}.{suffix}"] : x2[$"model.layers.{k - 2}.{suffix}"];
                Assert.Equal(source, output[$"model.layers.{k}.{suffix}"]);
            }
        }
        Assert.Equal(x1["model.embed_tokens.weight"], output["model.embed_tokens.weight"]);
        Assert.Equal(x2["model.norm.weight"], output["model.norm.weight"]);
        Assert.Equal(x2["lm_head.weight"], output["lm_head.weight"]);
        var outConfig = JsonNode.Parse(File.ReadAllText(_work["out/config.json"]))!;
        Assert.Equal(6, (int)outConfig["num_hidden_layers"]!);
    }

    [Fact]
    public void Passthrough_scale_with_a_filter_zeroes_only_matching_tensors()
    {
        var config = _work.Write(
            "scale.yml",
            $"""
            merge_method: passthrough
            models:
              - model: {Ft(1)}
                parameters:
                  scale:
                    - filter: o_proj
                      value: 0
                    - value: 1
            """
        );
        AlloyCli.Merge(config, _work["out"]);

        var x1 = Load(Ft(1));
        foreach (var (name, actual) in Load(_work["out"]))
        {
            if (name.Contains("o_proj"))
                Assert.All(actual, v => Assert.Equal(0f, v));
            else
                Assert.Equal(x1[name], actual);
        }
    }

    [Fact]
    public void Task_arithmetic_with_lambda_zero_returns_the_base_in_bfloat16()
    {
        var config = _work.Write(
            "ta0.yml",
            $$"""
            merge_method: task_arithmetic
            base_model: {{Base}}
            models:
              - model: {{Ft(1)}}
                parameters: {weight: 1.0}
            parameters:
              lambda: 0
            out_dtype: bfloat16
            """
        );
        AlloyCli.Merge(config, _work["out"]);

        foreach (var (name, actual) in Load(_work["out"]))
        {
            var expected = Load(Base)[name].Select(v => (double)(float)(BFloat16)v).ToArray();
            Expect.Close(name, expected, actual, DType.F32);
        }
        var outConfig = JsonNode.Parse(File.ReadAllText(_work["out/config.json"]))!;
        Assert.Equal("bfloat16", (string)outConfig["torch_dtype"]!);
    }

    [Fact]
    public void Output_is_byte_identical_at_any_thread_count_and_chunk_size()
    {
        var config = _work.Write(
            "ta.yml",
            $$"""
            merge_method: task_arithmetic
            base_model: {{Base}}
            models:
              - model: {{Ft(1)}}
                parameters: {weight: 0.7}
              - model: {{Ft(2)}}
                parameters: {weight: [1, 0.2]}
            out_dtype: bfloat16
            """
        );
        var recipe = Alloy.Recipes.RecipeParser.ParseFile(config, new Diagnostics());
        ChunkInvariance.AssertSameBytes(recipe, _work);
    }

    [Fact]
    public void Inputs_are_never_modified()
    {
        var before = new[] { Base, Ft(1) }.Select(TestCheckpoints.FolderDigest).ToList();
        var config = _work.Write(
            "ta.yml",
            $$"""
            merge_method: task_arithmetic
            base_model: {{Base}}
            models:
              - model: {{Ft(1)}}
                parameters: {weight: 1}
            """
        );
        AlloyCli.Merge(config, _work["out"]);
        Assert.Equal(before, new[] { Base, Ft(1) }.Select(TestCheckpoints.FolderDigest));
    }
}
