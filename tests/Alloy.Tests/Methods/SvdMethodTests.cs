using Alloy.LinearAlgebra;
using Alloy.Methods;
using Alloy.Methods.Svd;
using Alloy.Tensors;
using Alloy.Tests.LinearAlgebra;
using Alloy.Tests.Support;
using static Alloy.Tests.Support.ReferenceLinearAlgebra;

namespace Alloy.Tests.Methods;

/// <summary>
/// tsv_m, iso_c, iso_cts, star and cart: hand-checkable cases whose SVD is known (float32 and bf16), the invariants
/// their papers state, and random matrices against the direct double-precision definitions — on every backend.
/// </summary>
public sealed class SvdMethodTests
{
    public static TheoryData<string> Backends() => DenseBackendTests.Backends();

    public static IEnumerable<object[]> BackendsAndDTypes() =>
        from backend in DenseBackendTests.BackendNames()
        from dtype in new[] { DType.F32, DType.BF16 }
        select new object[] { backend, dtype };

    private static readonly TensorPosition InLayer = new(0, false, 1);

    private static Dictionary<string, double> Globals(params (string Name, double Value)[] values) =>
        values.ToDictionary(v => v.Name, v => v.Value);

    /// <summary>Runs a method on base + fine-tunes of one rows×cols tensor with the given backend.</summary>
    private static float[] Run(
        string backend,
        MergeMethod method,
        float[] baseValues,
        float[][] fineTunes,
        int rows,
        int cols,
        Dictionary<string, double>? globals = null,
        IReadOnlyList<IReadOnlyDictionary<string, double>>? perModel = null,
        TensorPosition? position = null
    )
    {
        using (DenseBackend.Use(DenseBackendTests.Get(backend)))
            return MethodTestKit.Run(
                method,
                [baseValues, .. fineTunes],
                0,
                globals,
                perModel,
                shape: [rows, cols],
                position: position ?? InLayer
            );
    }

    private static float RoundTo(DType dtype, double value) =>
        dtype == DType.BF16 ? (float)(BFloat16)(float)value : (float)value;

    /// <summary>
    /// A hand-checked case: the fine-tunes are base + the given task vectors (all exact in the dtype), the output is
    /// rounded once to the dtype and must be base + expected within one unit in the last place (plus float32 error).
    /// </summary>
    private static void Golden(
        string backend,
        DType dtype,
        MergeMethod method,
        double[] baseValues,
        double[][] tasks,
        double[] expected,
        int rows,
        int cols,
        Dictionary<string, double>? globals = null
    )
    {
        var b = baseValues.Select(v => RoundTo(dtype, v)).ToArray();
        Assert.Equal(baseValues, b.Select(v => (double)v));
        var fineTunes = tasks.Select(t => t.Select((v, i) => RoundTo(dtype, baseValues[i] + v)).ToArray()).ToArray();
        for (int k = 0; k < tasks.Length; k++)
            Assert.Equal(tasks[k].Select((v, i) => baseValues[i] + v), fineTunes[k].Select(v => (double)v));
        var actual = Run(backend, method, b, fineTunes, rows, cols, globals).Select(v => RoundTo(dtype, v)).ToArray();
        double scale = tasks.SelectMany(t => t).Concat(baseValues).Max(Math.Abs);
        Expect.Close(
            $"{method.Name} ({backend}, {dtype})",
            expected.Select((d, i) => baseValues[i] + d).ToArray(),
            actual,
            dtype,
            4 * scale
        );
    }

    private static float[] RandomValues(int count, string key, double scale = 1) =>
        DenseBackendTests.Random(count, key, scale);

    private static double[,] TaskVector(float[] fineTune, float[] baseValues, int rows, int cols) =>
        Add(FromRowMajor(fineTune, rows, cols), FromRowMajor(baseValues, rows, cols), -1);

    private static void Near(double[,] expected, float[] actual, int rows, int cols, double tolerance, string what)
    {
        double difference = MaxDifference(expected, FromRowMajor(actual, rows, cols));
        Assert.True(difference <= tolerance, $"{what}: max difference {difference:E2} > {tolerance:E2}");
    }

    // ---- TSV-M ----

