using Alloy.Methods;
using Alloy.Methods.TaskVectors;
using Alloy.Tensors;
using CsCheck;

namespace Alloy.Tests.Methods.TaskVectors;

/// <summary>
/// The task-vector primitives on hand-checkable values (worked by hand from mergekit's rules and the papers' three-task
/// example) and against the reference.
/// </summary>
public sealed class TaskVectorPrimitiveTests
{
    /// <summary>Values with many exact ties, as bf16 task vectors have.</summary>
    private static float[] Tied(int n, int seed)
    {
        var random = RandomStream.For((ulong)seed, "tied", 0);
        return Enumerable.Range(0, n).Select(j => (float)(((int)(random.Uniform(j) * 9) - 4) * 0.25)).ToArray();
    }

    private static bool[] Kept(float[] values) => values.Select(v => v != 0).ToArray();

    [Fact]
    public void Top_k_keeps_exactly_k_with_ties_to_the_lower_index()
    {
        foreach (int seed in new[] { 1, 2, 3 })
        {
            var values = Tied(1000, seed);
            foreach (long k in new long[] { 1, 7, 250, 500, 999 })
            {
                var kept = values.ToArray();
                MagnitudeCut.Apply(kept, MagnitudeCut.TopK(values, k));
                // Compare positions, not values: zero entries may be "kept" as zeros.
                var expected = TaskVectorReference.TopK(values, k);
                Assert.Equal(k, CountKept(values, MagnitudeCut.TopK(values, k)));
                Assert.Equal(expected.Select((keep, j) => keep ? values[j] : 0f), kept);
            }
        }
    }

    private static long CountKept(float[] values, MagnitudeCut cut)
    {
        long ties = cut.TiesKept,
            kept = 0;
        foreach (float v in values)
        {
            uint key = MagnitudeCut.KeyOf(v);
            if (key > cut.Key || key == cut.Key && ties-- > 0)
                kept++;
        }
        return kept;
    }

    [Fact]
    public void Top_k_of_nothing_and_everything()
    {
        float[] values = [3, -1, 2];
        var none = values.ToArray();
        MagnitudeCut.Apply(none, MagnitudeCut.TopK(values, 0));
        Assert.Equal([0f, 0f, 0f], none);
        var all = values.ToArray();
        MagnitudeCut.Apply(all, MagnitudeCut.TopK(values, 3));
        Assert.Equal(values, all);
        Assert.Equal(MagnitudeCut.KeepAll, MagnitudeCut.TopK(values, 10));
    }

    [Fact]
    public void Histogram_gives_the_same_cut_for_any_split_into_chunks()
    {
        var values = Tied(5000, 4).Select((v, j) => v * (1 + j % 7)).ToArray();
        const long k = 1234;
        var whole = MagnitudeCut.TopK(values, k);
        using var merged = new MagnitudeHistogram();
        var parts = new[] { values[..1000], values[1000..1001], values[1001..4000], values[4000..] };
        foreach (var part in parts.Reverse())
        {
            using var local = new MagnitudeHistogram();
            local.AddCoarse(part);
            merged.Add(local);
        }
        int bucket = merged.FindBucket(k, out long above);
        foreach (var part in parts)
            merged.AddFine(part, bucket);
        var cut = merged.FindCut(bucket, above, k, out long equal);
        Assert.Equal(whole, cut);
        Assert.Equal(values.Count(v => MagnitudeCut.KeyOf(v) == cut.Key), equal);
        // The threshold is the k-th largest magnitude.
        Assert.Equal(values.Select(Math.Abs).OrderDescending().ElementAt((int)k - 1), cut.Threshold);
    }

    [Fact]
    public void Magnitude_trim_matches_the_worked_examples()
    {
        // Worked by hand from mergekit's rules: δa = [1,−2,3,0] → [0,−2,3,0]; δb = [2,1,−1.5,0] → [2,0,−1.5,0] at
        // density 0.5.
        float[] a = [1, -2, 3, 0],
            b = [2, 1, -1.5f, 0];
        Sparsify.Magnitude(a, 0.5);
        Sparsify.Magnitude(b, 0.5);
        Assert.Equal([0f, -2f, 3f, 0f], a);
        Assert.Equal([2f, 0f, -1.5f, 0f], b);
        // k = int(0.29·100) = 28 in double arithmetic, as Python computes it.
        Assert.Equal(28, Sparsify.KeepCount(0.29, 100));
    }

