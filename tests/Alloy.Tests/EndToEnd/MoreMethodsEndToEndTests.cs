using Alloy.Tensors;
using Alloy.Tests.Methods;
using Alloy.Tests.Methods.Geometric;
using Alloy.Tests.Methods.TaskVectors;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// sce, ram, ramplus_tl, magmax and expo through the CLI entry point, every output tensor checked against
/// <see cref="MoreTaskVectorReference"/>.
/// </summary>
public sealed class MoreMethodsEndToEndTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public MoreMethodsEndToEndTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    private string Config(string method, string globals, int fineTunes = 3) =>
        _work.Write(
            $"{method}-{Guid.NewGuid():N}.yml",
            $"""
            merge_method: {method}
            base_model: {_models.Base}
            models:
            {string.Join("\n", _models.FineTunes.Take(fineTunes).Select(f => $"  - model: {f}"))}
            parameters: {globals}
            """
        );

    /// <summary>Merges and compares every output tensor with <paramref name="reference"/>(base, fine-tunes).</summary>
    private void Check(string config, Func<float[], IReadOnlyList<float[]>, double[]> reference, int fineTunes = 3)
    {
        AlloyCli.Merge(config, _work["out"]);
        var b = TestCheckpoints.ReadAll(_models.Base);
        var fts = _models.FineTunes.Take(fineTunes).Select(TestCheckpoints.ReadAll).ToList();
        var actual = TestCheckpoints.ReadAll(_work["out"]);
        Assert.Equal(b.Keys.Order(), actual.Keys.Order());
        foreach (var (name, values) in actual)
        {
            var models = fts.Select(ft => ft[name]).ToList();
            Expect.Close(name, reference(b[name], models), values, DType.F32, models.Max(m => m.Max(Math.Abs)) * 4);
        }
    }

    [Fact]
    public void Sce() => Check(Config("sce", "{}"), (b, m) => MoreTaskVectorReference.Sce(b, m));

    [Fact]
    public void Sce_with_select_topk() =>
        Check(Config("sce", "{select_topk: 0.4, int8_mask: true}"), (b, m) => MoreTaskVectorReference.Sce(b, m, 0.4));

    [Fact]
    public void Ram() => Check(Config("ram", "{epsilon: 0.01}"), (b, m) => MoreTaskVectorReference.Ram(b, m, 0.01));

    [Fact]
    public void Ramplus_tl() =>
        Check(Config("ramplus_tl", "{r: 0.5, alpha: 0.3, epsilon: 0.02}"), (b, m) =>
            MoreTaskVectorReference.Ram(b, m, 0.02, (0.5, 0.3))
        );

    [Fact]
    public void Magmax() =>
        Check(Config("magmax", "{scaling_factor: 0.7}"), (b, m) => MoreTaskVectorReference.MagMax(b, m, 0.7));

    [Fact]
    public void Expo_with_one_fine_tune() =>
        Check(
            Config("expo", "{extrapolation_factor: 0.3}", fineTunes: 1),
            (b, m) => MoreTaskVectorReference.Expo(b, m, 0.3),
            fineTunes: 1
        );

    [Fact]
    public void Expo_with_the_default_factor_averages_several_fine_tunes() =>
        Check(Config("expo", "{}"), (b, m) => MoreTaskVectorReference.Expo(b, m));

    [Fact]
    public void Ram_with_a_negative_epsilon_is_refused_before_anything_is_written() =>
        AlloyCli.Fails(Config("ram", "{epsilon: -0.5}"), _work["out"], "epsilon");

    [Fact]
    public void Pcb_with_per_model_lambdas()
    {
        string config = _work.Write(
            "pcb.yml",
            $$"""
            merge_method: pcb
            base_model: {{_models.Base}}
            models:
              - model: {{_models.FineTunes[0]}}
                parameters: {lambda: 1.0}
              - model: {{_models.FineTunes[1]}}
                parameters: {lambda: 0.9}
              - model: {{_models.FineTunes[2]}}
            parameters: {pcb_ratio: 0.3, clamp_ratio: 0.01}
            """
        );
        Check(config, (b, m) => PcbReference.Merge(b, m, [1.0, 0.9, 1.2], 0.3, 0.01));
    }

    [Fact]
    public void Emr_unified_model() => Check(Config("emr", "{}"), (b, m) => EmrReference.Unified(b, m));

    [Theory]
    [InlineData("ram")]
    [InlineData("magmax")]
    [InlineData("expo")]
    [InlineData("emr")]
    [InlineData("sce")]
    public void Output_is_byte_identical_at_any_thread_count_and_chunk_size(string method)
    {
        var recipe = Alloy.Recipes.RecipeParser.ParseFile(Config(method, "{}"), new Diagnostics());
        ChunkInvariance.AssertSameBytes(recipe, _work);
    }
}