    [Theory]
    [MemberData(nameof(Backends))]
    public void Tsv_with_one_model_reproduces_its_task_vector_and_alpha_scales_it(string backend)
    {
        foreach (var (rows, cols) in new[] { (6, 4), (4, 6), (5, 5) })
        {
            var b = RandomValues(rows * cols, $"tsv-base{rows}");
            var x = RandomValues(rows * cols, $"tsv-x{rows}");
            var merged = Run(backend, new TsvMerge(), b, [x], rows, cols);
            for (int i = 0; i < x.Length; i++)
                Assert.Equal(x[i], merged[i], 1e-5);

            var half = Run(
                backend,
                new TsvMerge(),
                b,
                [x],
                rows,
                cols,
                perModel: [new Dictionary<string, double>(), new Dictionary<string, double> { ["alpha"] = 0.5 }]
            );
            for (int i = 0; i < x.Length; i++)
                Assert.Equal(b[i] + 0.5 * ((double)x[i] - b[i]), half[i], 1e-5);
        }
    }

    [Theory]
    [MemberData(nameof(BackendsAndDTypes))]
    public void Tsv_of_two_rank_one_tasks_rotates_their_directions_apart(string backend, DType dtype)
    {
        // τ₁ = 2·e₁e₁ᵀ and τ₂ = w·wᵀ with w = (e₁ + e₂)/√2: each keeps ⌊2/2⌋ = 1 triplet, so U_cat = V_cat = [e₁ w] =
        // M. The polar factor of a 2×2 matrix [[a, b], [c, d]] with positive determinant is the rotation [[a+d, b−c],
        // [c−b, a+d]] / norm, here R = [[1+h, h], [−h, 1+h]] / √((1+h)² + h²) with h = 1/√2, and the merge is R·diag(2,
        // 1)·Rᵀ.
        double h = 1 / Math.Sqrt(2),
            norm = Math.Sqrt((1 + h) * (1 + h) + h * h);
        var rotation = new double[,]
        {
            { (1 + h) / norm, h / norm },
            { -h / norm, (1 + h) / norm },
        };
        var expected = Multiply(
            Multiply(
                rotation,
                new double[,]
                {
                    { 2, 0 },
                    { 0, 1 },
                }
            ),
            Transpose(rotation)
        );
        Golden(
            backend,
            dtype,
            new TsvMerge(),
            [0.5, -1.25, 2, 0.75],
            [
                [2, 0, 0, 0],
                [0.5, 0.5, 0.5, 0.5],
            ],
            ToRowMajor(expected),
            2,
            2
        );
    }

    [Theory]
    [MemberData(nameof(BackendsAndDTypes))]
    public void Tsv_of_tasks_in_disjoint_directions_is_their_sum(string backend, DType dtype)
    {
        // τ₁ = diag(5, 1, 0, 0), τ₂ = diag(0, 0, −3, 2): the top two directions of each are already orthonormal.
        double[] Diagonal(params double[] d) =>
            Enumerable.Range(0, 16).Select(i => i % 5 == 0 ? d[i / 5] : 0).ToArray();
        Golden(
            backend,
            dtype,
            new TsvMerge(),
            Enumerable.Range(0, 16).Select(i => 0.25 * (i % 7) - 1).ToArray(),
            [Diagonal(5, 1, 0, 0), Diagonal(0, 0, -3, 2)],
            Diagonal(5, 1, -3, 2),
            4,
            4
        );
    }

    // ---- Iso-C ----

    [Theory]
    [MemberData(nameof(Backends))]
    public void Iso_c_of_one_rank_one_task_vector_spreads_its_singular_value_over_all_directions(string backend)
    {
        // τ = 6·u·vᵀ (3×2) has singular values (6, 0): the merge has both equal to their mean 3, and maps v to 3·u.
        double[] u = [1 / 3.0, 2 / 3.0, 2 / 3.0],
            v = [0.6, 0.8];
        var b = RandomValues(6, "iso-rank1");
        var x = Enumerable.Range(0, 6).Select(i => (float)(b[i] + 6 * u[i / 2] * v[i % 2])).ToArray();
        var delta = Add(FromRowMajor(Run(backend, new IsoC(), b, [x], 3, 2), 3, 2), FromRowMajor(b, 3, 2), -1);
        var image = Multiply(
            delta,
            new double[,]
            {
                { v[0] },
                { v[1] },
            }
        );
        for (int i = 0; i < 3; i++)
            Assert.Equal(3 * u[i], image[i, 0], 1e-5);
        var gram = Multiply(Transpose(delta), delta);
        Assert.Equal(9, gram[0, 0], 1e-4);
        Assert.Equal(9, gram[1, 1], 1e-4);
        Assert.Equal(0, gram[0, 1], 1e-4);
    }