    [Fact]
    public void Breadcrumbs_keeps_the_band_below_the_outliers()
    {
        // Worked by hand: δ = 1..10, density 0.5, γ 0.1: target 5, n_top 1, n_bot 4 → 5, 6, 7, 8, 9.
        var delta = Enumerable.Range(1, 10).Select(v => (float)v).ToArray();
        Sparsify.MagnitudeOutliers(delta, 0.5, 0.1);
        Assert.Equal([0f, 0, 0, 0, 5, 6, 7, 8, 9, 0], delta);
    }

    [Fact]
    public void Breadcrumbs_with_no_outliers_to_drop_keeps_the_largest_where_mergekit_keeps_nothing()
    {
        // γ·n < 1: mergekit's slice [n_bot:-0] is empty and zeroes the task vector; Alloy keeps ranks [n_bot, n).
        var delta = Enumerable.Range(1, 10).Select(v => (float)v).ToArray();
        Sparsify.MagnitudeOutliers(delta, 0.5, 0.05);
        Assert.Equal([0f, 0, 0, 0, 0, 6, 7, 8, 9, 10], delta);
        var zeroGamma = Enumerable.Range(1, 10).Select(v => (float)-v).ToArray();
        Sparsify.MagnitudeOutliers(zeroGamma, 0.3, 0);
        Assert.Equal([0f, 0, 0, 0, 0, 0, 0, -8, -9, -10], zeroGamma);
    }

    [Fact]
    public void Breadcrumbs_drops_fewer_outliers_when_density_and_gamma_exceed_the_tensor()
    {
        // density 0.9, γ 0.3 on 10: target 9, n_top 3, n_bot −2 → n_top 1, n_bot 0: only the largest goes.
        var delta = Enumerable.Range(1, 10).Select(v => (float)v).ToArray();
        Sparsify.MagnitudeOutliers(delta, 0.9, 0.3);
        Assert.Equal([1f, 2, 3, 4, 5, 6, 7, 8, 9, 0], delta);
    }

    [Fact]
    public void Breadcrumbs_matches_the_reference_on_tied_values()
    {
        foreach (var (density, gamma) in new[] { (0.5, 0.01), (0.2, 0.1), (0.95, 0.1), (0.0, 0.5) })
        {
            var values = Tied(777, 5);
            var delta = values.ToArray();
            Sparsify.MagnitudeOutliers(delta, density, gamma);
            var keep = TaskVectorReference.Breadcrumbs(values, density, gamma);
            Assert.Equal(values.Select((v, j) => keep[j] ? v : 0f), delta);
            Assert.Equal((int)(density * 777), keep.Count(k => k));
        }
    }

    [Fact]
    public void L1_rescale_matches_the_worked_example_and_leaves_tiny_norms_alone()
    {
        // Worked by hand: [1,2,3,4] masked to [1,0,3,0] → ×10/4 → [2.5,0,7.5,0] (DARE's 1/density would give
        // [2,0,6,0]).
        float[] masked = [1, 0, 3, 0];
        Sparsify.RescaleL1(masked, Sparsify.L1Norm([1, 2, 3, 4]));
        Assert.Equal([2.5f, 0, 7.5f, 0], masked);
        float[] tiny = [1e-8f, 0];
        Sparsify.RescaleL1(tiny, 1);
        Assert.Equal([1e-8f, 0], tiny);
    }

