using Alloy.Methods;
using Alloy.Methods.TaskVectors;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.Methods.TaskVectors;

/// <summary>
/// The task-vector methods: worked examples, agreement with the reference, invariants and validation.
/// </summary>
public sealed class TaskVectorMethodTests
{
    private static readonly (string Name, RefMethod Reference)[] Family =
    [
        ("task_arithmetic", RefMethod.TaskArithmetic),
        ("ties", RefMethod.Ties),
        ("dare_ties", RefMethod.DareTies),
        ("dare_linear", RefMethod.DareLinear),
        ("breadcrumbs", RefMethod.Breadcrumbs),
        ("breadcrumbs_ties", RefMethod.BreadcrumbsTies),
        ("della", RefMethod.Della),
        ("della_linear", RefMethod.DellaLinear),
        ("consensus_ta", RefMethod.ConsensusTa),
        ("consensus_ties", RefMethod.ConsensusTies),
    ];

    public static TheoryData<string> FamilyNames() => new(Family.Select(f => f.Name));

    private static MergeMethod Method(string name) => MethodRegistry.Find(name)!;

    /// <summary>
    /// Runs a method with the base as input 0 and the models after it, parameters taken from the reference's records.
    /// </summary>
    private static float[] Run(
        string name,
        RefMethod r,
        float[] b,
        IReadOnlyList<RefModel> models,
        long[]? shape = null,
        TensorPosition? position = null,
        ulong seed = 0,
        IReadOnlyList<MagnitudeCut?>? cuts = null
    )
    {
        bool tall = r.Tall;
        var globals = new Dictionary<string, double>
        {
            ["normalize"] = r.Normalize ? 1 : 0,
            ["rescale"] = r.Rescale ? 1 : 0,
            [tall ? "alpha" : "lambda"] = tall ? r.Alpha : r.Lambda,
            ["lines_alpha"] = r.LinesAlpha,
            ["lines_beta"] = r.LinesBeta,
        };
        if (r.Consensus)
        {
            globals["unweighted_sign_election"] = r.Unweighted ? 1 : 0;
            globals["count_sign_election"] = r.ByCount ? 1 : 0;
            globals["normalize_by_count"] = r.NormalizeByCount ? 1 : 0;
        }
        var perModel = new List<IReadOnlyDictionary<string, double>> { new Dictionary<string, double>() };
        foreach (var m in models)
        {
            var p = new Dictionary<string, double> { ["weight"] = m.Weight, ["density"] = m.Density };
            if (r.Sparsify == RefSparsify.Outliers)
                p["gamma"] = m.Gamma;
            if (r.Sparsify == RefSparsify.Della)
                p["epsilon"] = m.Epsilon;
            if (tall)
            {
                p["lambda"] = m.TallLambda;
                p["k"] = r.K;
            }
            perModel.Add(p);
        }
        float[][] inputs = [b, .. models.Select(m => m.Values)];
        return MethodTestKit.Run(Method(name), inputs, 0, globals, perModel, position, shape, seed, cuts);
    }

    private static float[] Bf16(IEnumerable<float> values) => values.Select(v => (float)(BFloat16)v).ToArray();

    /// <summary>
    /// Random task vectors with some large outliers, and with many exact ties (quarter steps) unless
    /// <paramref name="continuous"/>: TALL masks compare sums, which equal their thresholds exactly too often on such a
    /// grid for a float32 engine and a double reference to decide alike.
    /// </summary>
    private static float[] Values(int n, int model, double scale = 1, bool continuous = false)
    {
        var random = RandomStream.For(99, "values", model);
        return Enumerable
            .Range(0, n)
            .Select(j =>
            {
                double v = continuous ? random.Normal(j) : Math.Round(random.Normal(j) * 4) / 4;
                return (float)(scale * (v + (j % 37 == model ? 5 : 0)));
            })
            .ToArray();
    }

