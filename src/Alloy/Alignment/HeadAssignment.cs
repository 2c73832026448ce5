using Alloy.LinearAlgebra;

namespace Alloy.Alignment;

/// <summary>
/// The best relabelling of a layer's attention heads under grouped-query sharing, solved exactly in one step: key/value
/// head b may go to place a together with its whole group of query heads, which may be reordered inside the group.
/// Each pair (a, b) is worth its key/value similarity plus the best matching of group b's query heads to group a's (a
/// small assignment problem); the key/value permutation is then an assignment problem over those values.
/// </summary>
public static class HeadAssignment
{
    /// <param name="keyValue">Similarity of reference key/value head a to model head b (K × K).</param>
    /// <param name="heads">Similarity of reference query head i to model head j (H × H, H = K·g).</param>
    /// <returns>
    /// The key/value permutation, each place's query permutation inside its group, and the total similarity.
    /// </returns>
    public static (int[] KeyValue, int[][] Query, double Total) Solve(double[,] keyValue, double[,] heads, int g)
    {
        int k = keyValue.GetLength(0);
        var inner = new int[k, k][];
        var cost = new double[k, k];
        for (int a = 0; a < k; a++)
        for (int b = 0; b < k; b++)
        {
            var block = Block(heads, a, b, g);
            inner[a, b] = LinearAssignment.Solve(block, maximize: true);
            cost[a, b] = keyValue[a, b] + LinearAssignment.Total(block, inner[a, b]);
        }
        var outer = LinearAssignment.Solve(cost, maximize: true);
        var query = Enumerable.Range(0, k).Select(a => inner[a, outer[a]]).ToArray();
        return (outer, query, LinearAssignment.Total(cost, outer));
    }

    /// <summary>The similarity of a given labelling (what <see cref="Solve"/> maximises).</summary>
    public static double Value(double[,] keyValue, double[,] heads, int g, int[] keyValuePerm, int[][] query)
    {
        double total = 0;
        for (int a = 0; a < keyValuePerm.Length; a++)
        {
            int b = keyValuePerm[a];
            total += keyValue[a, b];
            for (int j = 0; j < g; j++)
                total += heads[a * g + j, b * g + query[a][j]];
        }
        return total;
    }

    private static double[,] Block(double[,] heads, int a, int b, int g)
    {
        var block = new double[g, g];
        for (int i = 0; i < g; i++)
        for (int j = 0; j < g; j++)
            block[i, j] = heads[a * g + i, b * g + j];
        return block;
    }
}