    [Theory]
    [MemberData(nameof(BackendsAndDTypes))]
    public void Iso_c_of_diagonal_task_vectors_flattens_their_sum_keeping_signs(string backend, DType dtype)
    {
        // Σ τ = [[4, 0, 0], [0, 2, 0]]: singular values (4, 2), mean 3, U·Vᵀ = [[1, 0, 0], [0, 1, 0]].
        double[] b = [1, -0.5, 0.25, 2, 0, -1.5];
        Golden(
            backend,
            dtype,
            new IsoC(),
            b,
            [
                [3, 0, 0, 0, 1, 0],
                [1, 0, 0, 0, 1, 0],
            ],
            [3, 0, 0, 0, 3, 0],
            2,
            3
        );
        // Σ τ = diag(−4, 2): a negative entry is a sign in U·Vᵀ, which the flat spectrum keeps; scaling_factor 1.5.
        Golden(
            backend,
            dtype,
            new IsoC(),
            b,
            [
                [-3, 0, 0, 0, 1, 0],
                [-1, 0, 0, 0, 1, 0],
            ],
            [-4.5, 0, 0, 0, 4.5, 0],
            2,
            3,
            Globals(("scaling_factor", 1.5))
        );
    }

    // ---- Iso-CTS ----

    [Theory]
    [InlineData(768, 8, 0.8, 616, 19)]
    [InlineData(10, 2, 0.8, 8, 1)]
    [InlineData(5, 2, 0.8, 5, 0)] // (5 − 4)/2 = 0.5 rounds half to even: 0
    [InlineData(10, 2, 0.5, 6, 2)] // 2.5 rounds to 2, as Python's round does
    [InlineData(4, 2, 0.0, 0, 2)]
    [InlineData(16, 3, 0.8, 13, 1)]
    public void Iso_cts_splits_directions_as_the_reference_does(
        int r,
        int tasks,
        double fraction,
        int common,
        int perTask
    )
    {
        Assert.Equal((common, perTask), IsoCts.Split(r, tasks, fraction));
    }

    [Fact]
    public void Iso_cts_refuses_a_split_needing_more_directions_than_the_matrix_has()
    {
        Assert.Null(IsoCts.Split(4, 6, 0));
        // r = 4 and six tasks: 4/6 rounds to one direction each, six in all.
        var b = new float[16];
        var fineTunes = Enumerable.Range(1, 6).Select(k => RandomValues(16, $"split{k}")).ToArray();
        var e = Assert.Throws<AlloyException>(() =>
            Run("managed", new IsoCts(), b, fineTunes, 4, 4, Globals(("common_space_fraction", 0)))
        );
        Assert.Contains("raise common_space_fraction", e.Message);
    }