    [Fact]
    public void Della_thresholds_rise_with_magnitude_rank()
    {
        // Worked by hand: one row of 5, density 0.5, ε 0.1 → 0.40, 0.45, 0.50, 0.55, 0.60 by ascending magnitude.
        float[] row = [0.3f, -0.1f, 0.5f, 0.2f, -0.4f];
        var order = new int[5];
        Sparsify.MagnitudeOrder(row, order);
        Assert.Equal([1, 3, 0, 4, 2], order);
        var thresholds = new float[5];
        Sparsify.DellaRankThresholds(5, 0.5, 0.1, thresholds);
        Assert.Equal(new[] { 0.40, 0.45, 0.50, 0.55, 0.60 }.Select(Sparsify.UniformThreshold), thresholds);
        // Equal magnitudes: the lower index ranks higher. One entry gets the density itself.
        Sparsify.MagnitudeOrder([1f, -1f, 1f], order.AsSpan(0, 3));
        Assert.Equal([2, 1, 0], order[..3]);
        Sparsify.DellaRankThresholds(1, 0.3, 0.1, thresholds);
        Assert.Equal(Sparsify.UniformThreshold(0.3), thresholds[0]);
    }

    [Fact]
    public void Della_row_decision_equals_comparing_each_uniform_with_its_rank_probability()
    {
        // The decision in rank order with float thresholds must keep exactly the entries whose uniform lies below the
        // ranked probability, also for uniforms on either side of an entry's threshold, with ties, zeros, tiny and huge
        // magnitudes.
        foreach (int n in new[] { 1, 2, 3, 8, 65, 1000, 2051, 5632 })
        foreach (var (density, epsilon) in new[] { (0.5, 0.1), (0.3, 0.29), (0.9, 0.05) })
        {
            var random = RandomStream.For((ulong)n, "della-row", (int)(density * 100));
            var values = Enumerable
                .Range(0, n)
                .Select(j =>
                    (j % 7) switch
                    {
                        0 => 0f,
                        1 => random.Uniform(3 * j) * 1e-30f,
                        2 => (random.Uniform(3 * j) - 0.5f) * 1e30f,
                        3 or 4 => ((int)(random.Uniform(3 * j) * 5) - 2) * 0.125f, // many ties
                        _ => (float)(
                            (random.Uniform(3 * j) - 0.5) * Math.Pow(2, (int)(random.Uniform(3 * j + 1) * 40) - 20)
                        ),
                    }
                )
                .ToArray();
            var probability = TaskVectorReference.DellaProbabilities(values, [n], density, epsilon);
            var uniform = Enumerable
                .Range(0, n)
                .Select(j =>
                    (j % 3) switch
                    {
                        0 => random.Uniform(3 * j + 2),
                        // On the threshold itself (dropped) and one grid step below it (kept).
                        1 => Sparsify.UniformThreshold(probability[j]),
                        _ => Math.Max(0, Sparsify.UniformThreshold(probability[j]) - 1f / (1 << 24)),
                    }
                )
                .ToArray();
            var row = values.ToArray();
            var thresholds = new float[n];
            Sparsify.DellaRankThresholds(n, density, epsilon, thresholds);
            Sparsify.DellaKeep(row, uniform, thresholds, new int[n]);
            var expected = values.Select((v, j) => uniform[j] < probability[j] ? v : 0).ToArray();
            Assert.Equal(expected, row);
        }
    }

    [Fact]
    public void Magnitude_order_is_a_sort_with_the_tie_rule()
    {
        foreach (int n in new[] { 1, 2, 7, 300, 5000 })
        {
            var values = Tied(n, n).Select((v, j) => j % 5 == 0 ? v * 1e-30f : v * (1 + j % 3)).ToArray();
            var order = new int[n];
            Sparsify.MagnitudeOrder(values, order);
            Assert.Equal(TaskVectorReference.Descending(values).Reverse(), order);
        }
    }

    [Fact]
    public void The_float_uniform_threshold_decides_as_the_double_probability()
    {
        foreach (double p in new[] { 0.0, 1e-9, 0.1, 0.3, 0.35, 0.5, 2.0 / 3, 0.9999999, 1.0 })
        {
            float threshold = Sparsify.UniformThreshold(p);
            long center = (long)(p * (1 << 24));
            for (long k = Math.Max(0, center - 3); k <= Math.Min((1 << 24) - 1, center + 3); k++)
            {
                float u = k / (float)(1 << 24);
                Assert.True(u < threshold == u < p, $"p = {p}, u = {k}/2^24");
            }
        }
    }

