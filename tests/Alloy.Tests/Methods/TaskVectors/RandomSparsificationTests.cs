using Alloy.Methods.TaskVectors;
using Alloy.Tensors;

namespace Alloy.Tests.Methods.TaskVectors;

/// <summary>Statistics and determinism of the random sparsifications (DARE, DELLA), measured over many draws.</summary>
public sealed class RandomSparsificationTests
{
    private static float[] Ones(int n) => Enumerable.Repeat(1f, n).ToArray();

    [Theory]
    [InlineData(0.1, 1UL)]
    [InlineData(0.3, 2UL)]
    [InlineData(0.9, 3UL)]
    public void Dare_keeps_a_fraction_within_four_sigma_of_the_density(double density, ulong seed)
    {
        const int n = 200_000;
        var delta = Ones(n);
        Sparsify.Random(delta, density, RandomStream.For(seed, "t", 1), 0);
        double kept = delta.Count(v => v != 0),
            sigma = Math.Sqrt(n * density * (1 - density));
        Assert.InRange(kept, n * density - 4 * sigma, n * density + 4 * sigma);
    }

    [Fact]
    public void Same_seed_gives_the_same_mask_and_other_seeds_models_or_tensors_another()
    {
        float[] Mask(ulong seed, string tensor, int model)
        {
            var delta = Ones(4096);
            Sparsify.Random(delta, 0.5, RandomStream.For(seed, tensor, model), 0);
            return delta;
        }
        var reference = Mask(5, "a", 1);
        Assert.Equal(reference, Mask(5, "a", 1));
        foreach (var other in new[] { Mask(6, "a", 1), Mask(5, "b", 1), Mask(5, "a", 2) })
        {
            int differing = reference.Zip(other).Count(p => p.First != p.Second);
            // independent masks differ in half the entries
            Assert.InRange(differing, 4096 / 2 - 4 * 32, 4096 / 2 + 4 * 32);
        }
    }

    [Fact]
    public void A_chunk_draws_what_the_whole_tensor_draws_at_its_indices()
    {
        var random = RandomStream.For(3, "t", 1);
        var whole = Ones(1000);
        Sparsify.Random(whole, 0.4, random, 0);
        var chunk = Ones(300);
        Sparsify.Random(chunk, 0.4, random, 500);
        Assert.Equal(whole[500..800], chunk);
    }

    [Fact]
    public void L1_rescale_after_a_random_drop_preserves_the_norm()
    {
        var random = RandomStream.For(1, "values", 0);
        var delta = Enumerable.Range(0, 10_000).Select(j => (float)random.Normal(j)).ToArray();
        double before = Sparsify.L1Norm(delta);
        Sparsify.Random(delta, 0.2, RandomStream.For(1, "t", 1), 0);
        Assert.True(Sparsify.L1Norm(delta) < before * 0.3);
        Sparsify.RescaleL1(delta, before);
        Assert.Equal(before, Sparsify.L1Norm(delta), before * 1e-6);
    }

    [Fact]
    public void Della_keep_frequency_matches_its_probability_and_rises_with_rank()
    {
        // A [2, 5, 3] tensor: ranks run along dimension 1, within each of the six fibers of five entries.
        long[] shape = [2, 5, 3];
        var random = RandomStream.For(8, "values", 0);
        var values = Enumerable.Range(0, 30).Select(j => (float)random.Normal(j)).ToArray();
        const double density = 0.5,
            epsilon = 0.3;
        var probability = TaskVectorReference.DellaProbabilities(values, shape, density, epsilon);
        const int draws = 4000;
        var kept = new int[30];
        for (int draw = 0; draw < draws; draw++)
        {
            var delta = values.ToArray();
            Sparsify.Della(delta, shape, density, epsilon, RandomStream.For((ulong)draw, "t", 1));
            for (int j = 0; j < 30; j++)
                if (delta[j] != 0)
                    kept[j]++;
        }
        for (int j = 0; j < 30; j++)
        {
            double sigma = Math.Sqrt(draws * probability[j] * (1 - probability[j]));
            Assert.InRange(kept[j], draws * probability[j] - 4 * sigma, draws * probability[j] + 4 * sigma);
        }
        // Within each fiber, the largest magnitude is kept far more often than the smallest (0.8 vs 0.2).
        for (int o = 0; o < 2; o++)
        for (int c = 0; c < 3; c++)
        {
            var fiber = Enumerable
                .Range(0, 5)
                .Select(r => o * 15 + r * 3 + c)
                .OrderBy(j => Math.Abs(values[j]))
                .ToArray();
            Assert.True(kept[fiber[^1]] > kept[fiber[0]] + draws / 2, $"fiber ({o}, {c})");
        }
    }

    [Fact]
    public void Della_with_zero_density_keeps_nothing()
    {
        var delta = Ones(10);
        Sparsify.Della(delta, [10], 0, 0.1, RandomStream.For(0, "t", 1));
        Assert.All(delta, v => Assert.Equal(0f, v));
    }
}
