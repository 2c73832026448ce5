using Alloy.Moe;
using Alloy.Tensors;

namespace Alloy.Tests.Moe;

/// <summary>
/// MC-SMoE's merging stage (<see cref="ExpertMerging"/>): a permuted expert computes the same function and is aligned
/// back, grouping follows usage and router-logit similarity, and a group's merge is the frequency-weighted average of
/// its aligned members.
/// </summary>
public sealed class ExpertMergingTests
{
    private const int Hidden = 6,
        Intermediate = 10;

    private static ExpertWeights Expert(int seed)
    {
        float[] Values(string name, int count)
        {
            var stream = RandomStream.For((ulong)seed, name, 0);
            return [.. Enumerable.Range(0, count).Select(i => (float)stream.Normal(i))];
        }
        return new ExpertWeights(
            Values("gate", Intermediate * Hidden),
            Values("up", Intermediate * Hidden),
            Values("down", Hidden * Intermediate),
            Intermediate,
            Hidden
        );
    }

    /// <summary>down · (silu(gate·x) ⊙ up·x), in double.</summary>
    private static double[] Apply(ExpertWeights e, double[] x)
    {
        var output = new double[e.Hidden];
        for (int u = 0; u < e.Intermediate; u++)
        {
            double g = 0,
                v = 0;
            for (int k = 0; k < e.Hidden; k++)
            {
                g += e.Gate[u * e.Hidden + k] * x[k];
                v += e.Up[u * e.Hidden + k] * x[k];
            }
            double unit = g / (1 + Math.Exp(-g)) * v;
            for (int r = 0; r < e.Hidden; r++)
                output[r] += e.Down[r * e.Intermediate + u] * unit;
        }
        return output;
    }

    [Fact]
    public void A_permuted_expert_computes_the_same_function_and_alignment_finds_the_permutation_back()
    {
        var expert = Expert(1);
        var order = RandomStream.For(5, "order", 0).Permutation(Intermediate);
        var permuted = expert.Permuted(order);
        Assert.NotEqual(expert.Gate, permuted.Gate);
        double[] x = [0.3, -1.2, 0.8, 0.1, -0.5, 2.0];
        var (before, after) = (Apply(expert, x), Apply(permuted, x));
        for (int r = 0; r < Hidden; r++)
            Assert.Equal(before[r], after[r], 10);

        // Aligning the permuted copy to the original undoes the permutation exactly.
        var aligned = permuted.Permuted(ExpertMerging.Align(expert, permuted));
        Assert.Equal(expert.Gate, aligned.Gate);
        Assert.Equal(expert.Up, aligned.Up);
        Assert.Equal(expert.Down, aligned.Down);
    }

    [Fact]
    public void A_group_is_the_frequency_weighted_average_of_its_members_aligned_to_the_leader()
    {
        var leader = Expert(1);
        var other = Expert(2);
        // A copy of the leader in another order merges back into the leader whatever the weights.
        var shuffled = leader.Permuted(RandomStream.For(9, "order", 0).Permutation(Intermediate));
        var same = ExpertMerging.Merge([leader, shuffled], [0.7, 0.3], leader: 0);
        for (int j = 0; j < leader.Gate.Length; j++)
            Assert.Equal(leader.Gate[j], same.Gate[j], 5);

        // Two different experts: 0.75 · leader + 0.25 · (other aligned to the leader), computed here.
        var merged = ExpertMerging.Merge([leader, other], [0.6, 0.2], leader: 0);
        var alignedOther = other.Permuted(ExpertMerging.Align(leader, other));
        for (int j = 0; j < leader.Down.Length; j++)
            Assert.Equal(0.75 * leader.Down[j] + 0.25 * alignedOther.Down[j], merged.Down[j], 5);
        // Alignment matters: the unaligned average differs.
        Assert.NotEqual(0.75 * leader.Up[0] + 0.25 * other.Up[0], merged.Up[0], 5);
    }

    [Fact]
    public void The_most_used_experts_lead_and_the_others_join_the_leader_whose_router_logits_they_follow()
    {
        // Four experts over six tokens: expert 2's logits follow expert 0's, expert 3's follow expert 1's.
        // csharpier-ignore
        float[] logits =
        [
            3, -1, 2.5f, -0.8f,
            -2, 1, -1.9f, 1.2f,
            1, 2, 0.8f, 2.1f,
            0.5f, -3, 0.4f, -2.5f,
            -1, 0.2f, -1.1f, 0.1f,
            2, 1, 2.2f, 0.9f,
        ];
        var similarity = ExpertMerging.RouterLogitSimilarity(logits, 6, 4);
        Assert.Equal(1, similarity[0, 0], 9);
        Assert.True(similarity[2, 0] > similarity[2, 1] && similarity[3, 1] > similarity[3, 0]);

        var frequencies = ExpertMerging.Frequencies([40, 30, 20, 10]);
        Assert.Equal(0.4, frequencies[0], 12);
        var (labels, leaders) = ExpertMerging.Group(frequencies, similarity, groups: 2);
        Assert.Equal([0, 1], leaders);
        Assert.Equal([0, 1, 0, 1], labels);

        // One group takes everyone; as many groups as experts leaves each alone, ordered by use.
        Assert.Equal([0, 0, 0, 0], ExpertMerging.Group(frequencies, similarity, 1).Labels);
        Assert.Equal([0, 1, 2, 3], ExpertMerging.Group(frequencies, similarity, 4).Labels);
        Assert.Throws<AlloyException>(() => ExpertMerging.Group(frequencies, similarity, 5));
        Assert.Throws<AlloyException>(() => ExpertMerging.Frequencies([0, 0]));
    }
}