    [Fact]
    public void Sign_election_and_disjoint_merge_match_the_toolkits_on_the_three_task_fixture()
    {
        // The papers' three-task example: trimmed τ1, τ2, τ3 (TIES keep 50 %).
        float[][] trimmed =
        [
            [0.5f, 0, 0, 0, 0.8f, -0.3f],
            [-0.4f, 0, 0.3f, 0, 0.6f, 0],
            [0, 0.4f, 0, 0, -0.7f, 0.25f],
        ];
        float[] Merge(double[] w, bool unweighted, DisjointDivisor divisor)
        {
            var votes = unweighted ? [1, 1, 1] : w;
            var output = new float[6];
            SignConsensus.Elect(trimmed, votes, byCount: false, output);
            SignConsensus.DisjointMerge(trimmed, w, votes, output, output, divisor);
            return output;
        }
        void Near(double[] expected, float[] actual) => Assert.Equal(expected, actual.Select(v => Math.Round(v, 4)));

        Near([0.5, 0.4, 0.3, 0, 0.7, -0.3], Merge([1, 1, 1], false, DisjointDivisor.AgreeingWeights));
        Near([0.5, 0.4, 0.3, 0, 1.4, -0.3], Merge([1, 1, 1], false, DisjointDivisor.None));
        Near([0.5, 0.4, 0.3, 0, 0.7333, -0.3], Merge([2, 1, 1], false, DisjointDivisor.AgreeingWeights)); // mergekit
        Near([1.0, 0.4, 0.3, 0, 1.1, -0.6], Merge([2, 1, 1], true, DisjointDivisor.AgreeingCount)); // PEFT
        // weighted vote flips the last
        Near([0.5, 0.4, 0.3, 0, 0.7, 0.25], Merge([1, 1, 2], false, DisjointDivisor.AgreeingWeights));
        Near([0.5, 0.8, 0.3, 0, 0.7, -0.3], Merge([1, 1, 2], true, DisjointDivisor.AgreeingCount));
    }

    [Fact]
    public void Vectorized_election_and_merge_compute_each_entry_exactly_as_the_entrywise_rule()
    {
        // bf16-like values with zeros and exact cancellations, over lengths that leave vector tails.
        foreach (int n in new[] { 1, 7, 8, 1029, 2048 + 5 })
        {
            float[][] deltas =
            [
                .. Enumerable
                    .Range(0, 3)
                    .Select(m => Tied(n, 10 + m).Select((v, j) => v * (1 + m) * (j % 11 == 0 ? 0 : 1)).ToArray()),
            ];
            double[] weights = [0.7, -0.2, 1.3],
                votes = [1, 1, 1];
            foreach (bool byCount in new[] { false, true })
            foreach (
                var divisor in new[]
                {
                    DisjointDivisor.None,
                    DisjointDivisor.AgreeingWeights,
                    DisjointDivisor.AgreeingCount,
                }
            )
            {
                var actual = new float[n];
                SignConsensus.Elect(deltas, weights, byCount, actual);
                SignConsensus.DisjointMerge(deltas, weights, votes, actual, actual, divisor);
                var expected = new float[n];
                for (int j = 0; j < n; j++)
                {
                    double vote = 0;
                    for (int i = 0; i < 3; i++)
                    {
                        double v = weights[i] * deltas[i][j];
                        vote += byCount ? Math.Sign(v) : v;
                    }
                    float sign = vote >= 0 ? 1 : -1;
                    double sum = 0,
                        den = 0;
                    for (int i = 0; i < 3; i++)
                    {
                        if (!(votes[i] * deltas[i][j] * sign > 0))
                            continue;
                        sum += weights[i] * deltas[i][j];
                        den += divisor == DisjointDivisor.AgreeingCount ? 1 : weights[i];
                    }
                    expected[j] = (float)(divisor == DisjointDivisor.None || den == 0 ? sum : sum / den);
                }
                Assert.Equal(expected, actual);
            }
        }
    }

