using Alloy.LinearAlgebra;
using Alloy.Tensors;

namespace Alloy.Tests.LinearAlgebra;

/// <summary>
/// <see cref="LinearAssignment"/> against brute force over every matching, on every small shape and on random
/// matrices with and without ties, minimising and maximising.
/// </summary>
public sealed class LinearAssignmentTests
{
    private static double[,] Random(int rows, int columns, int seed, int levels = 0)
    {
        var stream = RandomStream.For((ulong)seed, "assignment", rows * 100 + columns);
        var cost = new double[rows, columns];
        for (int i = 0; i < rows; i++)
        for (int j = 0; j < columns; j++)
        {
            double u = stream.Uniform(i * columns + j);
            // With levels, few distinct values: many optimal matchings, the case that trips tie handling.
            cost[i, j] = levels > 0 ? Math.Floor(u * levels) : 10 * u - 5;
        }
        return cost;
    }

    /// <summary>The best total over every injective map of the rows into the columns.</summary>
    private static double BruteForce(double[,] cost, bool maximize)
    {
        int n = cost.GetLength(0),
            m = cost.GetLength(1);
        double best = maximize ? double.NegativeInfinity : double.PositiveInfinity;
        var used = new bool[m];
        void Search(int row, double total)
        {
            if (row == n)
            {
                best = maximize ? Math.Max(best, total) : Math.Min(best, total);
                return;
            }
            for (int j = 0; j < m; j++)
            {
                if (used[j])
                    continue;
                used[j] = true;
                Search(row + 1, total + cost[row, j]);
                used[j] = false;
            }
        }
        Search(0, 0);
        return best;
    }

    private static void AssertOptimal(double[,] cost, bool maximize)
    {
        var assignment = LinearAssignment.Solve(cost, maximize);
        Assert.Equal(cost.GetLength(0), assignment.Distinct().Count());
        Assert.All(assignment, j => Assert.InRange(j, 0, cost.GetLength(1) - 1));
        Assert.Equal(BruteForce(cost, maximize), LinearAssignment.Total(cost, assignment), 9);
    }

    public static TheoryData<int, int> SmallShapes()
    {
        var shapes = new TheoryData<int, int>();
        for (int n = 1; n <= 6; n++)
        for (int m = n; m <= 7; m++)
            shapes.Add(n, m);
        return shapes;
    }

    [Theory]
    [MemberData(nameof(SmallShapes))]
    public void Every_small_shape_matches_brute_force(int rows, int columns)
    {
        for (int seed = 0; seed < 12; seed++)
        {
            AssertOptimal(Random(rows, columns, seed), maximize: false);
            AssertOptimal(Random(rows, columns, seed), maximize: true);
            AssertOptimal(Random(rows, columns, seed, levels: 3), maximize: seed % 2 == 0);
        }
    }

    [Fact]
    public void Random_eight_by_eight_matrices_match_brute_force()
    {
        for (int seed = 0; seed < 20; seed++)
            AssertOptimal(Random(8, 8, 100 + seed, levels: seed % 3 == 0 ? 4 : 0), maximize: seed % 2 == 1);
    }

    [Fact]
    public void A_shuffled_identity_is_recovered_and_large_problems_are_locally_optimal()
    {
        // A permuted copy's similarity with the original peaks on the permutation: matching finds it back.
        const int N = 200;
        var permutation = RandomStream.For(3, "perm", 0).Permutation(N);
        var features = Random(N, 16, 7);
        var similarity = new double[N, N];
        for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
        for (int k = 0; k < 16; k++)
            similarity[i, j] += features[i, k] * features[permutation[j], k];
        var found = LinearAssignment.Solve(similarity, maximize: true);
        for (int i = 0; i < N; i++)
            Assert.Equal(i, permutation[found[i]]);

        // No exchange of two rows' columns improves an optimal matching.
        var cost = Random(120, 150, 11);
        var assignment = LinearAssignment.Solve(cost);
        for (int a = 0; a < 120; a++)
        for (int b = a + 1; b < 120; b++)
        {
            double now = cost[a, assignment[a]] + cost[b, assignment[b]];
            double swapped = cost[a, assignment[b]] + cost[b, assignment[a]];
            Assert.True(swapped >= now - 1e-9, $"swapping rows {a} and {b} improves the matching");
        }
    }

    [Fact]
    public void More_rows_than_columns_and_non_finite_costs_are_refused()
    {
        Assert.Throws<ArgumentException>(() => LinearAssignment.Solve(new double[3, 2]));
        var bad = new double[2, 2];
        bad[1, 0] = double.NaN;
        Assert.Throws<ArgumentException>(() => LinearAssignment.Solve(bad));
    }
}
