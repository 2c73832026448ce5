using Alloy.Methods.DataAware;

namespace Alloy.Tests.Methods.DataAware;

/// <summary>
/// The math of Fisher merging and RegMean against the worked fixtures of ../shared/reference/methods.md §1.4, and
/// RegMean against a least-squares fit found by gradient descent (not by the closed form).
/// </summary>
public sealed class DataAwareMathTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Fisher_merging_follows_each_models_confidence(bool normalize)
    {
        // θ1 = [1, 1], θ2 = [−1, −1], F1 = [1, 0.01], F2 = [0.01, 1] → [0.9802, −0.9802]; a plain average gives 0.
        float[][] thetas =
        [
            [1, 1],
            [-1, -1],
        ];
        float[][] fishers =
        [
            [1, 0.01f],
            [0.01f, 1],
        ];
        double norm = Math.Sqrt(1 + 0.01 * 0.01);
        double[] c = [FisherAverage.Coefficient(1, norm, normalize), FisherAverage.Coefficient(1, norm, normalize)];
        var merged = new float[2];
        FisherAverage.Merge(thetas, fishers, c, 1e-6, merged);
        Assert.Equal(0.9802, merged[0], 4);
        Assert.Equal(-0.9802, merged[1], 4);
    }

    [Fact]
    public void Fisher_merging_with_equal_fishers_is_the_weighted_average_and_the_floor_keeps_zero_fishers_defined()
    {
        float[][] thetas =
        [
            [2, 4],
            [6, 8],
        ];
        var merged = new float[2];
        FisherAverage.Merge(
            thetas,
            [
                [0.5f, 0.5f],
                [0.5f, 0.5f],
            ],
            [1, 3],
            1e-6,
            merged
        );
        Assert.Equal([5f, 7f], merged);
        FisherAverage.Merge(
            thetas,
            [
                [0, 0],
                [0, 0],
            ],
            [1, 1],
            1e-6,
            merged
        );
        Assert.Equal([4f, 6f], merged);
    }

    [Fact]
    public void RegMean_on_the_scalar_fixture_uses_mean_normalised_grams()
    {
        // y = w·x; model 1 saw x ∈ {1, 2} (G = (1 + 4) / 2 = 2.5), model 2 saw x = 3 (G = 9); w1 = 1, w2 = −1.
        var merged = new float[1];
        RegMeanSolve.Merge(
            [
                [1f],
                [-1f],
            ],
            [
                [2.5],
                [9.0],
            ],
            1,
            1,
            1.0,
            merged
        );
        Assert.Equal(-0.5652, merged[0], 4);
    }

    [Fact]
    public void RegMean_with_identical_grams_is_the_average()
    {
        double[] gram = [2, 0.5, 0.5, 1];
        var merged = new float[4];
        RegMeanSolve.Merge(
            [
                [1, 2, 3, 4],
                [3, 2, 1, 0],
            ],
            [gram, gram],
            2,
            2,
            0.95,
            merged
        );
        Assert.Equal([2f, 2f, 2f, 2f], merged.Select(v => MathF.Round(v, 5)));
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
        var grams = inputs.Select((x, t) => Gram(x, counts[t], cols)).ToArray();
        var merged = new float[rows * cols];
        Assert.Equal(0, RegMeanSolve.Merge([.. weights.Select(ToFloats)], grams, rows, cols, 1.0, merged));

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
        double[] gram = [1, 0, 0, 0];
        var merged = new float[2];
        double ridge = RegMeanSolve.Merge(
            [
                [1, 5],
                [3, 7],
            ],
            [gram, gram],
            1,
            2,
            1.0,
            merged
        );
        Assert.True(ridge > 0);
        Assert.Equal(2, merged[0], 4);
        Assert.True(float.IsFinite(merged[1]));
    }

    private static double[] Matrix(Random random, int rows, int cols) =>
        [.. Enumerable.Range(0, rows * cols).Select(_ => random.NextDouble() * 2 - 1)];

    private static double[] Gram(double[] x, int n, int cols)
    {
        var g = new double[cols * cols];
        for (int r = 0; r < n; r++)
        for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++)
            g[i * cols + j] += x[r * cols + i] * x[r * cols + j] / n;
        return g;
    }

    private static float[] ToFloats(double[] values) => [.. values.Select(v => (float)v)];
}
