using Alloy.Adapters;
using Alloy.Tests.Support;
using static Alloy.Tests.Support.ReferenceLinearAlgebra;

namespace Alloy.Tests.Adapters;

/// <summary>
/// KnOTS (knots_ties, knots_linear, knots_dare_ties) on hand-made adapters of one module [out 6, in 5]: cases with a
/// known answer (orthogonal updates, an adapter merged with itself), and the joint SVD of [ΔW_1 ΔW_2] taken densely
/// in the test with TIES written out on its coefficients S·V_tᵀ.
/// </summary>
public sealed class AdapterMergeKnotsTests : IDisposable
{
    private readonly TempFolder _work = new();
    private readonly double[,] _b1 = TestAdapters.Random(6, 3, 1),
        _a1 = TestAdapters.Random(3, 5, 2),
        _b2 = TestAdapters.Random(6, 2, 3),
        _a2 = TestAdapters.Random(2, 5, 4);
    private readonly string _first,
        _second;

    public AdapterMergeKnotsTests()
    {
        _first = TestAdapters.Write(_work["first"], _b1, _a1);
        // A scale of 2 (lora_alpha = 2r): ΔW_2 = 2·B_2·A_2.
        _second = TestAdapters.Write(_work["second"], _b2, _a2, scale: 2);
    }

    public void Dispose() => _work.Dispose();

    private (double[,] B, double[,] A) Merged(string type, string output, params string[] extra) =>
        TestAdapters.Merged(type, _work[output], [_first + ":0.7", _second + ":0.3"], extra);

    private double[,] Delta1 => Multiply(_b1, _a1);
    private double[,] Delta2 => Scale(Multiply(_b2, _a2), 2);

    private static double[,] Product((double[,] B, double[,] A) f) => Multiply(f.B, f.A);

    private static double Relative(double[,] actual, double[,] expected) =>
        MaxDifference(actual, expected) / MaxAbs(expected);

    /// <summary>Rank-1 adapters whose B columns and A rows are orthogonal: [b;0]·[a,0] and [0;b']·[0,a'].</summary>
    private (string First, string Second, double[,] Sum) OrthogonalPair()
    {
        var b1 = new double[,]
        {
            { 1 },
            { 2 },
            { 0 },
            { 0 },
        };
        var a1 = new double[,]
        {
            { 3, -1, 0, 0, 0 },
        };
        var b2 = new double[,]
        {
            { 0 },
            { 0 },
            { -1 },
            { 0.5 },
        };
        var a2 = new double[,]
        {
            { 0, 0, 2, 1, -4 },
        };
        return (
            TestAdapters.Write(_work["orthogonal-1"], b1, a1),
            TestAdapters.Write(_work["orthogonal-2"], b2, a2),
            Add(Multiply(b1, a1), Multiply(b2, a2))
        );
    }

    [Fact]
    public void Orthogonal_rank_one_updates_merge_to_their_sum_with_knots_linear_and_knots_ties_at_density_one()
    {
        var (first, second, sum) = OrthogonalPair();
        var linear = TestAdapters.Merged("knots_linear", _work["orthogonal-linear"], [first, second]);
        Assert.Equal(2, linear.A.GetLength(0));
        Assert.True(Relative(Product(linear), sum) < 1e-5);
        // Each task lives in its own basis direction, so no coefficient is shared and TIES keeps every one whole.
        var ties = TestAdapters.Merged("knots_ties", _work["orthogonal-ties"], [first, second], "--density", "1");
        Assert.True(Relative(Product(ties), sum) < 1e-5);
    }

    [Fact]
    public void An_adapter_merged_with_itself_keeps_its_rank_knots_ties_gives_it_back_and_knots_linear_doubles_it()
    {
        string[] twice = [_first, _first];
        var ties = TestAdapters.Merged("knots_ties", _work["self-ties"], twice, "--density", "1");
        Assert.Equal(3, ties.A.GetLength(0));
        // Agreeing coefficients are averaged (the disjoint mean).
        Assert.True(Relative(Product(ties), Delta1) < 1e-5);
        var linear = TestAdapters.Merged("knots_linear", _work["self-linear"], twice);
        Assert.Equal(3, linear.A.GetLength(0));
        Assert.True(Relative(Product(linear), Scale(Delta1, 2)) < 1e-5);
    }

    [Fact]
    public void The_joint_basis_is_shared_orthonormal_and_reconstructs_each_task_exactly()
    {
        var inputs = new[] { (B: _b1, A: _a1, Scale: 1.0), (B: _b2, A: _a2, Scale: 2.0) }
            .Select(f => new LoraFactors(
                [.. ToRowMajor(f.A).Select(v => (float)v)],
                [.. ToRowMajor(f.B).Select(v => (float)v)],
                f.A.GetLength(0),
                f.Scale,
                1
            ))
            .ToList();
        var (u, coefficients, rank) = Knots.JointBasis(inputs, 6, 5);
        // [ΔW_1 ΔW_2] is 6×10 with rank 3 + 2 = 5.
        Assert.Equal(5, rank);
        var basis = FromRowMajor(u, 6, rank);
        var gram = Multiply(Transpose(basis), basis);
        for (int i = 0; i < rank; i++)
        for (int j = 0; j < rank; j++)
            Assert.Equal(i == j ? 1 : 0, gram[i, j], 5);
        Assert.True(Relative(Multiply(basis, FromRowMajor(coefficients[0], rank, 5)), Delta1) < 1e-5);
        Assert.True(Relative(Multiply(basis, FromRowMajor(coefficients[1], rank, 5)), Delta2) < 1e-5);
    }

