using Alloy.Methods.DataAware;

namespace Alloy.Tests.Methods.DataAware;

/// <summary>
/// Fisher merging and RegMean, run as the executor runs them, against the worked fixtures of
/// ../shared/reference/methods.md §1.4, and RegMean against a least-squares fit found by gradient descent (not by the
/// closed form).
/// </summary>
public sealed class DataAwareMathTests
{
    private static readonly FisherMerging Fisher = new();
    private static readonly RegMean RegMean = new();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Fisher_merging_follows_each_models_confidence(bool normalize)
    {
        // θ1 = [1, 1], θ2 = [−1, −1], F1 = [1, 0.01], F2 = [0.01, 1] → [0.9802, −0.9802]; a plain average gives 0.
        double norm = Math.Sqrt(1 + 0.01 * 0.01);
        var merged = MethodTestKit.Run(
            Fisher,
            [
                [1, 1],
                [-1, -1],
            ],
            -1,
            globals: new Dictionary<string, double> { ["normalize_fishers"] = normalize ? 1 : 0 },
            statistics: [([1, 0.01f], 10, norm), ([0.01f, 1], 10, norm)]
        );
        Assert.Equal(0.9802, merged[0], 4);
        Assert.Equal(-0.9802, merged[1], 4);
    }

    [Fact]
    public void Normalising_fishers_stops_a_model_with_a_larger_fisher_from_outweighing_the_others()
    {
        // Model 2's Fisher is model 1's times 100: normalised, they count equally.
        float[][] thetas =
        [
            [2, 4],
            [6, 8],
        ];
        (float[], long, double)[] statistics = [([1, 2], 10, Math.Sqrt(5)), ([100, 200], 10, 100 * Math.Sqrt(5))];
        var normalised = MethodTestKit.Run(Fisher, thetas, -1, statistics: statistics);
        Assert.Equal([4f, 6f], normalised);
        var raw = MethodTestKit.Run(
            Fisher,
            thetas,
            -1,
            globals: new Dictionary<string, double> { ["normalize_fishers"] = 0 },
            statistics: statistics
        );
        Assert.Equal(2 + 4 * 100 / 101.0, raw[0], 4);
    }

    [Fact]
    public void Fisher_merging_with_equal_fishers_is_the_weighted_average_and_the_floor_keeps_zero_fishers_defined()
    {
        float[][] thetas =
        [
            [2, 4],
            [6, 8],
        ];
        var weights = new[]
        {
            new Dictionary<string, double> { ["weight"] = 1 },
            new() { ["weight"] = 3 },
        };
        Assert.Equal(
            [5f, 7f],
            MethodTestKit.Run(
                Fisher,
                thetas,
                -1,
                perModel: weights,
                statistics: [([0.5f, 0.5f], 1, 1), ([0.5f, 0.5f], 1, 1)]
            )
        );
        var zeros = MethodTestKit.Run(Fisher, thetas, -1, statistics: [([0, 0], 1, 1), ([0, 0], 1, 1)]);
        Assert.Equal([4f, 6f], zeros);
        var noFloor = MethodTestKit.Run(
            Fisher,
            thetas,
            -1,
            globals: new Dictionary<string, double> { ["fisher_floor"] = 0 },
            statistics: [([0, 1], 1, 1), ([0, 0], 1, 1)]
        );
        Assert.Equal([4f, 4f], noFloor);
    }

    [Fact]
    public void RegMean_on_the_scalar_fixture_uses_mean_normalised_grams()
    {
        // y = w·x; model 1 saw x ∈ {1, 2} (XᵀX = 5 over 2 tokens), model 2 saw x = 3 (9 over 1); w1 = 1, w2 = −1.
        // Mean-normalised: (2.5·1 − 9) / 11.5 = −0.5652 (raw sums would give −0.2857).
        var merged = MethodTestKit.Run(
            RegMean,
            [
                [1f],
                [-1f],
            ],
            -1,
            globals: new Dictionary<string, double> { ["alpha"] = 1 },
            shape: [1, 1],
            statistics: [([5f], 2, 0), ([9f], 1, 0)]
        );
        Assert.Equal(-0.5652, merged[0], 4);
    }

    [Fact]
    public void RegMean_with_identical_grams_is_the_average_and_tensors_without_grams_are_averaged()
    {
        float[] gram = [2, 0.5f, 0.5f, 1];
        float[][] weights =
        [
            [1, 2, 3, 4],
            [3, 2, 1, 0],
        ];
        var merged = MethodTestKit.Run(RegMean, weights, -1, shape: [2, 2], statistics: [(gram, 3, 0), (gram, 3, 0)]);
        Assert.Equal([2f, 2f, 2f, 2f], merged.Select(v => MathF.Round(v, 5)));
        var norm = MethodTestKit.Run(
            RegMean,
            weights,
            -1,
            perModel: [new Dictionary<string, double> { ["weight"] = 3 }, new Dictionary<string, double>()],
            shape: [4]
        );
        Assert.Equal([1.5f, 2f, 2.5f, 3f], norm);
    }