    [Fact]
    public void Count_election_follows_the_majority_of_signs_not_the_mass()
    {
        // One large positive against two small negatives: the sum says +, the count says −.
        float[][] deltas =
        [
            [5f],
            [-1f],
            [-1f],
        ];
        var signs = new float[1];
        SignConsensus.Elect(deltas, [1, 1, 1], byCount: false, signs);
        Assert.Equal(1f, signs[0]);
        SignConsensus.Elect(deltas, [1, 1, 1], byCount: true, signs);
        Assert.Equal(-1f, signs[0]);
        // A tie (and an all-zero entry) elects +.
        SignConsensus.Elect(
            [
                [1f, 0f],
                [-1f, 0f],
            ],
            [1, 1],
            byCount: true,
            signs = new float[2]
        );
        Assert.Equal([1f, 1f], signs);
    }

    [Fact]
    public void Disjoint_merge_divides_an_empty_agreement_by_one()
    {
        var merged = new float[] { 1 };
        SignConsensus.DisjointMerge(
            [
                [0f],
                [0f],
            ],
            [1, 1],
            [1, 1],
            merged,
            merged,
            DisjointDivisor.AgreeingWeights
        );
        Assert.Equal([0f], merged);
    }

    [Fact]
    public void Tall_masks_and_consensus_match_the_fixture()
    {
        // The papers' three-task example, λ = 0.6, τ_MTL = Σ τ: m1 = [1,1,1,0,1,1], m2 = [1,0,1,1,1,1], m3 =
        // [1,1,0,0,0,1].
        float[][] tasks =
        [
            [0.5f, -0.2f, 0.1f, 0, 0.8f, -0.3f],
            [-0.4f, -0.1f, 0.3f, 0.2f, 0.6f, 0.05f],
            [0.1f, 0.4f, -0.2f, -0.05f, -0.7f, 0.25f],
        ];
        var zero = new float[6];
        var mtl = Enumerable.Range(0, 6).Select(j => tasks.Sum(t => t[j])).ToArray();
        var counts = new float[6];
        foreach (var t in tasks)
            TallMasks.AddMask(t, zero, mtl, 0.6, counts);
        Assert.Equal([3f, 2, 2, 1, 2, 3], counts);
        var consensus = mtl.ToArray();
        TallMasks.KeepConsensus(consensus, counts, 2);
        Assert.Equal(new[] { mtl[0], mtl[1], mtl[2], 0, mtl[4], mtl[5] }, consensus);
    }

    [Fact]
    public void Lines_scales_linearly_in_depth_and_uses_alpha_outside_the_layers()
    {
        Assert.Equal(0.5, LayerScaling.Factor(new TensorPosition(0, false, 5), 0.5, 0.4));
        Assert.Equal(0.7, LayerScaling.Factor(new TensorPosition(2, false, 5), 0.5, 0.4), 12);
        Assert.Equal(0.9, LayerScaling.Factor(new TensorPosition(4, false, 5), 0.5, 0.4), 12);
        Assert.Equal(0.9, LayerScaling.Factor(new TensorPosition(0, false, 1), 0.5, 0.4), 12);
        Assert.Equal(0.5, LayerScaling.Factor(new TensorPosition(null, true, 5), 0.5, 0.4));
        Assert.Equal(0.5, LayerScaling.Factor(new TensorPosition(null, false, 5), 0.5, 0.4));
        Assert.Equal(0.5, LayerScaling.Factor(TensorPosition.Unknown, 0.5, 0.4));
    }