    /// <summary>
    /// The joint SVD of [ΔW_1 ΔW_2] taken densely here (singular values above 1e-5 of the largest): U [6, ρ] and the
    /// coefficients S·V_tᵀ [ρ, 5].
    /// </summary>
    private (double[,] U, double[][,] Coefficients) DenseJointSvd()
    {
        var concatenated = new double[6, 10];
        for (int i = 0; i < 6; i++)
        for (int j = 0; j < 5; j++)
            (concatenated[i, j], concatenated[i, j + 5]) = (Delta1[i, j], Delta2[i, j]);
        var (u, s, vt) = Svd(concatenated);
        int rank = s.Count(v => v > 1e-5 * s[0]);
        var coefficients = new double[2][,];
        for (int t = 0; t < 2; t++)
        {
            coefficients[t] = new double[rank, 5];
            for (int r = 0; r < rank; r++)
            for (int j = 0; j < 5; j++)
                coefficients[t][r, j] = s[r] * vt[r, t * 5 + j];
        }
        return (Columns(u, 0, rank), coefficients);
    }

    [Fact]
    public void Knots_ties_is_ties_on_the_coefficients_of_a_dense_joint_svd_and_knots_linear_the_weighted_sum()
    {
        var (u, coefficients) = DenseJointSvd();
        var merged = Merged("knots_ties", "ties", "--density", "0.5");
        Assert.Equal(5, merged.A.GetLength(0));
        // B = U and A = the merged coefficients; U's signs may differ from the test's SVD, the product cannot.
        var expected = Multiply(u, AdapterMergeTests.PeftTies(coefficients, [0.7, 0.3], 0.5));
        Assert.True(Relative(Product(merged), expected) < 1e-4);
        var weightedSum = Add(Scale(Delta1, 0.7), Delta2, 0.3);
        Assert.True(Relative(Product(merged), weightedSum) > 1e-2, "trimming changed nothing: the test cannot tell");
        Assert.True(Relative(Product(Merged("knots_linear", "linear")), weightedSum) < 1e-5);
    }

    [Fact]
    public void Knots_dare_ties_at_density_one_is_knots_ties_and_below_it_is_seeded()
    {
        var ties = Product(Merged("knots_ties", "ties-full", "--density", "1"));
        var full = Product(Merged("knots_dare_ties", "dare-full", "--density", "1"));
        Assert.True(Relative(full, ties) < 1e-6);
        var half = Product(Merged("knots_dare_ties", "dare-half", "--density", "0.5", "--seed", "3"));
        var again = Product(Merged("knots_dare_ties", "dare-again", "--density", "0.5", "--seed", "3"));
        var other = Product(Merged("knots_dare_ties", "dare-other", "--density", "0.5", "--seed", "4"));
        Assert.Equal(0, MaxDifference(half, again));
        Assert.True(Relative(half, other) > 1e-3);
        Assert.True(Relative(half, ties) > 1e-3);
    }

    [Fact]
    public void Svd_rank_truncates_the_merged_update_to_its_best_approximation()
    {
        var weightedSum = Add(Scale(Delta1, 0.7), Delta2, 0.3);
        var two = Merged("knots_linear", "rank-2", "--svd-rank", "2");
        Assert.Equal(2, two.A.GetLength(0));
        var (_, s, _) = Svd(weightedSum);
        double discarded = Math.Sqrt(s.Skip(2).Sum(v => v * v));
        Assert.True(discarded > 1e-2, "the weighted sum has rank 2: the test cannot tell");
        Assert.Equal(discarded, FrobeniusNorm(Add(weightedSum, Product(two), -1)), 4);
        // A rank at or above the joint rank keeps the merge exact.
        var wide = Merged("knots_linear", "rank-9", "--svd-rank", "9");
        Assert.Equal(5, wide.A.GetLength(0));
        Assert.True(Relative(Product(wide), weightedSum) < 1e-5);
    }

    [Fact]
    public void Bad_knots_options_are_refused_in_one_line()
    {
        string[] both = [_first, _second];
        TestAdapters.Refused(TestAdapters.Merge("knots_ties", _work["no-density"], both), "knots_ties needs --density");
        TestAdapters.Refused(
            TestAdapters.Merge("knots_dare_ties", _work["big-density"], both, "--density", "1.5"),
            "--density must be in (0, 1]"
        );
        TestAdapters.Refused(
            TestAdapters.Merge("knots_linear", _work["rank-0"], both, "--svd-rank", "0"),
            "--svd-rank must be at least 1"
        );
        TestAdapters.Refused(TestAdapters.Merge("knots", _work["unknown"], both), "'knots' is not one of");
    }
}