    [Fact]
    public void Ties_matches_the_worked_examples_in_float32_and_bfloat16()
    {
        // Worked by hand from mergekit's rules, base 0, w = 1, 1, normalize: density 1 → [1.5,−2,3,0]; density 0.5 →
        // [2,−2,3,0].
        float[] b = [0, 0, 0, 0];
        foreach (bool bf16 in new[] { false, true })
        {
            float[] R(float[] v) => bf16 ? Bf16(v) : v;
            var dense = Run("ties", RefMethod.Ties, R(b), [new(R([1, -2, 3, 0]), 1, 1), new(R([2, 1, -1, 0]), 1, 2)]);
            Assert.Equal([1.5f, -2f, 3f, 0f], R(dense));
            var sparse = Run(
                "ties",
                RefMethod.Ties,
                R(b),
                [new(R([1, -2, 3, 0]), 1, 1) { Density = 0.5 }, new(R([2, 1, -1.5f, 0]), 1, 2) { Density = 0.5 }]
            );
            Assert.Equal([2f, -2f, 3f, 0f], R(sparse));
        }
    }

    [Fact]
    public void Ties_options_reproduce_mergekit_peft_and_the_paper_on_the_three_task_fixture()
    {
        // The papers' three-task example: three task vectors, TIES keep 50 %; the toolkits differ once weights differ.
        float[] b = new float[6];
        float[][] t =
        [
            [0.5f, -0.2f, 0.1f, 0, 0.8f, -0.3f],
            [-0.4f, -0.1f, 0.3f, 0.2f, 0.6f, 0.05f],
            [0.1f, 0.4f, -0.2f, -0.05f, -0.7f, 0.25f],
        ];
        List<RefModel> Models(params double[] w) =>
            t.Select((v, i) => new RefModel(v, w[i], i + 1) { Density = 0.5 }).ToList();
        var peft = RefMethod.Ties with { Unweighted = true, NormalizeByCount = true };
        (RefMethod Method, double[] Weights, double[] Expected)[] cases =
        [
            (RefMethod.Ties, [1, 1, 1], [0.5, 0.4, 0.3, 0, 0.7, -0.3]),
            // the paper's dis-sum
            (RefMethod.Ties with { Normalize = false }, [1, 1, 1], [0.5, 0.4, 0.3, 0, 1.4, -0.3]),
            (RefMethod.Ties, [2, 1, 1], [0.5, 0.4, 0.3, 0, 0.733333, -0.3]), // mergekit
            (peft, [2, 1, 1], [1.0, 0.4, 0.3, 0, 1.1, -0.6]), // PEFT
            (RefMethod.Ties, [1, 1, 2], [0.5, 0.4, 0.3, 0, 0.7, 0.25]),
            (peft, [1, 1, 2], [0.5, 0.8, 0.3, 0, 0.7, -0.3]),
        ];
        foreach (var (method, w, expected) in cases)
        {
            Expect.Close($"f32 w={string.Join(",", w)}", expected, Run("ties", method, b, Models(w)), DType.F32, 2);
            // bf16: inputs rounded to bf16, the expectation computed from them and rounded once.
            var rounded = Models(w).Select(m => m with { Values = Bf16(m.Values) }).ToList();
            Expect.Close(
                $"bf16 w={string.Join(",", w)}",
                TaskVectorReference.Merge(method, b, rounded),
                Bf16(Run("ties", method, b, rounded)),
                DType.BF16
            );
        }
    }

    [Fact]
    public void Breadcrumbs_methods_match_the_worked_example()
    {
        // δ = 1..10, density 0.5, γ 0.1 → keeps 5..9; on a base of 1 with weight 2 (no normalize).
        var b = Enumerable.Repeat(1f, 10).ToArray();
        var x = Enumerable.Range(1, 10).Select(v => 1f + v).ToArray();
        var model = new RefModel(x, 2, 1) { Density = 0.5, Gamma = 0.1 };
        float[] expected = [1, 1, 1, 1, 11, 13, 15, 17, 19, 1];
        Assert.Equal(expected, Run("breadcrumbs", RefMethod.Breadcrumbs, b, [model]));
        Assert.Equal(expected, Run("breadcrumbs_ties", RefMethod.BreadcrumbsTies, b, [model]));
    }