    [Fact]
    public void A_cut_search_over_pieces_in_any_order_finds_every_cut_of_a_population()
    {
        var values = Tied(5000, 5).Select((v, j) => v * (1 + j % 5)).ToArray();
        long[] keep = [4000, 37, 1];
        using var search = new CutSearch(values.Length, keep);
        var pieces = new[] { values[..1234], values[1234..1235], values[1235..] };
        while (search.Counting)
        {
            // Each piece on its own "thread": one tally each, added in reverse order.
            foreach (var piece in pieces.Reverse())
            {
                using var tally = search.NewTally();
                search.Count(tally, piece);
                search.Add(tally);
            }
            search.EndPass();
        }
        for (int w = 0; w < keep.Length; w++)
        {
            var expected = MagnitudeCut.TopK(values, keep[w]);
            Assert.Equal(expected, search.Cuts[w]);
            Assert.Equal(
                expected.TiesKept < values.Count(v => MagnitudeCut.KeyOf(v) == expected.Key),
                search.SplitsTies(w)
            );
        }
        // Trivial cuts need no counting at all.
        using var trivial = new CutSearch(10, [0, 10, 12]);
        Assert.False(trivial.Counting);
        Assert.Equal([MagnitudeCut.KeepNone, MagnitudeCut.KeepAll, MagnitudeCut.KeepAll], trivial.Cuts);
    }

    [Fact]
    public void A_band_applied_piece_by_piece_in_order_equals_the_band_over_the_whole()
    {
        var values = Tied(3001, 6);
        var (keepCount, dropCount) = Sparsify.OutlierBand(0.5, 0.1, values.Length);
        var keep = MagnitudeCut.TopK(values, keepCount);
        var drop = MagnitudeCut.TopK(values, dropCount);
        var whole = values.ToArray();
        MagnitudeCut.ApplyBand(whole, keep, drop);
        var pieces = values.ToArray();
        var (k, d) = (keep, drop);
        foreach (var (start, length) in new[] { (0, 5), (5, 1000), (1005, 1), (1006, 1995) })
            MagnitudeCut.ApplyBand(pieces.AsSpan(start, length), ref k, ref d);
        Assert.Equal(whole, pieces);
        // The band keeps ⌊0.5·n⌋ entries; zeros (a ninth of them) are among the smallest, dropped.
        Assert.Equal((long)(0.5 * values.Length), whole.Count(v => v != 0));
    }

    [Fact]
    public void Key_counts_and_magnitude_sums_match_plain_loops()
    {
        Gen.Float[-3, 3]
            .Array[0, 90]
            .Sample(values =>
            {
                for (int i = 0; i < values.Length; i += 3)
                    values[i] = MathF.Round(values[i]);
                uint key = MagnitudeCut.KeyOf(1f);
                Assert.Equal(values.Count(v => Math.Abs(v) == 1f), MagnitudeCut.CountKey(values, key));
                double inside = values.Where(v => Math.Abs(v) > 0.5f && Math.Abs(v) < 2f).Sum(v => (double)Math.Abs(v));
                Assert.Equal(
                    inside,
                    MagnitudeCut.MagnitudeSum(values, MagnitudeCut.KeyOf(0.5f), MagnitudeCut.KeyOf(2f)),
                    1e-12
                );
                Assert.Equal(values.Sum(v => (double)Math.Abs(v)), Sparsify.L1Norm(values), 1e-12);
            });
    }

    [Fact]
    public void Della_on_runs_of_whole_rows_draws_as_over_the_whole_tensor()
    {
        long[] shape = [6, 5, 3];
        var random = RandomStream.For(3, "values", 0);
        var values = Enumerable.Range(0, 90).Select(j => (float)random.Normal(j)).ToArray();
        var whole = values.ToArray();
        Sparsify.Della(whole, shape, 0.5, 0.2, RandomStream.For(7, "t", 2));
        long row = Sparsify.DellaRowLength(shape);
        Assert.Equal(15, row);
        var runs = values.ToArray();
        foreach (var (start, rows) in new[] { (0, 1), (15, 4), (75, 1) })
            Sparsify.Della(runs.AsSpan(start, rows * (int)row), shape, 0.5, 0.2, RandomStream.For(7, "t", 2), start);
        Assert.Equal(whole, runs);
        Assert.Equal(1, Sparsify.DellaRowLength([]));
        Assert.Equal(7, Sparsify.DellaRowLength([7]));
    }
}