    [Fact]
    public void RegMean_with_alpha_one_is_the_least_squares_fit_of_every_models_outputs()
    {
        // Three models of a [2, 3] layer, each with its own inputs; the merged weight minimises
        // Σ_t (1/n_t) ‖X_t Wᵀ − X_t W_tᵀ‖², found here by plain gradient descent.
        var random = new Random(5);
        const int rows = 2,
            cols = 3;
        int[] counts = [5, 7, 4];
        var inputs = counts.Select(n => Matrix(random, n, cols)).ToArray();
        var weights = counts.Select(_ => Matrix(random, rows, cols)).ToArray();
        var merged = MethodTestKit.Run(
            RegMean,
            [.. weights.Select(ToFloats)],
            -1,
            globals: new Dictionary<string, double> { ["alpha"] = 1 },
            shape: [rows, cols],
            statistics: [.. inputs.Select((x, t) => (ToFloats(GramSum(x, counts[t], cols)), (long)counts[t], 0.0))]
        );

        var w = new double[rows * cols];
        for (int step = 0; step < 20_000; step++)
        {
            var gradient = new double[rows * cols];
            for (int t = 0; t < counts.Length; t++)
            for (int n = 0; n < counts[t]; n++)
            for (int r = 0; r < rows; r++)
            {
                double error = 0;
                for (int c = 0; c < cols; c++)
                    error += (w[r * cols + c] - weights[t][r * cols + c]) * inputs[t][n * cols + c];
                for (int c = 0; c < cols; c++)
                    gradient[r * cols + c] += 2 * error * inputs[t][n * cols + c] / counts[t];
            }
            for (int k = 0; k < w.Length; k++)
                w[k] -= 0.02 * gradient[k];
        }
        for (int k = 0; k < w.Length; k++)
            Assert.Equal(w[k], merged[k], 4);
    }

    [Fact]
    public void An_input_feature_no_model_saw_gets_a_ridge_and_a_finite_weight()
    {
        // The second feature is always 0: the summed Gram is singular.
        float[] gram = [1, 0, 0, 0];
        using var solve = new RegMeanSolve(1, 2, 1.0);
        solve.Add([1, 5], gram, 1);
        solve.Add([3, 7], gram, 1);
        var merged = new float[2];
        Assert.True(solve.Solve(merged) > 0);
        Assert.Equal(2, merged[0], 4);
        Assert.True(float.IsFinite(merged[1]));
    }

    private static double[] Matrix(Random random, int rows, int cols) =>
        [.. Enumerable.Range(0, rows * cols).Select(_ => random.NextDouble() * 2 - 1)];

    /// <summary>XᵀX summed over the rows, as <c>alloy regmean</c> stores it.</summary>
    private static double[] GramSum(double[] x, int n, int cols)
    {
        var g = new double[cols * cols];
        for (int r = 0; r < n; r++)
        for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++)
            g[i * cols + j] += x[r * cols + i] * x[r * cols + j];
        return g;
    }

    private static float[] ToFloats(double[] values) => [.. values.Select(v => (float)v)];

    /// <summary>
    /// Statistics that no model could have produced are refused in one line, never merged into a silently wrong model
    /// or looped on: a Gram with NaN, an indefinite "Gram" (no ridge helps), a negative Fisher, a NaN mask.
    /// </summary>
    [Fact]
    public void Impossible_statistics_are_refused_not_merged_or_looped_on()
    {
        float[][] weights =
        [
            [1, 2, 3, 4],
            [3, 2, 1, 0],
        ];
        var nan = Assert.Throws<AlloyException>(() =>
            MethodTestKit.Run(
                RegMean,
                weights,
                -1,
                shape: [2, 2],
                statistics: [([1, 0, 0, float.NaN], 1, 0), ([1, 0, 0, 1], 1, 0)]
            )
        );
        Assert.Contains("not a finite number", nan.Message);
        var indefinite = Assert.Throws<AlloyException>(() =>
            MethodTestKit.Run(
                RegMean,
                weights,
                -1,
                shape: [2, 2],
                statistics: [([1, 3, 3, 1], 1, 0), ([1, 3, 3, 1], 1, 0)]
            )
        );
        Assert.Contains("not positive semidefinite", indefinite.Message);
        var fisher = Assert.Throws<AlloyException>(() =>
            MethodTestKit.Run(
                Fisher,
                [
                    [1, 1],
                    [2, 2],
                ],
                -1,
                globals: new Dictionary<string, double> { ["normalize_fishers"] = 0 },
                statistics: [([1, -0.5f], 1, 1), ([1, 1], 1, 1)]
            )
        );
        Assert.Contains("a Fisher is a finite non-negative number", fisher.Message);
        var mask = Assert.Throws<AlloyException>(() =>
            MethodTestKit.Run(
                new ConcreteSubspace(),
                [
                    [0, 0],
                    [1, 1],
                ],
                0,
                statistics: [([1, float.NaN], 1, 1), ([1, float.NaN], 1, 1)]
            )
        );
        Assert.Contains("a mask value is a finite non-negative number", mask.Message);
    }
}
