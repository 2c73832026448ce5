using Alloy.Checkpoints;
using Alloy.Synthetic;
using Alloy.Tensors;
using Alloy.Tests.Methods;
using Alloy.Tests.Methods.Geometric;
using Alloy.Tests.Methods.TaskVectors;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// The interpolation and geometric methods through the CLI entry point on generated models; every output tensor is
/// checked against the double-precision reference computed in the test.
/// </summary>
public sealed class GeometricEndToEndTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public GeometricEndToEndTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    private string Base => _models.Base;

    private string Ft(int k) => _models.FineTunes[k - 1];

    private static Dictionary<string, float[]> Load(string folder) => TestCheckpoints.ReadAll(folder);

    private static double[] D(float[] values) => GeometricReference.ToDouble(values);

    private static Dictionary<string, (DType DType, long[] Shape)> Infos(string folder)
    {
        using var checkpoint = Checkpoint.Open(folder);
        return checkpoint.Tensors.ToDictionary(t => t.Name, t => (t.Info.DType, t.Info.Shape));
    }

    private static int LayerOf(string name) =>
        name.StartsWith("model.layers.", StringComparison.Ordinal) ? int.Parse(name.Split('.')[2]) : -1;

    /// <summary>
    /// Merges, then checks that the output has the donor's tensors and each equals <paramref name="expected"/>.
    /// </summary>
    private void MergeAndCheck(string config, Func<string, long[], double[]> expected, double tolerance = 1e-6)
    {
        AlloyCli.Merge(config, _work["out"]);
        var output = Load(_work["out"]);
        var shapes = Infos(_work["out"]);
        Assert.Equal(Load(Base).Keys.Order(), output.Keys.Order());
        foreach (var (name, actual) in output)
        {
            var inputs = new[] { Base, Ft(1), Ft(2), Ft(3) }.Select(m => TestCheckpoints.Read(m, name));
            double scale = inputs.Max(x => x.Max(Math.Abs));
            Expect.Close(name, expected(name, shapes[name].Shape), actual, DType.F32, scale * tolerance / 1e-6);
        }
    }

    [Fact]
    public void Slerp_follows_gradients_and_filters_with_the_unlisted_base_at_t_0()
    {
        var config = _work.Write(
            "slerp.yml",
            $"""
            merge_method: slerp
            base_model: {Base}
            models:
              - model: {Ft(1)}
            parameters:
              t:
                - filter: self_attn
                  value: [0, 0.5, 1]
                - filter: mlp
                  value: 0.3
                - value: 0.8
            dtype: float32
            """
        );
        var b = Load(Base);
        var x = Load(Ft(1));
        MergeAndCheck(config, (name, _) =>
        {
            int layer = LayerOf(name);
            double t =
                name.Contains("self_attn") ? layer / 3.0
                : name.Contains("mlp") ? 0.3
                : 0.8;
            return GeometricReference.Slerp(D(b[name]), D(x[name]), t);
        });
    }

    [Theory]
    [InlineData(true, false, true)]
    [InlineData(false, false, true)]
    [InlineData(false, true, false)]
    public void Nuslerp_in_every_mode_with_and_without_a_base(bool flatten, bool rowWise, bool withBase)
    {
        var config = _work.Write(
            "nuslerp.yml",
            $"""
            merge_method: nuslerp
            {(withBase ? $"base_model: {Base}" : "")}
            models:
              - model: {Ft(1)}
                parameters:
                  weight: 1.0
              - model: {Ft(2)}
                parameters:
                  weight: 2.0
            parameters:
              nuslerp_flatten: {flatten.ToString().ToLowerInvariant()}
              nuslerp_row_wise: {rowWise.ToString().ToLowerInvariant()}
            """
        );
        var b = Load(Base);
        var x1 = Load(Ft(1));
        var x2 = Load(Ft(2));
        MergeAndCheck(config, (name, shape) =>
        {
            if (!withBase)
                return GeometricReference.NuSlerp(D(x1[name]), D(x2[name]), 2 / 3.0, shape, flatten, rowWise);
            var v0 = x1[name].Select((v, i) => (double)(v - b[name][i])).ToArray();
            var v1 = x2[name].Select((v, i) => (double)(v - b[name][i])).ToArray();
            return GeometricReference
                .NuSlerp(v0, v1, 2 / 3.0, shape, flatten, rowWise)
                .Select((v, i) => v + b[name][i])
                .ToArray();
        });
    }

    [Fact]
    public void Multislerp_of_three_task_vectors()
    {
        var config = _work.Write(
            "multislerp.yml",
            $$"""
            merge_method: multislerp
            base_model: {{Base}}
            models:
              - model: {{Ft(1)}}
                parameters: {weight: 0.5}
              - model: {{Ft(2)}}
                parameters: {weight: 0.3}
              - model: {{Ft(3)}}
                parameters: {weight: 0.2}
            """
        );
        var b = Load(Base);
        var xs = Enumerable.Range(1, 3).Select(k => Load(Ft(k))).ToList();
        MergeAndCheck(config, (name, _) =>
            GeometricReference.MultiSlerp(xs.Select(x => D(x[name])).ToList(), [0.5, 0.3, 0.2], D(b[name]), true, 1e-8)
        );
    }

    [Fact]
    public void Karcher_uses_weights_and_does_not_add_the_base_as_a_point()
    {
        var config = _work.Write(
            "karcher.yml",
            $$"""
            merge_method: karcher
            base_model: {{Base}}
            models:
              - model: {{Ft(1)}}
                parameters: {weight: 2}
              - model: {{Ft(2)}}
              - model: {{Ft(3)}}
                parameters: {weight: 1}
            parameters:
              max_iter: 20
              tol: 1.0e-7
            """
        );
        var xs = Enumerable.Range(1, 3).Select(k => Load(Ft(k))).ToList();
        MergeAndCheck(
            config,
            (name, _) => GeometricReference.Karcher(xs.Select(x => D(x[name])).ToList(), [0.5, 0.25, 0.25], 20, 1e-7),
            tolerance: 4e-6
        );
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Model_stock_of_three_fine_tunes(bool filterWise)
    {
        var config = _work.Write(
            "model_stock.yml",
            $"""
            merge_method: model_stock
            base_model: {Base}
            models:
              - model: {Ft(1)}
              - model: {Ft(2)}
              - model: {Ft(3)}
            parameters:
              filter_wise: {filterWise.ToString().ToLowerInvariant()}
            """
        );
        var b = Load(Base);
        var xs = Enumerable.Range(1, 3).Select(k => Load(Ft(k))).ToList();
        MergeAndCheck(config, (name, shape) =>
            GeometricReference.ModelStock(
                D(b[name]),
                xs.Select(x => D(x[name])).ToList(),
                filterWise ? (int)shape[^1] : b[name].Length
            )
        );
    }

    [Fact]
    public void Nearswap_swaps_in_the_values_close_to_the_base()
    {
        var config = _work.Write(
            "nearswap.yml",
            $"""
            merge_method: nearswap
            base_model: {Base}
            models:
              - model: {Ft(1)}
            parameters:
              t: 0.01
            """
        );
        var b = Load(Base);
        var x = Load(Ft(1));
        MergeAndCheck(config, (name, _) => GeometricReference.Nearswap(D(b[name]), D(x[name]), 0.01));
    }

    [Theory]
    [InlineData("float32", DType.F32)]
    [InlineData("bfloat16", DType.BF16)]
    public void Arcee_fusion_keeps_important_changes_and_honours_the_dtype(string dtype, DType expected)
    {
        var config = _work.Write(
            "fusion.yml",
            $"""
            merge_method: arcee_fusion
            base_model: {Base}
            models:
              - model: {Ft(1)}
            dtype: {dtype}
            """
        );
        AlloyCli.Merge(config, _work["out"]);
        var b = Load(Base);
        var x = Load(Ft(1));
        var infos = Infos(_work["out"]);
        var output = Load(_work["out"]);
        Assert.Equal(b.Keys.Order(), output.Keys.Order());
        int kept = 0;
        foreach (var (name, actual) in output)
        {
            Assert.Equal(expected, infos[name].DType);
            var fused = GeometricReference.ArceeFusion(b[name], x[name], (int)infos[name].Shape[^1]);
            kept += fused.Where((v, i) => v == x[name][i] && v != b[name][i]).Count();
            Assert.Equal(fused.Select(v => expected == DType.BF16 ? (float)(BFloat16)v : v), actual);
        }
        Assert.True(kept > 0);
    }

    [Fact]
    public void Karcher_cuts_embeddings_of_different_sizes_to_their_common_sub_matrix()
    {
        TinyLlama.Write(_work["big"], _models.Spec with { VocabSize = 280 }, 2);
        var config = _work.Write(
            "karcher.yml",
            $"""
            merge_method: karcher
            models:
              - model: {Ft(1)}
              - model: {_work["big"]}
            """
        );
        var result = AlloyCli.Merge(config, _work["out"]);
        var x1 = Load(Ft(1));
        var x2 = Load(_work["big"]);
        var output = Load(_work["out"]);
        foreach (var name in new[] { "model.embed_tokens.weight", "lm_head.weight" })
        {
            int common = x1[name].Length;
            Assert.Equal(common, output[name].Length);
            var expected = GeometricReference.Karcher([D(x1[name]), D(x2[name][..common])], [0.5, 0.5], 10, 1e-5);
            Expect.Close(name, expected, output[name], DType.F32, 4);
        }
    }

    [Theory]
    [InlineData("multislerp", "parameters: {weight: 1}")]
    [InlineData("nearswap", "")]
    public void Methods_without_embedding_rectification_refuse_different_vocabularies(string method, string parameters)
    {
        TinyLlama.Write(_work["big"], _models.Spec with { VocabSize = 280 }, 2);
        var config = _work.Write(
            "config.yml",
            $"""
            merge_method: {method}
            base_model: {Base}
            models:
              - model: {_work["big"]}
                {parameters}
              - model: {Ft(1)}
                {parameters}
            parameters:
              t: 0.5
            """
        );
        AlloyCli.Fails(config, _work["out"], "shapes differ");
    }

    [Fact]
    public void An_optional_base_must_be_among_a_slices_sources()
    {
        var config = _work.Write(
            "config.yml",
            $$"""
            merge_method: multislerp
            base_model: {{Base}}
            slices:
              - sources:
                  - model: {{Ft(1)}}
                    layer_range: [0, 4]
                    parameters: {weight: 1}
                  - model: {{Ft(2)}}
                    layer_range: [0, 4]
                    parameters: {weight: 1}
            """
        );
        AlloyCli.Fails(config, _work["out"], "is not among this slice's sources");
    }

    [Fact]
    public void Wrong_model_counts_are_refused_before_anything_is_written()
    {
        var config = _work.Write(
            "config.yml",
            $"""
            merge_method: slerp
            base_model: {Base}
            models:
              - model: {Ft(1)}
              - model: {Ft(2)}
            parameters:
              t: 0.5
            """
        );
        AlloyCli.Fails(config, _work["out"], "slerp needs exactly two models, one of them base_model");
        var stock = _work.Write(
            "stock.yml",
            $"""
            merge_method: model_stock
            base_model: {Base}
            models:
              - model: {Ft(1)}
            """
        );
        AlloyCli.Fails(stock, _work["out"], "model_stock needs base_model plus at least two other models");
    }

    [Theory]
    [InlineData("nearswap", "t: 0.01")]
    [InlineData("arcee_fusion", "")]
    [InlineData("model_stock", "filter_wise: true")]
    public void Output_is_byte_identical_at_any_thread_count_and_chunk_size(string method, string parameters)
    {
        // model_stock needs two fine-tunes; the others take one.
        var models = string.Join(
            ", ",
            (method == "model_stock" ? new[] { Ft(1), Ft(2) } : [Ft(1)]).Select(m => $"{{model: {m}}}")
        );
        var config = _work.Write(
            "config.yml",
            $"""
            merge_method: {method}
            base_model: {Base}
            models: [{models}]
            parameters:
              {parameters}
            out_dtype: bfloat16
            """
        );
        var recipe = Alloy.Recipes.RecipeParser.ParseFile(config, new Diagnostics());
        ChunkInvariance.AssertSameBytes(recipe, _work);
    }
}
