using Alloy.Methods;
using Alloy.Synthetic;
using Alloy.Tensors;
using Alloy.Tests.Methods;
using Alloy.Tests.Methods.Geometric;
using Alloy.Tests.Methods.TaskVectors;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// Every task-vector method through the CLI entry point on the generated family; every output tensor is checked against
/// the reference (<see cref="TaskVectorReference"/>), with random masks recomputed from the documented keying
/// (seed, output tensor, model's place in the config).
/// </summary>
public sealed class TaskVectorEndToEndTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();
    private readonly Dictionary<string, long[]> _shapes;

    public TaskVectorEndToEndTests(ModelFamily models)
    {
        _models = models;
        _shapes = TinyLlama.Tensors(models.Spec).ToDictionary(t => t.Name, t => t.Shape);
    }

    public void Dispose() => _work.Dispose();

    private string Base => _models.Base;

    private string Ft(int k) => _models.FineTunes[k - 1];

    private static Dictionary<string, float[]> Load(string folder) => TestCheckpoints.ReadAll(folder);

    private TensorPosition Position(string name) =>
        name.StartsWith("model.layers.", StringComparison.Ordinal)
            ? new TensorPosition(int.Parse(name.Split('.')[2]), false, _models.Spec.Layers)
            : new TensorPosition(null, name == "model.embed_tokens.weight", _models.Spec.Layers);

    /// <summary>
    /// The YAML for base + fine-tunes 1..3 with per-model parameter lines, and global parameter lines.
    /// </summary>
    private string Config(string method, string[] perModel, string globals = "") =>
        _work.Write(
            $"{method}-{Guid.NewGuid():N}.yml",
            $"""
            merge_method: {method}
            base_model: {Base}
            models:
              - model: {Ft(1)}
                parameters: {perModel[0]}
              - model: {Ft(2)}
                parameters: {perModel[1]}
              - model: {Ft(3)}
                parameters: {perModel[2]}
            parameters: {(globals.Length == 0 ? "{}" : globals)}
            """
        );

    /// <summary>Checks every output tensor against the reference with each fine-tune k as model index k.</summary>
    private void CheckEveryTensor(
        string output,
        RefMethod method,
        Func<int, RefModel, RefModel> parameters,
        ulong seed = 0
    )
    {
        var b = Load(Base);
        var fineTunes = Enumerable.Range(1, 3).Select(k => Load(Ft(k))).ToList();
        var actual = Load(output);
        Assert.Equal(b.Keys.Order(), actual.Keys.Order());
        foreach (var (name, values) in actual)
        {
            var models = fineTunes.Select((ft, i) => parameters(i + 1, new RefModel(ft[name], 1, i + 1))).ToList();
            var expected = TaskVectorReference.Merge(
                method,
                b[name],
                models,
                _shapes[name],
                name,
                seed,
                Position(name)
            );
            Expect.Close(name, expected, values, DType.F32, fineTunes.Max(ft => ft[name].Max(Math.Abs)) * 4);
        }
    }

    [Fact]
    public void Ties()
    {
        var config = Config(
            "ties",
            ["{weight: 1.0, density: 0.5}", "{weight: 0.6, density: 0.3}", "{weight: 0.3, density: 0.7}"],
            "{lambda: 0.9}"
        );
        AlloyCli.Merge(config, _work["out"]);
        double[] w = [1.0, 0.6, 0.3],
            d = [0.5, 0.3, 0.7];
        CheckEveryTensor(_work["out"], RefMethod.Ties with { Lambda = 0.9 }, (k, m) =>
            m with
            {
                Weight = w[k - 1],
                Density = d[k - 1],
            }
        );
    }

    [Fact]
    public void Ties_with_the_papers_and_pefts_options_and_lines()
    {
        var config = Config(
            "ties",
            ["{weight: 2.0}", "{weight: 1.0}", "{weight: 0.5}"],
            "{density: 0.4, unweighted_sign_election: true, count_sign_election: true, normalize_by_count: true, "
                + "lines_alpha: 0.5, lines_beta: 0.5}"
        );
        AlloyCli.Merge(config, _work["out"]);
        double[] w = [2.0, 1.0, 0.5];
        var method = RefMethod.Ties with
        {
            Unweighted = true,
            ByCount = true,
            NormalizeByCount = true,
            LinesAlpha = 0.5,
            LinesBeta = 0.5,
        };
        CheckEveryTensor(_work["out"], method, (k, m) => m with { Weight = w[k - 1], Density = 0.4 });
    }

    [Fact]
    public void Task_arithmetic_with_lines()
    {
        var config = Config(
            "task_arithmetic",
            ["{weight: 1.0}", "{weight: 0.5}", "{weight: -0.2}"],
            "{lambda: 0.8, lines_alpha: 0.2, lines_beta: 1.0}"
        );
        AlloyCli.Merge(config, _work["out"]);
        double[] w = [1.0, 0.5, -0.2];
        CheckEveryTensor(
            _work["out"],
            RefMethod.TaskArithmetic with
            {
                Lambda = 0.8,
                LinesAlpha = 0.2,
                LinesBeta = 1,
            },
            (k, m) => m with { Weight = w[k - 1] }
        );
    }

    [Fact]
    public void Dare_ties_is_deterministic_across_thread_counts()
    {
        var config = Config(
            "dare_ties",
            ["{weight: 0.5, density: 0.6}", "{weight: 0.8, density: 0.4}", "{weight: 0.3, density: 0.5}"]
        );
        AlloyCli.Merge(config, _work["one"], "--threads", "1");
        AlloyCli.Merge(config, _work["out"]);
        Assert.Equal(
            File.ReadAllBytes(_work["one/model.safetensors"]),
            File.ReadAllBytes(_work["out/model.safetensors"])
        );
        double[] w = [0.5, 0.8, 0.3],
            d = [0.6, 0.4, 0.5];
        CheckEveryTensor(_work["out"], RefMethod.DareTies, (k, m) => m with { Weight = w[k - 1], Density = d[k - 1] });
    }

    [Fact]
    public void Dare_linear_with_a_seed()
    {
        var config = Config(
            "dare_linear",
            ["{weight: 1.0}", "{weight: 0.5}", "{weight: 0.5}"],
            "{density: 0.4, normalize: true}"
        );
        AlloyCli.Merge(config, _work["out"], "--random-seed", "7");
        AlloyCli.Merge(config, _work["seed8"], "--random-seed", "8");
        Assert.NotEqual(
            File.ReadAllBytes(_work["out/model.safetensors"]),
            File.ReadAllBytes(_work["seed8/model.safetensors"])
        );
        double[] w = [1.0, 0.5, 0.5];
        CheckEveryTensor(
            _work["out"],
            RefMethod.DareLinear with
            {
                Normalize = true,
            },
            (k, m) => m with { Weight = w[k - 1], Density = 0.4 },
            seed: 7
        );
    }

    [Fact]
    public void Dare_linear_keeps_the_density_and_rescale_keeps_each_tensors_l1_norm()
    {
        string Single(string name, string rescale) =>
            _work.Write(
                name,
                $"""
                merge_method: dare_linear
                base_model: {Base}
                models:
                  - model: {Ft(1)}
                    parameters: {"{"}weight: 1.0, density: 0.3{"}"}
                parameters: {"{"}rescale: {rescale}{"}"}
                """
            );
        AlloyCli.Merge(Single("plain.yml", "false"), _work["plain"]);
        AlloyCli.Merge(Single("rescaled.yml", "true"), _work["rescaled"]);
        var b = Load(Base);
        var x = Load(Ft(1));
        var plain = Load(_work["plain"]);
        var rescaled = Load(_work["rescaled"]);
        long total = 0,
            kept = 0;
        foreach (var name in b.Keys)
        {
            var delta = TaskVectorReference.Delta(x[name], b[name]);
            var kept1 = TaskVectorReference.Delta(plain[name], b[name]);
            // Without rescale, every entry is the task vector's own or zero.
            Assert.All(Enumerable.Range(0, delta.Length), j =>
                Assert.True(kept1[j] == 0 || Math.Abs(kept1[j] - delta[j]) <= 1e-6 * Math.Abs(b[name][j]) + 1e-7)
            );
            total += delta.Count(v => v != 0);
            kept += kept1.Count(v => v != 0);
            double before = delta.Sum(v => Math.Abs((double)v));
            double after = TaskVectorReference.Delta(rescaled[name], b[name]).Sum(v => Math.Abs((double)v));
            Assert.Equal(before, after, before * 1e-4);
        }
        double sigma = Math.Sqrt(total * 0.3 * 0.7);
        Assert.InRange(kept, total * 0.3 - 4 * sigma, total * 0.3 + 4 * sigma);
    }

    [Fact]
    public void Breadcrumbs()
    {
        // γ = 0.05 keeps the outliers of 16-element norms (γ·n < 1), where mergekit would zero those task vectors.
        var config = Config(
            "breadcrumbs",
            ["{weight: 1.0}", "{weight: 0.7}", "{weight: 0.4}"],
            "{density: 0.6, gamma: 0.05}"
        );
        AlloyCli.Merge(config, _work["out"]);
        double[] w = [1.0, 0.7, 0.4];
        CheckEveryTensor(_work["out"], RefMethod.Breadcrumbs, (k, m) =>
            m with
            {
                Weight = w[k - 1],
                Density = 0.6,
                Gamma = 0.05,
            }
        );
        var b = Load(Base);
        var norm = TaskVectorReference.Delta(Load(_work["out"])["model.norm.weight"], b["model.norm.weight"]);
        Assert.Contains(norm, v => v != 0);
    }

    [Fact]
    public void Breadcrumbs_ties()
    {
        var config = Config(
            "breadcrumbs_ties",
            ["{weight: 1.0, density: 0.5}", "{weight: 1.0, density: 0.6}", "{weight: 0.5, density: 0.8, gamma: 0.1}"]
        );
        AlloyCli.Merge(config, _work["out"]);
        double[] w = [1.0, 1.0, 0.5],
            d = [0.5, 0.6, 0.8],
            g = [0.01, 0.01, 0.1];
        CheckEveryTensor(_work["out"], RefMethod.BreadcrumbsTies, (k, m) =>
            m with
            {
                Weight = w[k - 1],
                Density = d[k - 1],
                Gamma = g[k - 1],
            }
        );
    }

    [Fact]
    public void Della_is_deterministic_across_thread_counts()
    {
        var config = Config(
            "della",
            ["{weight: 1.0}", "{weight: 0.8}", "{weight: 0.6}"],
            "{density: 0.5, epsilon: 0.2, lambda: 1.1}"
        );
        AlloyCli.Merge(config, _work["one"], "--threads", "1");
        AlloyCli.Merge(config, _work["out"]);
        Assert.Equal(
            File.ReadAllBytes(_work["one/model.safetensors"]),
            File.ReadAllBytes(_work["out/model.safetensors"])
        );
        double[] w = [1.0, 0.8, 0.6];
        CheckEveryTensor(_work["out"], RefMethod.Della with { Lambda = 1.1 }, (k, m) =>
            m with
            {
                Weight = w[k - 1],
                Density = 0.5,
                Epsilon = 0.2,
            }
        );
    }

    [Fact]
    public void Della_linear()
    {
        var config = Config(
            "della_linear",
            ["{weight: 0.5, density: 0.4}", "{weight: 0.3, density: 0.6}", "{weight: 0.2, density: 0.5, epsilon: 0.3}"],
            "{normalize: true}"
        );
        AlloyCli.Merge(config, _work["out"], "--random-seed", "3");
        double[] w = [0.5, 0.3, 0.2],
            d = [0.4, 0.6, 0.5],
            e = [0.15, 0.15, 0.3];
        CheckEveryTensor(
            _work["out"],
            RefMethod.DellaLinear with
            {
                Normalize = true,
            },
            (k, m) => m with { Weight = w[k - 1], Density = d[k - 1], Epsilon = e[k - 1] },
            seed: 3
        );
    }

    [Fact]
    public void Consensus_ta()
    {
        var config = Config(
            "consensus_ta",
            ["{weight: 1.0, lambda: 0.5}", "{weight: 1.0, lambda: 0.6}", "{weight: 1.0, lambda: 0.7}"],
            "{k: 2, alpha: 0.8}"
        );
        AlloyCli.Merge(config, _work["out"]);
        double[] l = [0.5, 0.6, 0.7];
        CheckEveryTensor(_work["out"], RefMethod.ConsensusTa with { K = 2, Alpha = 0.8 }, (k, m) =>
            m with
            {
                TallLambda = l[k - 1],
            }
        );
    }

    [Fact]
    public void Consensus_ties()
    {
        var config = Config(
            "consensus_ties",
            ["{weight: 1.0}", "{weight: 0.5}", "{weight: 1.0}"],
            "{density: 0.5, k: 2, lambda: 0.6}"
        );
        AlloyCli.Merge(config, _work["out"]);
        double[] w = [1.0, 0.5, 1.0];
        CheckEveryTensor(_work["out"], RefMethod.ConsensusTies with { K = 2 }, (k, m) =>
            m with
            {
                Weight = w[k - 1],
                Density = 0.5,
                TallLambda = 0.6,
            }
        );
    }

    [Fact]
    public void Della_epsilon_out_of_range_fails_before_writing()
    {
        var config = Config(
            "della",
            ["{weight: 1.0}", "{weight: 1.0}", "{weight: 1.0}"],
            "{density: 0.5, epsilon: 0.5}"
        );
        AlloyCli.Fails(config, _work["out"], "density ± epsilon is in (0, 1)");
    }

    [Fact]
    public void Every_family_method_is_registered()
    {
        string[] family =
        [
            "task_arithmetic",
            "ties",
            "dare_ties",
            "dare_linear",
            "breadcrumbs",
            "breadcrumbs_ties",
            "della",
            "della_linear",
            "consensus_ta",
            "consensus_ties",
        ];
        Assert.All(family, name =>
            Assert.IsAssignableFrom<Alloy.Methods.TaskVectors.TaskVectorMethod>(MethodRegistry.Find(name))
        );
    }
}