    [Fact]
    public void Consensus_methods_keep_what_k_tasks_agree_on()
    {
        // The papers' TALL example (λ = 0.6): mask counts [3,2,2,1,2,3] over τ_MTL = Σ τ = [0.2,0.1,0.2,0.15,0.7,0].
        float[] b = new float[6];
        float[][] t =
        [
            [0.5f, -0.2f, 0.1f, 0, 0.8f, -0.3f],
            [-0.4f, -0.1f, 0.3f, 0.2f, 0.6f, 0.05f],
            [0.1f, 0.4f, -0.2f, -0.05f, -0.7f, 0.25f],
        ];
        var models = t.Select((v, i) => new RefModel(v, 1, i + 1) { TallLambda = 0.6 }).ToList();
        Expect.Close(
            "k=1",
            [0.2, 0.1, 0.2, 0.15, 0.7, 0],
            Run("consensus_ta", RefMethod.ConsensusTa, b, models),
            DType.F32,
            1
        );
        Expect.Close(
            "k=2",
            [0.2, 0.1, 0.2, 0, 0.7, 0],
            Run("consensus_ta", RefMethod.ConsensusTa with { K = 2 }, b, models),
            DType.F32,
            1
        );
        Expect.Close(
            "k=3",
            [0.2, 0, 0, 0, 0, 0],
            Run("consensus_ta", RefMethod.ConsensusTa with { K = 3 }, b, models),
            DType.F32,
            1
        );
        Expect.Close(
            "alpha",
            [0.1, 0.05, 0.1, 0, 0.35, 0],
            Run("consensus_ta", RefMethod.ConsensusTa with { K = 2, Alpha = 0.5 }, b, models),
            DType.F32,
            1
        );
        // consensus_ties: the TIES vector (dis-mean at density 0.5: [0.5,0.4,0.3,0,0.7,−0.3]) masked by TALL masks
        // against it.
        var ties = RefMethod.ConsensusTies with { K = 2 };
        var sparse = models.Select(m => m with { Density = 0.5 }).ToList();
        Expect.Close(
            "consensus_ties",
            TaskVectorReference.Merge(ties, b, sparse),
            Run("consensus_ties", ties, b, sparse),
            DType.F32,
            1
        );
        Assert.NotEqual(
            TaskVectorReference.Merge(RefMethod.Ties, b, sparse),
            TaskVectorReference.Merge(ties, b, sparse)
        );
    }

    [Fact]
    public void Random_sparsifiers_draw_from_the_models_stream_by_element_index()
    {
        // Golden from the documented keying: keep entry j of model i when RandomStream(seed, tensor, i).Uniform(j) < p.
        var b = Values(300, 0, 0.1);
        var models = Enumerable
            .Range(1, 2)
            .Select(i => new RefModel(Values(300, i), 0.5 + i, i) { Density = 0.4, Epsilon = 0.2 })
            .ToList();
        foreach (var (name, r) in Family.Where(f => f.Reference.Sparsify is RefSparsify.Random or RefSparsify.Della))
        {
            foreach (ulong seed in new ulong[] { 0, 17 })
            {
                var actual = Run(name, r, b, models, [20, 15], seed: seed);
                Expect.Close(
                    $"{name} seed {seed}",
                    TaskVectorReference.Merge(r, b, models, [20, 15], seed: seed),
                    actual,
                    DType.F32,
                    20
                );
            }
        }
    }

    [Theory]
    [MemberData(nameof(FamilyNames))]
    public void Every_method_agrees_with_the_reference_in_float32_and_bfloat16(string name)
    {
        var r = Family.Single(f => f.Name == name).Reference with
        {
            Lambda = 0.8,
            Alpha = 1.2,
            K = 2,
            LinesAlpha = 0.6,
            LinesBeta = 0.3,
        };
        long[] shape = [12, 25];
        var position = new TensorPosition(2, false, 4);
        foreach (bool bf16 in new[] { false, true })
        {
            float[] R(float[] v) => bf16 ? Bf16(v) : v;
            var b = R(Values(300, 0, 0.5, r.Tall));
            var models = Enumerable
                .Range(1, 3)
                .Select(i => new RefModel(R(Values(300, i, 1, r.Tall).Select((v, j) => v + b[j]).ToArray()), 0.3 * i, i)
                {
                    Density = 0.3 + 0.15 * i,
                    Gamma = 0.02 * i,
                    Epsilon = 0.1,
                    TallLambda = 0.4 + 0.1 * i,
                })
                .ToList();
            var expected = TaskVectorReference.Merge(r, b, models, shape, position: position);
            var actual = Run(name, r, b, models, shape, position);
            if (bf16)
                Expect.Close(name + " bf16", expected, Bf16(actual), DType.BF16);
            else
                Expect.Close(name, expected, actual, DType.F32, 40);
        }
    }