    [Theory]
    [MemberData(nameof(BackendsAndDTypes))]
    public void Iso_cts_of_diagonal_task_vectors_keeps_common_and_task_specific_directions(string backend, DType dtype)
    {
        // τ₁ = diag(6, 1, 2, 1), τ₂ = diag(0, 4, 0.5, 3); Σ = diag(6, 5, 2.5, 4). With fraction 0.5 the common block is
        // e₁, e₂ (6, 5); with them projected out τ₁'s top direction is e₃ (2) and τ₂'s is e₄ (3). All four are
        // orthonormal, so the merge is mean(6, 5, 2, 3)·I = 4·I (Iso-C would give mean(6, 5, 4, 2.5)·I = 4.375·I).
        double[] Diagonal(params double[] d) =>
            Enumerable.Range(0, 16).Select(i => i % 5 == 0 ? d[i / 5] : 0).ToArray();
        var b = Enumerable.Range(0, 16).Select(i => 0.5 * (i % 5) - 0.75).ToArray();
        double[][] tasks = [Diagonal(6, 1, 2, 1), Diagonal(0, 4, 0.5, 3)];
        Golden(
            backend,
            dtype,
            new IsoCts(),
            b,
            tasks,
            Diagonal(4, 4, 4, 4),
            4,
            4,
            Globals(("common_space_fraction", 0.5))
        );
        Golden(backend, dtype, new IsoC(), b, tasks, Diagonal(4.375, 4.375, 4.375, 4.375), 4, 4);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Iso_cts_with_the_whole_space_common_is_iso_c(string backend)
    {
        var b = RandomValues(35, "cts-base");
        var fineTunes = Enumerable.Range(0, 3).Select(k => RandomValues(35, $"cts-x{k}")).ToArray();
        var cts = Run(backend, new IsoCts(), b, fineTunes, 7, 5, Globals(("common_space_fraction", 1.0)));
        var c = Run(backend, new IsoC(), b, fineTunes, 7, 5);
        for (int i = 0; i < c.Length; i++)
            Assert.Equal(c[i], cts[i], 1e-5);
    }

    // ---- STAR ----

    [Theory]
    [MemberData(nameof(BackendsAndDTypes))]
    public void Star_keeps_the_fewest_values_reaching_eta_and_restores_the_nuclear_norm(string backend, DType dtype)
    {
        // τ = diag(6, 3, 1), nuclear norm 10. η = 40: 6 ≥ 4 → rank 1, rescaled by 10/6 → diag(10, 0, 0).
        // η = 70: 6 < 7 ≤ 9 → rank 2, rescaled by 10/9. Two tasks are averaged.
        double[] b = [0.5, 1, -1, 2, 0, 0.25, -0.5, 1.5, 3];
        double[] tau = [6, 0, 0, 0, 3, 0, 0, 0, 1];
        Golden(backend, dtype, new Star(), b, [tau], [10, 0, 0, 0, 0, 0, 0, 0, 0], 3, 3);
        Golden(
            backend,
            dtype,
            new Star(),
            b,
            [tau],
            [60 / 9.0, 0, 0, 0, 30 / 9.0, 0, 0, 0, 0],
            3,
            3,
            Globals(("eta", 70))
        );
        Golden(backend, dtype, new Star(), b, [tau, [0, 0, 0, 0, 0, 0, 0, 0, -2]], [5, 0, 0, 0, 0, 0, 0, 0, -1], 3, 3);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Star_with_eta_100_keeps_each_task_vector_and_preserves_nuclear_norms(string backend)
    {
        var b = RandomValues(24, "star-base");
        var x1 = RandomValues(24, "star-x1");
        var x2 = RandomValues(24, "star-x2");
        var one = Run(backend, new Star(), b, [x1], 6, 4, Globals(("eta", 100)));
        for (int i = 0; i < 24; i++)
            Assert.Equal(x1[i], one[i], 1e-5);
        var two = Run(backend, new Star(), b, [x1, x2], 6, 4, Globals(("eta", 100)));
        for (int i = 0; i < 24; i++)
            Assert.Equal((x1[i] + x2[i]) / 2.0, two[i], 1e-5);

        // With one task and any η the nuclear norm (sum of singular values) of the task vector is unchanged.
        foreach (var eta in new[] { 10.0, 40, 75 })
        {
            var merged = Run(backend, new Star(), b, [x1], 6, 4, Globals(("eta", eta)));
            double Nuclear(float[] x) => Svd(TaskVector(x, b, 6, 4)).S.Sum();
            Assert.Equal(Nuclear(x1), Nuclear(merged), 1e-4);
        }
    }

    // ---- CART ----

    [Theory]
    [MemberData(nameof(BackendsAndDTypes))]
    public void Cart_of_diagonal_task_vectors_adds_the_top_centred_directions_to_the_mean(string backend, DType dtype)
    {
        // τ = diag(9,0,0), diag(0,6,0), diag(0,0,3): mean diag(3,2,1). Centred: diag(6,−2,−1) → rank 1 keeps 6·e₁;
        // diag(−3,4,−1) → 4·e₂; diag(−3,−2,2) → −3·e₁. Sum diag(3,4,0); with prior 2: diag(3,2,1) + diag(6,8,0).
        double[] b = [1, 0.5, -1, 0, 2, 0.25, -0.5, 1.5, 0];
        Golden(
            backend,
            dtype,
            new Cart(),
            b,
            [
                [9, 0, 0, 0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 6, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 0, 0, 0, 3],
            ],
            [9, 0, 0, 0, 10, 0, 0, 0, 1],
            3,
            3,
            Globals(("initial_rank_ratio", 0.34))
        );
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Cart_at_full_rank_is_the_average_of_the_fine_tunes_whatever_the_prior(string backend)
    {
        // Σₜ (θₜ − θ̄) = 0, so task arithmetic around the mean adds nothing at full rank.
        var b = RandomValues(20, "cart-base");
        var fineTunes = Enumerable.Range(0, 3).Select(k => RandomValues(20, $"cart-x{k}")).ToArray();
        foreach (var prior in new[] { 2.0, -0.7 })
        {
            var merged = Run(
                backend,
                new Cart(),
                b,
                fineTunes,
                4,
                5,
                Globals(("initial_rank_ratio", 1.0), ("prior", prior))
            );
            for (int i = 0; i < 20; i++)
                Assert.Equal(fineTunes.Average(x => (double)x[i]), merged[i], 1e-5);
        }
    }

    [Fact]
    public void Cart_averages_matrices_outside_the_layers()
    {
        float[] b = [0, 0, 0, 0];
        float[][] fineTunes =
        [
            [4, 0, 0, 0],
            [0, 0, 0, 2],
        ];
        var outside = Run("managed", new Cart(), b, fineTunes, 2, 2, position: new TensorPosition(null, true, 4));
        Assert.Equal([2f, 0, 0, 1], outside);
        var inside = Run("managed", new Cart(), b, fineTunes, 2, 2, Globals(("initial_rank_ratio", 0.5)));
        // Centred (2,0,0,−1) and (−2,0,0,1) keep ±2·e₁e₁ᵀ, which cancel: the same average (T = 2 always cancels).
        Assert.Equal([2f, 0, 0, 1], inside);
    }

    // ---- all five ----

    public static IEnumerable<object[]> MethodCases() =>
        from backend in DenseBackendTests.BackendNames()
        from method in new[] { "tsv_m", "iso_c", "iso_cts", "star", "cart" }
        from shape in new[] { (7, 5), (5, 9) }
        select new object[] { backend, method, shape.Item1, shape.Item2 };

    /// <summary>
    /// The reference definition of each method for a matrix of task vectors, with the parameters used below.
    /// </summary>
    internal static double[,] Expected(string method, IReadOnlyList<double[,]> tasks) =>
        method switch
        {
            "tsv_m" => SvdMergeReference.Tsv(tasks),
            "iso_c" => SvdMergeReference.IsoC(tasks, 1.3),
            "iso_cts" => SvdMergeReference.IsoCts(tasks, 0.6, 1.3),
            "star" => SvdMergeReference.Star(tasks, 55),
            "cart" => SvdMergeReference.Cart(tasks, 0.4, 1.5),
            _ => throw new ArgumentException(method),
        };

    internal static Dictionary<string, double> Parameters(string method) =>
        method switch
        {
            "iso_c" => Globals(("scaling_factor", 1.3)),
            "iso_cts" => Globals(("scaling_factor", 1.3), ("common_space_fraction", 0.6)),
            "star" => Globals(("eta", 55)),
            "cart" => Globals(("initial_rank_ratio", 0.4), ("prior", 1.5)),
            _ => [],
        };

    [Theory]
    [MemberData(nameof(MethodCases))]
    public void Random_matrices_match_the_direct_definition(string backend, string method, int rows, int cols)
    {
        var b = RandomValues(rows * cols, $"def-base{rows}");
        var fineTunes = Enumerable.Range(0, 3).Select(k => RandomValues(rows * cols, $"def-x{k}{rows}")).ToArray();
        var merged = Run(backend, MethodRegistry.Find(method)!, b, fineTunes, rows, cols, Parameters(method));
        var expected = Add(
            FromRowMajor(b, rows, cols),
            Expected(method, fineTunes.Select(x => TaskVector(x, b, rows, cols)).ToList())
        );
        Near(expected, merged, rows, cols, 2e-5 * Math.Max(1, MaxAbs(expected)), $"{method} ({backend}) {rows}×{cols}");
    }

    [Theory]
    [InlineData("tsv_m", 1.0)]
    [InlineData("iso_c", 1.3)]
    [InlineData("iso_cts", 1.3)]
    [InlineData("star", 1.0)]
    [InlineData("cart", 1.0)]
    public void Non_matrix_tensors_get_the_scaled_mean_task_vector(string method, double scale)
    {
        float[] b = [1, 2, 3];
        float[][] fineTunes =
        [
            [2, 2, 5],
            [1, 4, 0],
        ]; // τ = (1, 0, 2), (0, 2, −3): mean (0.5, 1, −0.5)
        var merged = MethodTestKit.Run(MethodRegistry.Find(method)!, [b, .. fineTunes], 0, Parameters(method));
        Assert.Equal([(float)(1 + 0.5 * scale), (float)(2 + scale), (float)(3 - 0.5 * scale)], merged);
    }

    [Fact]
    public void Tsv_alpha_per_model_scales_each_task_vector_of_non_matrix_tensors_too()
    {
        float[] b = [1, 2, 3];
        float[][] fineTunes =
        [
            [2, 2, 5],
            [1, 4, 0],
        ];
        var alphas = MethodTestKit
            .Weights(null, 2, 0.5)
            .Select(d => (IReadOnlyDictionary<string, double>)d.ToDictionary(kv => "alpha", kv => kv.Value))
            .ToList();
        var merged = MethodTestKit.Run(new TsvMerge(), [b, .. fineTunes], 0, perModel: alphas);
        // mean(2·(1, 0, 2), 0.5·(0, 2, −3)) = (1, 0.5, 1.25)
        Assert.Equal([2f, 2.5f, 4.25f], merged);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Fine_tunes_equal_to_the_base_give_the_base(string backend)
    {
        var b = RandomValues(12, "same");
        foreach (var method in new[] { "tsv_m", "iso_c", "iso_cts", "star", "cart" })
        {
            var merged = Run(
                backend,
                MethodRegistry.Find(method)!,
                b,
                [(float[])b.Clone(), (float[])b.Clone()],
                3,
                4,
                Parameters(method)
            );
            Assert.Equal(b, merged);
        }
    }

    [Fact]
    public void A_matrix_with_NaN_is_refused_naming_the_model()
    {
        var x = RandomValues(6, "nan");
        x[4] = float.NaN;
        var e = Assert.Throws<AlloyException>(() =>
            Run("managed", new IsoC(), RandomValues(6, "nan-base"), [RandomValues(6, "ok"), x], 2, 3)
        );
        Assert.Contains("'m2'", e.Message);
        Assert.Contains("NaN or infinity", e.Message);
    }

    [Fact]
    public void Parameters_out_of_range_and_a_missing_fine_tune_are_refused_at_plan_time()
    {
        float[] one = [1, 2, 3, 4];
        void Refused(string method, Dictionary<string, double> globals, string expected, int models = 2)
        {
            var e = Assert.Throws<AlloyException>(() =>
                MethodTestKit.Run(
                    MethodRegistry.Find(method)!,
                    Enumerable.Repeat(one, models).ToArray(),
                    0,
                    globals,
                    shape: [2, 2]
                )
            );
            Assert.Contains(expected, e.Message);
        }
        Refused("star", Globals(("eta", 0)), "'eta' of star: 0 is outside the range; it takes a number in (0, 100]");
        Refused("star", Globals(("eta", 101)), "'eta' of star: 101 is outside the range");
        Refused("iso_cts", Globals(("common_space_fraction", 1.5)), "common_space_fraction");
        Refused("cart", Globals(("initial_rank_ratio", -0.1)), "initial_rank_ratio");
        foreach (var method in new[] { "tsv_m", "iso_c", "iso_cts", "star", "cart" })
            Refused(method, [], "no model besides the base", models: 1);
    }
}
