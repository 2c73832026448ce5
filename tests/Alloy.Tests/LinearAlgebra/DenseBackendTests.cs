using Alloy.LinearAlgebra;
using Alloy.Tensors;
using Alloy.Tests.Support;
using static Alloy.Tests.Support.ReferenceLinearAlgebra;

namespace Alloy.Tests.LinearAlgebra;

/// <summary>
/// Both backends (OpenBLAS when libopenblas.so.0 is installed, and always the managed one) checked against plain
/// double-precision computations: GEMM against a triple loop, SVD by reconstruction and orthogonality.
/// </summary>
public sealed class DenseBackendTests
{
    /// <summary>The backends available here: managed always, OpenBLAS when the library loads.</summary>
    public static TheoryData<string> Backends() => new(BackendNames());

    internal static IEnumerable<string> BackendNames() =>
        DenseBackend.OpenBlas is null ? ["managed"] : ["managed", "openblas"];

    internal static DenseBackend Get(string name) => name == "managed" ? DenseBackend.Managed : DenseBackend.OpenBlas!;

    internal static float[] Random(int count, string key, double scale = 1)
    {
        var stream = RandomStream.For(11, key, 0);
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = (float)(scale * stream.Normal(i));
        return values;
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Gemm_matches_a_triple_loop_for_every_transpose_leading_dimension_alpha_and_beta(string backend)
    {
        var linear = Get(backend);
        // Sizes cross the managed kernel's tile (6×16), panel (96 rows, 256 depth) and column-block (2048) edges.
        foreach (
            var (m, n, k) in new[] { (1, 1, 1), (3, 5, 2), (7, 17, 9), (130, 70, 300), (97, 33, 257), (3, 2100, 5) }
        )
        foreach (bool ta in new[] { false, true })
        foreach (bool tb in new[] { false, true })
        foreach (var (alpha, beta) in new[] { (1f, 0f), (0.5f, 1f), (-2f, 0.25f) })
        {
            // Leading dimensions larger than the logical widths: sub-matrices of wider storage.
            int lda = (ta ? m : k) + 3,
                ldb = (tb ? k : n) + 1,
                ldc = n + 2;
            var a = Random((ta ? k : m) * lda, $"a{m}{n}{k}{ta}");
            var b = Random((tb ? n : k) * ldb, $"b{m}{n}{k}{tb}");
            var c = Random(m * ldc, $"c{m}{n}{k}");
            var before = (float[])c.Clone();
            linear.Gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            for (int i = 0; i < m; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    double sum = 0,
                        magnitude = 0;
                    for (int p = 0; p < k; p++)
                    {
                        double x = ta ? a[p * lda + i] : a[i * lda + p];
                        double y = tb ? b[j * ldb + p] : b[p * ldb + j];
                        sum += x * y;
                        magnitude += Math.Abs(x * y);
                    }
                    double expected = alpha * sum + beta * before[i * ldc + j];
                    double tolerance =
                        1e-6 * (Math.Abs(alpha) * magnitude + Math.Abs(beta * before[i * ldc + j])) + 1e-30;
                    Assert.True(
                        Math.Abs(c[i * ldc + j] - expected) <= tolerance,
                        $"{backend} {m}×{n}×{k} ta={ta} tb={tb} α={alpha} β={beta}: C[{i},{j}] = {c[i * ldc + j]}, "
                            + $"expected {expected}"
                    );
                }
                // Padding between rows of C is untouched.
                for (int j = n; j < ldc && i * ldc + j < c.Length; j++)
                    Assert.Equal(before[i * ldc + j], c[i * ldc + j]);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Gemm_with_beta_zero_ignores_what_C_held_and_k_zero_only_scales_C(string backend)
    {
        var linear = Get(backend);
        float[] a = [1, 2, 3, 4],
            b = [5, 6, 7, 8];
        float[] c = [float.NaN, float.PositiveInfinity, float.NaN, 1];
        linear.Gemm(false, false, 2, 2, 2, 1, a, 2, b, 2, 0, c, 2);
        Assert.Equal([19f, 22f, 43f, 50f], c);
        linear.Gemm(false, false, 2, 2, 0, 1, [], 1, [], 2, 0.5f, c, 2);
        Assert.Equal([9.5f, 11f, 21.5f, 25f], c);
    }

    public static IEnumerable<object[]> SvdShapes() =>
        from backend in BackendNames()
        from shape in new[]
        {
            (1, 1),
            (1, 7),
            (7, 1),
            (5, 5),
            (13, 7),
            (7, 13),
            (64, 48),
            (40, 90),
            (120, 120),
            (300, 260),
        }
        select new object[] { backend, shape.Item1, shape.Item2 };

    // 300×260 is large enough for the managed SVD to rotate pairs in parallel.
    [Theory]
    [MemberData(nameof(SvdShapes))]
    public void Svd_of_random_matrices_reconstructs_them_with_orthonormal_factors_and_sorted_values(
        string backend,
        int m,
        int n
    )
    {
        var a = Random(m * n, $"svd{m}x{n}");
        CheckSvd(Get(backend), a, m, n, $"{backend} {m}×{n}");
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Svd_of_rank_deficient_matrices_has_zero_trailing_values_and_still_orthonormal_factors(string backend)
    {
        var linear = Get(backend);
        // Rank 3 as a product of 20×3 and 3×15 factors (rounding to float32 leaves tiny trailing values).
        var left = FromRowMajor(Random(60, "left"), 20, 3);
        var right = FromRowMajor(Random(45, "right"), 3, 15);
        var product = ToRowMajor(Multiply(left, right)).Select(v => (float)v).ToArray();
        var s = CheckSvd(linear, product, 20, 15, $"{backend} rank 3");
        Assert.All(s[3..], v => Assert.True(v < 1e-5 * s[0], $"{backend}: trailing singular value {v} vs {s[0]}"));

        // Exactly rank 2 with zero rows and columns, its SVD known: values 3 and 2, then exact zeros.
        float[] sparse = [0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, -2, 0, 0, 0, 0, 0, 0]; // 5×4
        var known = CheckSvd(linear, sparse, 5, 4, $"{backend} 5×4 sparse");
        Assert.Equal(3f, known[0], 6);
        Assert.Equal(2f, known[1], 6);
        Assert.All(known[2..], v => Assert.True(v < 1e-6f));

        // The zero matrix: all values zero, factors still orthonormal.
        var zero = CheckSvd(linear, new float[6 * 9], 6, 9, $"{backend} zero 6×9");
        Assert.All(zero, v => Assert.Equal(0f, v));
    }

    /// <summary>
    /// An embedding's task vector where only the rows of the tokens seen in fine-tuning moved: most rows zero, so most
    /// vectors orthogonalise down to nothing. Rounding once took such a vector's norm below zero and the whole
    /// factorisation to NaN (TSV-M on the tiny experts).
    /// </summary>
    [Theory]
    [MemberData(nameof(Backends))]
    public void Svd_of_matrices_whose_rows_are_mostly_zero_is_finite_and_exact(string backend)
    {
        var linear = Get(backend);
        foreach (var (m, n, moved) in new[] { (300, 64, 10), (64, 300, 10), (272, 128, 40) })
        {
            for (int seed = 0; seed < 8; seed++)
            {
                var a = new float[m * n];
                var values = Random(moved * n, $"moved-{m}-{n}-{seed}", 0.003);
                for (int k = 0; k < moved; k++)
                {
                    // Spread the moved rows over the matrix, each row a different one.
                    int row = (int)((k * 7919L + seed * 31L) % m);
                    values.AsSpan(k * n, n).CopyTo(a.AsSpan(row * n, n));
                }
                CheckSvd(linear, a, m, n, $"{backend} {m}×{n} with {moved} rows moved, seed {seed}");
            }
        }
    }

    [Fact]
    public void Both_backends_agree_on_singular_values_and_on_the_reconstruction()
    {
        if (DenseBackend.OpenBlas is not { } openBlas)
        {
            // Without the library only the managed backend exists; it must agree with the double reference instead.
            var a0 = Random(30 * 20, "agree");
            var (_, reference, _) = Svd(FromRowMajor(a0, 30, 20));
            var s0 = new float[20];
            DenseBackend.Managed.Svd(a0, 30, 20, new float[600], s0, new float[400]);
            for (int q = 0; q < 20; q++)
                Assert.Equal(reference[q], s0[q], 1e-5 * reference[0]);
            return;
        }
        foreach (var (m, n) in new[] { (30, 20), (20, 30), (64, 64) })
        {
            var a = Random(m * n, $"agree{m}x{n}");
            int r = Math.Min(m, n);
            var results = new[] { openBlas, DenseBackend.Managed }
                .Select(linear =>
                {
                    var (u, s, vt) = (new float[m * r], new float[r], new float[r * n]);
                    linear.Svd(a, m, n, u, s, vt);
                    return (U: FromRowMajor(u, m, r), S: s, Vt: FromRowMajor(vt, r, n));
                })
                .ToArray();
            for (int q = 0; q < r; q++)
            {
                Assert.Equal(results[0].S[q], results[1].S[q], 1e-5 * results[0].S[0]);
                // Singular vectors agree up to sign (the values are distinct for random matrices).
                double dot = 0;
                for (int i = 0; i < m; i++)
                    dot += results[0].U[i, q] * results[1].U[i, q];
                Assert.True(
                    Math.Abs(Math.Abs(dot) - 1) < 1e-3,
                    $"{m}×{n}: U column {q} differs (|dot| = {Math.Abs(dot)})"
                );
            }
            var first = Reconstruct(results[0].U, results[0].S.Select(v => (double)v).ToArray(), results[0].Vt, r);
            var second = Reconstruct(results[1].U, results[1].S.Select(v => (double)v).ToArray(), results[1].Vt, r);
            Assert.True(MaxDifference(first, second) < 1e-5 * results[0].S[0]);
        }
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Polar_gives_the_orthonormal_factor_and_keeps_an_orthonormal_matrix(string backend)
    {
        var linear = Get(backend);
        foreach (var (m, n) in new[] { (9, 4), (4, 9), (6, 6) })
        {
            var a = Random(m * n, $"polar{m}x{n}");
            var q = new float[m * n];
            linear.Polar(a, m, n, q);
            var expected = Polar(FromRowMajor(a, m, n));
            Assert.True(MaxDifference(expected, FromRowMajor(q, m, n)) < 1e-5, $"{backend} polar {m}×{n}");

            // An orthonormal matrix is its own polar factor.
            var again = new float[m * n];
            linear.Polar(q, m, n, again);
            for (int i = 0; i < q.Length; i++)
                Assert.Equal(q[i], again[i], 1e-5);
        }
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Reconstruct_keeps_the_leading_triplets_scaled_and_accumulates(string backend)
    {
        var linear = Get(backend);
        // U = I₃ (3×3), S = (4, 2, 1), Vᵀ = the first three rows of I₄ permuted: rank 2 keeps 4·e₀e₂ᵀ and 2·e₁e₀ᵀ.
        float[] u = [1, 0, 0, 0, 1, 0, 0, 0, 1];
        float[] s = [4, 2, 1];
        float[] vt = [0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1];
        var c = Enumerable.Repeat(1f, 12).ToArray();
        linear.Reconstruct(u, s, vt, 3, 4, 3, 2, c, alpha: 0.5f, beta: 1);
        Assert.Equal([1f, 1, 3, 1, 2, 1, 1, 1, 1, 1, 1, 1], c);
        linear.Reconstruct(u, s, vt, 3, 4, 3, 0, c, beta: 0);
        Assert.All(c, v => Assert.Equal(0f, v));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Results_are_identical_when_computed_concurrently(string backend)
    {
        // The executor calls the backend from several threads at once; each call must give the same bytes as alone.
        // 300×260 is large enough for the managed GEMM and SVD to split their own work across threads too.
        var linear = Get(backend);
        const int m = 300,
            n = 260;
        var a = Random(m * n, "concurrent");
        float[] Once()
        {
            var (u, s, vt) = (new float[m * n], new float[n], new float[n * n]);
            linear.Svd(a, m, n, u, s, vt);
            var product = new float[m * m];
            linear.Gemm(false, true, m, m, n, 1, a, n, a, n, 0, product, m);
            return [.. u, .. s, .. vt, .. product];
        }
        var alone = Once();
        var together = Enumerable.Range(0, 4).AsParallel().WithDegreeOfParallelism(4).Select(_ => Once()).ToList();
        Assert.All(together, result => Assert.Equal(alone, result));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void The_single_threaded_view_gives_the_same_bits(string backend)
    {
        // 700×300×400 is far past the managed GEMM's parallel threshold, with edge tiles and two k panels.
        var linear = Get(backend);
        const int m = 700,
            n = 300,
            k = 400;
        var a = Random(m * k, "single-a");
        var b = Random(n * k, "single-b");
        var threaded = new float[m * n];
        var single = new float[m * n];
        linear.Gemm(false, true, m, n, k, 1, a, k, b, k, 0, threaded, n);
        linear.SingleThreaded.Gemm(false, true, m, n, k, 1, a, k, b, k, 0, single, n);
        Assert.Equal(threaded, single);
        Assert.Equal(linear.Name, linear.SingleThreaded.Name);
        Assert.Same(linear.SingleThreaded, linear.SingleThreaded.SingleThreaded);
    }

    [Fact]
    public void Managed_gemm_packs_stored_and_transposed_operands_to_the_same_bits()
    {
        // Panels of an untransposed A and a transposed B are packed by AVX block transposes, the other layouts
        // element by element: the same product from either layout must give identical bits. Odd sizes leave edges.
        const int m = 53,
            n = 70,
            k = 301;
        var a = Random(m * k, "pack-a");
        var b = Random(k * n, "pack-b");
        var at = ToFloats(Transpose(FromRowMajor(a, m, k)));
        var bt = ToFloats(Transpose(FromRowMajor(b, k, n)));
        var reference = new float[m * n];
        DenseBackend.Managed.Gemm(false, false, m, n, k, 0.75f, a, k, b, n, 0, reference, n);
        foreach (bool ta in new[] { false, true })
        {
            foreach (bool tb in new[] { false, true })
            {
                var c = new float[m * n];
                DenseBackend.Managed.Gemm(
                    ta,
                    tb,
                    m,
                    n,
                    k,
                    0.75f,
                    ta ? at : a,
                    ta ? m : k,
                    tb ? bt : b,
                    tb ? k : n,
                    0,
                    c,
                    n
                );
                Assert.Equal(reference, c);
            }
        }
        // A product of one row block packs B sliver by sliver, a taller one packs it whole first: same bits per row.
        const int tall = 250;
        var taller = Random(tall * k, "pack-tall");
        a.CopyTo(taller, 0);
        var tallProduct = new float[tall * n];
        DenseBackend.Managed.Gemm(false, false, tall, n, k, 0.75f, taller, k, b, n, 0, tallProduct, n);
        Assert.Equal(reference, tallProduct[..(m * n)]);
    }

    private static float[] ToFloats(double[,] x) => [.. ToRowMajor(x).Select(v => (float)v)];

    [Fact]
    public async Task Use_overrides_the_backend_for_this_flow_only_and_restores_it()
    {
        var before = DenseBackend.Current;
        using (DenseBackend.Use(DenseBackend.Managed))
        {
            Assert.Same(DenseBackend.Managed, DenseBackend.Current);
            Assert.Same(DenseBackend.Managed, await Task.Run(() => DenseBackend.Current));
        }
        Assert.Same(before, DenseBackend.Current);
        Assert.Same(DenseBackend.OpenBlas ?? DenseBackend.Managed, DenseBackend.Default);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Spans_too_short_for_the_dimensions_are_refused(string backend)
    {
        var linear = Get(backend);
        Assert.Throws<ArgumentException>(() =>
            linear.Gemm(false, false, 2, 2, 2, 1, new float[3], 2, new float[4], 2, 0, new float[4], 2)
        );
        Assert.Throws<ArgumentException>(() =>
            linear.Gemm(false, false, 2, 2, 2, 1, new float[4], 1, new float[4], 2, 0, new float[4], 2)
        );
        Assert.Throws<ArgumentException>(() =>
            linear.Svd(new float[6], 2, 3, new float[4], new float[2], new float[5])
        );
        Assert.Throws<ArgumentOutOfRangeException>(() => linear.Svd([], 0, 3, [], [], []));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Svd_refuses_NaN_and_infinity(string backend)
    {
        var linear = Get(backend);
        foreach (var bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
        {
            for (int at = 0; at < 20; at += 19) // in the vectorized part and in the tail
            {
                var a = Random(20, "finite");
                a[at] = bad;
                var e = Assert.Throws<AlloyException>(() =>
                    linear.Svd(a, 4, 5, new float[16], new float[4], new float[20])
                );
                Assert.Contains("NaN or infinity", e.Message);
            }
        }
        Assert.True(DenseBackend.AllFinite([float.MaxValue, -float.MaxValue, 0, float.Epsilon]));
    }

    /// <summary>Runs the SVD and checks it against the definition in double; returns the singular values.</summary>
    private static float[] CheckSvd(DenseBackend linear, float[] a, int m, int n, string what)
    {
        int r = Math.Min(m, n);
        // Guard values after the spans catch writes past the documented sizes.
        var u = Enumerable.Repeat(7f, m * r + 1).ToArray();
        var s = Enumerable.Repeat(7f, r + 1).ToArray();
        var vt = Enumerable.Repeat(7f, r * n + 1).ToArray();
        var copy = (float[])a.Clone();
        linear.Svd(a, m, n, u.AsSpan(0, m * r), s.AsSpan(0, r), vt.AsSpan(0, r * n));
        Assert.Equal(copy, a);
        Assert.Equal(7f, u[^1]);
        Assert.Equal(7f, s[^1]);
        Assert.Equal(7f, vt[^1]);

        var values = s[..r];
        for (int q = 0; q < r; q++)
        {
            Assert.True(values[q] >= 0, $"{what}: negative singular value {values[q]}");
            if (q > 0)
                Assert.True(values[q] <= values[q - 1], $"{what}: singular values not descending at {q}");
        }
        var uu = FromRowMajor(u, m, r);
        var vv = FromRowMajor(vt, r, n);
        var aa = FromRowMajor(a, m, n);
        double norm = Math.Sqrt(a.Sum(v => (double)v * v));
        var residual = Add(aa, Reconstruct(uu, values.Select(v => (double)v).ToArray(), vv, r), -1);
        double error = Math.Sqrt(ToRowMajor(residual).Sum(v => v * v));
        Assert.True(error <= 1e-5 * norm + 1e-30, $"{what}: ‖A − USVᵀ‖ = {error:E2}, ‖A‖ = {norm:E2}");
        CheckOrthonormal(Multiply(Transpose(uu), uu), what + " UᵀU");
        CheckOrthonormal(Multiply(vv, Transpose(vv)), what + " VᵀV");
        return values;
    }

    private static void CheckOrthonormal(double[,] gram, string what)
    {
        for (int i = 0; i < gram.GetLength(0); i++)
        for (int j = 0; j < gram.GetLength(1); j++)
            Assert.True(Math.Abs(gram[i, j] - (i == j ? 1 : 0)) < 2e-6, $"{what}[{i},{j}] = {gram[i, j]}");
    }
}