    [Theory]
    [MemberData(nameof(FamilyNames))]
    public void Lambda_or_alpha_zero_gives_the_base(string name)
    {
        var r = Family.Single(f => f.Name == name).Reference with { Lambda = 0, Alpha = 0 };
        var b = Values(100, 0);
        var models = Enumerable.Range(1, 2).Select(i => new RefModel(Values(100, i), i, i) { Density = 0.5 }).ToList();
        Assert.Equal(b, Run(name, r, b, models));
    }

    [Theory]
    [MemberData(nameof(FamilyNames))]
    public void Identical_fine_tunes_give_that_fine_tune_when_normalized(string name)
    {
        var r = Family.Single(f => f.Name == name).Reference with { Normalize = true };
        var b = Values(100, 0);
        var x = Values(100, 1);
        var models = new[] { 0.2, 0.5, 1.3 }.Select((w, i) => new RefModel(x, w, i + 1)).ToList();
        Expect.Close(name, x.Select(v => (double)v).ToArray(), Run(name, r, b, models), DType.F32, 10);
    }

    [Fact]
    public void Ties_at_density_one_with_one_model_is_task_arithmetic()
    {
        var b = Values(200, 0);
        var x = Values(200, 1);
        var ties = Run("ties", RefMethod.Ties with { Lambda = 0.7 }, b, [new(x, 0.6, 1)]);
        var ta = Run(
            "task_arithmetic",
            RefMethod.TaskArithmetic with
            {
                Normalize = true,
                Lambda = 0.7,
            },
            b,
            [new(x, 0.6, 1)]
        );
        Assert.Equal(ta, ties);
    }

    [Fact]
    public void Lines_scales_the_merged_task_vector_by_depth()
    {
        float[] b = [1, 1],
            x = [3, -1];
        var lines = RefMethod.TaskArithmetic with { LinesAlpha = 0.5, LinesBeta = 1 };
        // Layer 1 of 3: 0.5 + 1·1/2 = 1 → x; layer 2: 1.5 → b + 1.5·δ; embeddings: 0.5.
        Assert.Equal(
            [3f, -1f],
            Run("task_arithmetic", lines, b, [new(x, 1, 1)], position: new TensorPosition(1, false, 3))
        );
        Assert.Equal(
            [4f, -2f],
            Run("task_arithmetic", lines, b, [new(x, 1, 1)], position: new TensorPosition(2, false, 3))
        );
        Assert.Equal(
            [2f, 0f],
            Run("task_arithmetic", lines, b, [new(x, 1, 1)], position: new TensorPosition(null, true, 3))
        );
    }

    [Fact]
    public void A_model_wide_cut_replaces_the_per_tensor_trim()
    {
        // Per tensor, density 0.5 keeps −4, 3 and the first 2; the model-wide cut (threshold 1, one tie kept) keeps all
        // but 0.5.
        float[] b = [0, 0, 0, 0, 0, 0],
            x = [1, 2, 3, -4, 2, 0.5f];
        var model = new RefModel(x, 1, 1) { Density = 0.5 };
        var cut = new MagnitudeCut(MagnitudeCut.KeyOf(1f), 1);
        Assert.Equal([0f, 2, 3, -4, 0, 0], Run("ties", RefMethod.Ties, b, [model]));
        Assert.Equal([1f, 2, 3, -4, 2, 0], Run("ties", RefMethod.Ties, b, [model], cuts: [null, cut]));
    }

    [Fact]
    public void A_tensor_without_task_vectors_is_the_base()
    {
        float[] b = [1, 2, 3];
        Assert.Equal(b, MethodTestKit.Run(Method("ties"), [b], 0));
    }

    [Fact]
    public void Della_refuses_an_epsilon_that_leaves_zero_one()
    {
        // mergekit's test: density 0.5 with ε = 1.35 is a ValueError.
        var e = Assert.Throws<AlloyException>(() =>
            Run("della", RefMethod.Della, [0, 0], [new([1, 2], 1, 1) { Density = 0.5, Epsilon = 1.35 }])
        );
        Assert.Contains("epsilon", e.Message);
        Assert.Contains("density ± epsilon is in (0, 1)", e.Message);
        Assert.Contains("t.weight", e.Message);
        // Density 1 does not sparsify, so any ε is fine there.
        Run("della", RefMethod.Della, [0, 0], [new([1, 2], 1, 1) { Density = 1, Epsilon = 1.35 }]);
    }

