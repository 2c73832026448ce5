using Alloy.Checkpoints;
using Alloy.Recipes;
using Alloy.Synthetic;
using Alloy.Tensors;
using Alloy.Tests.Methods;
using Alloy.Tests.Methods.Geometric;
using Alloy.Tests.Methods.TaskVectors;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// TIES's model-wide trim (the paper's): one magnitude threshold per model over all of its tensors, found by the
/// executor's pre-pass; checked against thresholds computed here by sorting every entry of the model.
/// </summary>
public sealed class ModelWideTrimTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public ModelWideTrimTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    private static Dictionary<string, float[]> Load(string folder) => TestCheckpoints.ReadAll(folder);

    /// <summary>Output tensor names in write order, which is plan order.</summary>
    private static List<string> PlanOrder(string output)
    {
        using var checkpoint = Checkpoint.Open(output);
        return checkpoint.Tensors.OrderBy(t => t.Offset).Select(t => t.Name).ToList();
    }

    /// <summary>
    /// The ⌊density·N⌋ largest task-vector magnitudes over all of a model's tensors, equal magnitudes in plan order
    /// then index order; also reports how many entries share the threshold magnitude and how many of them are kept.
    /// </summary>
    private static Dictionary<string, bool[]> KeepOverModel(
        IReadOnlyList<string> order,
        Dictionary<string, float[]> b,
        Dictionary<string, float[]> x,
        double density,
        out long tied,
        out long tiedKept
    )
    {
        var entries = order
            .SelectMany(
                (name, t) =>
                    TaskVectorReference
                        .Delta(x[name], b[name])
                        .Select((d, j) => (Magnitude: Math.Abs(d), Tensor: t, Index: j))
            )
            .ToList();
        long k = (long)(density * entries.Count);
        var ranked = entries.OrderByDescending(e => e.Magnitude).ThenBy(e => e.Tensor).ThenBy(e => e.Index).ToList();
        var keep = order.ToDictionary(name => name, name => new bool[x[name].Length]);
        foreach (var e in ranked.Take((int)k))
            keep[order[e.Tensor]][e.Index] = true;
        float threshold = ranked[(int)k - 1].Magnitude;
        tied = entries.Count(e => e.Magnitude == threshold);
        tiedKept = ranked.Take((int)k).Count(e => e.Magnitude == threshold);
        return keep;
    }

    [Fact]
    public void Ties_trims_each_model_with_one_threshold_over_all_of_its_tensors()
    {
        var b = Load(_models.Base);
        var x = _models.FineTunes.Select(Load).ToList();
        var config = _work.Write(
            "ties.yml",
            $"""
            merge_method: ties
            base_model: {_models.Base}
            models:
              - model: {_models.FineTunes[0]}
                parameters: {"{"}weight: 1.0, density: 0.3{"}"}
              - model: {_models.FineTunes[1]}
                parameters: {"{"}weight: 0.5, density: 0.5{"}"}
              - model: {_models.FineTunes[2]}
                parameters: {"{"}weight: 0.8, density: 0.2{"}"}
            parameters:
              model_wide_trim: true
            """
        );
        AlloyCli.Merge(config, _work["out"]);

        var order = PlanOrder(_work["out"]);
        double[] w = [1.0, 0.5, 0.8],
            d = [0.3, 0.5, 0.2];
        var keep = Enumerable.Range(0, 3).Select(i => KeepOverModel(order, b, x[i], d[i], out _, out _)).ToList();
        var actual = Load(_work["out"]);
        foreach (var name in order)
        {
            var models = Enumerable
                .Range(0, 3)
                .Select(i => new RefModel(x[i][name], w[i], i + 1) { Density = d[i], Keep = keep[i][name] })
                .ToList();
            Expect.Close(
                name,
                TaskVectorReference.Merge(RefMethod.Ties, b[name], models, tensor: name),
                actual[name],
                DType.F32,
                10
            );
        }
        // The trim is model-wide: tensors keep different fractions (a per-tensor trim keeps ⌊0.3·n⌋ of each).
        var fractions = order.Select(name => keep[0][name].Count(k => k) / (double)keep[0][name].Length).ToList();
        Assert.True(
            fractions.Max() - fractions.Min() > 0.2,
            $"kept fractions {fractions.Min():F3}..{fractions.Max():F3}"
        );
    }

    [Fact]
    public void Ties_at_the_threshold_are_kept_in_plan_order_whatever_the_chunks_and_threads()
    {
        // bf16 task vectors share magnitudes by the thousand, so the threshold falls inside a group of equal entries.
        var spec = _models.Spec with { DType = DType.BF16 };
        var folders = TinyLlama.WriteFamily(_work["bf16"], spec, fineTunes: 1);
        var config = _work.Write(
            "ties-bf16.yml",
            $"""
            merge_method: ties
            base_model: {folders[0]}
            models:
              - model: {folders[1]}
                parameters: {"{"}weight: 1.0, density: 0.35{"}"}
            parameters:
              model_wide_trim: true
            """
        );
        var recipe = RecipeParser.ParseFile(config, new Diagnostics());
        ChunkInvariance.AssertSameBytes(recipe, _work);

        var b = Load(folders[0]);
        var x = Load(folders[1]);
        var order = PlanOrder(_work["one"]);
        var keep = KeepOverModel(order, b, x, 0.35, out long tied, out long tiedKept);
        Assert.True(
            tiedKept > 0 && tiedKept < tied,
            $"the threshold should split a group of equal magnitudes ({tiedKept} of {tied} kept)"
        );
        var actual = Load(_work["one"]);
        long kept = 0;
        foreach (var name in order)
        {
            // One model, normalized by its own weight: the output is the base plus exactly the kept entries.
            var expected = b[name].Select((v, j) => keep[name][j] ? (double)x[name][j] : v).ToArray();
            Expect.Close(name, expected, actual[name], DType.BF16);
            kept += keep[name].Count(k => k);
        }
        Assert.Equal((long)(0.35 * order.Sum(n => b[n].Length)), kept);
    }

    [Fact]
    public void A_density_that_varies_across_tensors_is_refused()
    {
        var config = _work.Write(
            "vary.yml",
            $"""
            merge_method: ties
            base_model: {_models.Base}
            models:
              - model: {_models.FineTunes[0]}
                parameters: {"{"}weight: 1.0, density: [0.2, 0.5]{"}"}
            parameters:
              model_wide_trim: true
            """
        );
        AlloyCli.Fails(config, _work["out"], "one density per model");
    }
}
