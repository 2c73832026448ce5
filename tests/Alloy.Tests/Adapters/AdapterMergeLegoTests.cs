using Alloy.Adapters;
using Alloy.Tensors;
using Alloy.Tests.Support;
using static Alloy.Tests.Support.ReferenceLinearAlgebra;

namespace Alloy.Tests.Adapters;

/// <summary>
/// LoRA-LEGO (lora_lego) on hand-made adapters: units that obviously form k clusters merge into the clusters' means,
/// the norm calibration is checked against its formula written out here, the k-means is a seeded Lloyd fixed point.
/// </summary>
public sealed class AdapterMergeLegoTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    /// <summary>Columns of <paramref name="m"/> in the order given.</summary>
    private static double[,] PermuteColumns(double[,] m, int[] order)
    {
        var result = new double[m.GetLength(0), order.Length];
        for (int i = 0; i < m.GetLength(0); i++)
        for (int j = 0; j < order.Length; j++)
            result[i, j] = m[i, order[j]];
        return result;
    }

    [Fact]
    public void Nearly_identical_units_merge_into_their_means_rescaled_to_the_inputs_mean_norm()
    {
        // Two rank-2 adapters; the second is the first plus noise of 0.05, so unit i of each forms cluster i.
        var b1 = new double[,]
        {
            { 2, 0 },
            { 0, 0 },
            { 0, 1 },
            { 0, 0 },
        };
        var a1 = new double[,]
        {
            { 1, 0, 0 },
            { 0, 0, -1 },
        };
        var b2 = Add(b1, TestAdapters.Random(4, 2, 7), 0.05);
        var a2 = Add(a1, TestAdapters.Random(2, 3, 8), 0.05);
        var merged = TestAdapters.Merged(
            "lora_lego",
            _work["lego"],
            [TestAdapters.Write(_work["one"], b1, a1), TestAdapters.Write(_work["two"], b2, a2)]
        );
        Assert.Equal(2, merged.A.GetLength(0));
        var (meanB, meanA) = (Scale(Add(b1, b2), 0.5), Scale(Add(a1, a2), 0.5));
        // The calibration: each factor scaled so its Frobenius norm is the mean of the inputs'.
        double scaleB = (FrobeniusNorm(b1) + FrobeniusNorm(b2)) / 2 / FrobeniusNorm(meanB),
            scaleA = (FrobeniusNorm(a1) + FrobeniusNorm(a2)) / 2 / FrobeniusNorm(meanA);
        Assert.True(Math.Abs(scaleB - 1) > 1e-4, "the means lost no norm: the calibration is not tested");
        // The clusters' order depends on the seeding: either order of the ranks may come out.
        int[] order = MaxDifference(PermuteColumns(merged.B, [0, 1]), meanB) < 0.1 ? [0, 1] : [1, 0];
        Assert.True(MaxDifference(PermuteColumns(merged.B, order), Scale(meanB, scaleB)) < 1e-6);
        Assert.True(MaxDifference(Transpose(PermuteColumns(Transpose(merged.A), order)), Scale(meanA, scaleA)) < 1e-6);
    }

    [Fact]
    public void One_cluster_per_unit_gives_the_weighted_sum_times_the_calibration_of_both_factors()
    {
        var (b1, a1, b2, a2) = (
            TestAdapters.Random(5, 2, 1),
            TestAdapters.Random(2, 4, 2),
            TestAdapters.Random(5, 2, 3),
            TestAdapters.Random(2, 4, 4)
        );
        // Weights −0.5 and 2, the second at scale 2: units carry √|w·s| on both halves and the sign on A.
        var merged = TestAdapters.Merged(
            "lora_lego",
            _work["lego"],
            [TestAdapters.Write(_work["one"], b1, a1) + ":-0.5", TestAdapters.Write(_work["two"], b2, a2, 2) + ":2"],
            "--svd-rank",
            "4"
        );
        Assert.Equal(4, merged.A.GetLength(0));
        double[] roots = [Math.Sqrt(0.5), 2];
        double Calibration(double[,] x, double[,] y) =>
            (roots[0] * FrobeniusNorm(x) + roots[1] * FrobeniusNorm(y))
            / 2
            / Math.Sqrt(Math.Pow(roots[0] * FrobeniusNorm(x), 2) + Math.Pow(roots[1] * FrobeniusNorm(y), 2));
        var weightedSum = Add(Scale(Multiply(b1, a1), -0.5), Multiply(b2, a2), 4);
        var expected = Scale(weightedSum, Calibration(b1, b2) * Calibration(a1, a2));
        Assert.True(MaxDifference(Multiply(merged.B, merged.A), expected) / MaxAbs(expected) < 1e-5);
    }

    [Fact]
    public void The_same_seed_gives_the_same_bytes()
    {
        string[] inputs =
        [
            TestAdapters.Write(_work["one"], TestAdapters.Random(6, 3, 1), TestAdapters.Random(3, 5, 2)),
            TestAdapters.Write(_work["two"], TestAdapters.Random(6, 3, 3), TestAdapters.Random(3, 5, 4)),
        ];
        string Bytes(string output)
        {
            var merged = TestAdapters.Merged("lora_lego", _work[output], inputs, "--svd-rank", "2", "--seed", "5");
            Assert.Equal(2, merged.A.GetLength(0));
            return Convert.ToHexString(File.ReadAllBytes(Path.Combine(_work[output], "adapter_model.safetensors")));
        }
        Assert.Equal(Bytes("first"), Bytes("again"));
    }

    [Fact]
    public void K_means_finds_obvious_clusters_for_any_seed_and_ends_at_a_lloyd_fixed_point()
    {
        double[][] points =
        [
            [0, 0],
            [0.1, 0],
            [0, 0.1],
            [5, 5],
            [5.1, 5],
            [5, 5.1],
            [-5, 5],
            [-5.1, 5],
            [-5, 5.1],
        ];
        for (ulong seed = 0; seed < 5; seed++)
        {
            var (centroids, assignment) = LoraLego.KMeans(points, 3, RandomStream.For(seed, "test", 0));
            for (int group = 0; group < 3; group++)
            {
                Assert.Equal(assignment[3 * group], assignment[3 * group + 1]);
                Assert.Equal(assignment[3 * group], assignment[3 * group + 2]);
                var centroid = centroids[assignment[3 * group]];
                for (int d = 0; d < 2; d++)
                    Assert.Equal(points.Skip(3 * group).Take(3).Average(p => p[d]), centroid[d], 12);
            }
            Assert.Equal(3, assignment.Distinct().Count());
        }

        // Random points: every point is nearest its own centroid, which is the mean of its cluster.
        var random = new Random(11);
        var cloud = Enumerable.Range(0, 40).Select(_ => new[] { random.NextDouble(), random.NextDouble() }).ToArray();
        var (means, clusters) = LoraLego.KMeans(cloud, 4, RandomStream.For(2, "cloud", 0));
        double Distance(double[] x, double[] y) => Math.Pow(x[0] - y[0], 2) + Math.Pow(x[1] - y[1], 2);
        for (int i = 0; i < cloud.Length; i++)
            Assert.All(means, m => Assert.True(Distance(cloud[i], means[clusters[i]]) <= Distance(cloud[i], m)));
        for (int c = 0; c < 4; c++)
        {
            var members = cloud.Where((_, i) => clusters[i] == c).ToList();
            Assert.NotEmpty(members);
            Assert.Equal(members.Average(p => p[0]), means[c][0], 12);
            Assert.Equal(members.Average(p => p[1]), means[c][1], 12);
        }
    }

    [Fact]
    public void A_rank_outside_one_to_the_number_of_units_is_refused_in_one_line()
    {
        string[] inputs =
        [
            TestAdapters.Write(_work["one"], TestAdapters.Random(4, 2, 1), TestAdapters.Random(2, 3, 2)),
            TestAdapters.Write(_work["two"], TestAdapters.Random(4, 2, 3), TestAdapters.Random(2, 3, 4)),
        ];
        foreach (var rank in new[] { "0", "5" })
            TestAdapters.Refused(
                TestAdapters.Merge("lora_lego", _work["lego-" + rank], inputs, "--svd-rank", rank),
                $"lora_lego's rank (--svd-rank) must be from 1 to the module's 4 rank-1 units (got {rank})"
            );
    }
}