    [Fact]
    public void Bad_density_gamma_and_k_are_refused_before_merging()
    {
        Assert.Contains(
            "'density' of ties: -0.1 is outside the range; it takes a number from 0 to 1",
            Assert
                .Throws<AlloyException>(() => Run("ties", RefMethod.Ties, [0], [new([1], 1, 1) { Density = -0.1 }]))
                .Message
        );
        // Methods that do not sparsify ignore density, as mergekit does.
        Assert.Equal([1f], Run("task_arithmetic", RefMethod.TaskArithmetic, [0], [new([1], 1, 1) { Density = -0.1 }]));
        Assert.Contains(
            "gamma",
            Assert
                .Throws<AlloyException>(() =>
                    Run("breadcrumbs", RefMethod.Breadcrumbs, [0], [new([1], 1, 1) { Density = 0.5, Gamma = -1 }])
                )
                .Message
        );
        var perModel = MethodTestKit
            .Weights(null, 1, 1)
            .Select((w, i) => (IReadOnlyDictionary<string, double>)new Dictionary<string, double>(w) { ["k"] = i })
            .ToList();
        Assert.Contains(
            "k differs",
            Assert
                .Throws<AlloyException>(() =>
                    MethodTestKit.Run(
                        Method("consensus_ta"),
                        [
                            [0],
                            [1],
                            [2],
                        ],
                        0,
                        perModel: perModel
                    )
                )
                .Message
        );
    }

    [Fact]
    public void Parameters_and_defaults_are_mergekits()
    {
        // mergekit's (normalize, rescale) defaults and the extra per-model parameters.
        (string Name, double Normalize, double Rescale, string[] Extra)[] table =
        [
            ("task_arithmetic", 0, 0, []),
            ("ties", 1, 0, []),
            ("dare_ties", 0, 1, []),
            ("dare_linear", 0, 1, []),
            ("breadcrumbs", 0, 0, ["gamma"]),
            ("breadcrumbs_ties", 0, 0, ["gamma"]),
            ("della", 1, 1, ["epsilon"]),
            ("della_linear", 0, 1, ["epsilon"]),
            ("consensus_ta", 0, 0, ["k", "lambda"]),
            ("consensus_ties", 1, 0, ["k", "lambda"]),
        ];
        foreach (var (name, normalize, rescale, extra) in table)
        {
            var method = Method(name);
            MethodParameter Spec(string p) => method.Parameters.Single(s => s.Name == p);
            Assert.Equal(normalize, Spec("normalize").DefaultValue!.Value.Number);
            Assert.Equal(rescale, Spec("rescale").DefaultValue!.Value.Number);
            Assert.Equal(0, Spec("int8_mask").DefaultValue!.Value.Number);
            Assert.True(Spec("weight") is { Required: true, Scope: ParameterScope.PerModel });
            Assert.True(Spec("density") is NumberParameter { Default: 1, Scope: ParameterScope.PerModel });
            Assert.Equal(
                extra.Order(),
                method
                    .Parameters.Where(p => p.Scope == ParameterScope.PerModel && p.Name is not ("weight" or "density"))
                    .Select(p => p.Name)
                    .Order()
            );
            Assert.Equal(BaseModelUse.Required, method.Declaration.BaseModel);
            Assert.Equal(EmbeddingShapeRule.TruncateToBase, method.Declaration.EmbeddingShapes);
            Assert.True(method.Declaration.SkipsMismatchedInputs);
        }
        Assert.Equal(0.01, ((NumberParameter)Method("breadcrumbs").Declaration.Parameter("gamma")!).Default);
        Assert.Equal(0.15, ((NumberParameter)Method("della").Declaration.Parameter("epsilon")!).Default);
        Assert.Equal(1, ((NumberParameter)Method("ties").Declaration.Parameter("lambda")!).Default);
        Assert.True(Method("task_arithmetic").Declaration.Elementwise);
        Assert.True(Method("consensus_ta").Declaration.Elementwise);
        Assert.False(Method("dare_linear").Declaration.Elementwise);
    }
}
