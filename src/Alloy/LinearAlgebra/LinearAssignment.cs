namespace Alloy.LinearAlgebra;

/// <summary>
/// The linear assignment problem: a one-to-one matching of the rows of a cost matrix to distinct columns with the
/// least (or greatest) total, solved exactly by shortest augmenting paths with row and column potentials (the
/// Hungarian method in Jonker and Volgenant's form, O(n²·m) for n rows and m ≥ n columns). Permutation alignment
/// (weight and activation matching, MC-SMoE's expert neurons) calls it with similarity matrices. OR-Tools' solver takes
/// integer costs only, and scaling real similarities to integers would make the matching depend on the scale. Ties go
/// to the lowest column index, so the result depends on the matrix alone.
/// </summary>
public static class LinearAssignment
{
    /// <summary>
    /// The column of each row (<c>result[i]</c>) that minimises Σ cost[i, result[i]], or maximises it with
    /// <paramref name="maximize"/>. Needs rows ≤ columns and finite costs.
    /// </summary>
    public static int[] Solve(double[,] cost, bool maximize = false)
    {
        int n = cost.GetLength(0),
            m = cost.GetLength(1);
        if (n > m)
            throw new ArgumentException($"{n} rows cannot go to distinct columns of {m}", nameof(cost));
        foreach (double c in cost)
            if (!double.IsFinite(c))
                throw new ArgumentException("the costs must be finite", nameof(cost));
        double sign = maximize ? -1 : 1;

        // 1-based arrays, index 0 a virtual column/row from which each augmenting path starts.
        var rowPotential = new double[n + 1];
        var columnPotential = new double[m + 1];
        var rowOfColumn = new int[m + 1];
        var previous = new int[m + 1];
        var slack = new double[m + 1];
        var used = new bool[m + 1];
        for (int row = 1; row <= n; row++)
        {
            rowOfColumn[0] = row;
            int column = 0;
            Array.Fill(slack, double.PositiveInfinity);
            Array.Clear(used);
            // Grow a shortest-path tree from the free row until it reaches a free column.
            do
            {
                used[column] = true;
                int i = rowOfColumn[column],
                    next = -1;
                double delta = double.PositiveInfinity;
                for (int j = 1; j <= m; j++)
                {
                    if (used[j])
                        continue;
                    double reduced = sign * cost[i - 1, j - 1] - rowPotential[i] - columnPotential[j];
                    if (reduced < slack[j])
                    {
                        slack[j] = reduced;
                        previous[j] = column;
                    }
                    if (slack[j] < delta)
                    {
                        delta = slack[j];
                        next = j;
                    }
                }
                for (int j = 0; j <= m; j++)
                {
                    if (used[j])
                    {
                        rowPotential[rowOfColumn[j]] += delta;
                        columnPotential[j] -= delta;
                    }
                    else
                        slack[j] -= delta;
                }
                column = next;
            } while (rowOfColumn[column] != 0);
            // Flip the path's matched and unmatched edges.
            do
            {
                int before = previous[column];
                rowOfColumn[column] = rowOfColumn[before];
                column = before;
            } while (column != 0);
        }

        var result = new int[n];
        for (int j = 1; j <= m; j++)
            if (rowOfColumn[j] != 0)
                result[rowOfColumn[j] - 1] = j - 1;
        return result;
    }

    /// <summary>Σ cost[i, assignment[i]].</summary>
    public static double Total(double[,] cost, IReadOnlyList<int> assignment) =>
        assignment.Select((j, i) => cost[i, j]).Sum();
}
