using Alloy.Runtime.Merging;
using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Support;
using Alloy.Tensors;

namespace Alloy.Runtime.Tests.Merging;

/// <summary>
/// The Concrete mask learner on the small random models: its gradient in the logits against finite differences at a
/// fixed draw, learning lowers the entropy, the mask's form, and determinism.
/// </summary>
public sealed class ConcreteMaskLearnerTests
{
    /// <summary>The base and S = τ1 + τ2, on a model of <paramref name="threads"/> threads.</summary>
    private static (LlamaModel Model, ParameterSet Base, ParameterSet Combined) Setup(int threads = 2)
    {
        var (model, @base, vectors) = TaskVectorFixtures.Setup(tasks: 2, threads);
        var combined = new ParameterSet(
            vectors[0]
                .Select(p => new Parameter(p.Name, p.Shape, [.. p.Data.Zip(vectors[1][p.Name].Data, (a, b) => a + b)]))
        );
        return (model, @base, combined);
    }

    private static float[][] Logits(LlamaModel model, ulong seed) =>
        [
            .. model.Parameters.Select(p =>
            {
                var stream = RandomStream.For(seed, p.Name, 0);
                return Enumerable.Range(0, p.Data.Length).Select(i => (float)stream.Normal(i)).ToArray();
            }),
        ];

    /// <summary>
    /// The derivative along a random direction d over every logit, against (L(ℓ + hd) − L(ℓ − hd)) / 2h with h = 1e-2
    /// at the same draw of the noise: within 2% + 1e-4, and not near zero.
    /// </summary>
    [Fact]
    public void Logit_gradient_matches_central_differences_at_a_fixed_draw()
    {
        var (model, @base, combined) = Setup();
        var learner = new ConcreteMaskLearner(model, @base, combined);
        var batches = TaskVectorFixtures.Prompts(2, 5);
        var logits = Logits(model, 8);
        var direction = Logits(model, 9);
        var (_, gradient) = learner.LossAndGradient(logits, batches, 0.5, seed: 3, draw: 7);
        double analytic = 0;
        for (int k = 0; k < logits.Length; k++)
        for (int j = 0; j < logits[k].Length; j++)
            analytic += (double)gradient[k][j] * direction[k][j];

        double LossAt(double h) =>
            learner
                .LossAndGradient(
                    [.. logits.Select((l, k) => l.Select((v, j) => (float)(v + h * direction[k][j])).ToArray())],
                    batches,
                    0.5,
                    seed: 3,
                    draw: 7
                )
                .Loss;
        double numeric = (LossAt(1e-2) - LossAt(-1e-2)) / 2e-2;
        Assert.True(Math.Abs(analytic) > 1e-2, $"the directional derivative {analytic} is too small to test");
        Assert.True(
            Math.Abs(numeric - analytic) < 0.02 * Math.Abs(analytic) + 1e-4,
            $"analytic {analytic}, central differences {numeric}"
        );
    }

    [Fact]
    public void Learning_lowers_the_entropy_and_gives_a_positive_mask_of_mean_one_per_tensor()
    {
        var (model, @base, combined) = Setup();
        var result = ConcreteMaskLearner.Learn(
            model,
            @base,
            combined,
            TaskVectorFixtures.Prompts(2, 6),
            new ConcreteMaskOptions
            {
                Steps = 30,
                LearningRate = 0.2,
                BatchSize = 6,
            }
        );
        Assert.Equal(30, result.Losses.Count);
        Assert.True(
            result.Losses.TakeLast(5).Average() < 0.9 * result.Losses.Take(5).Average(),
            $"entropy {result.Losses[0]} → {result.Losses[^1]}"
        );
        foreach (var (mask, p) in result.Mask.Zip(model.Parameters))
        {
            Assert.All(mask, m => Assert.True(m > 0 && float.IsFinite(m)));
            Assert.Equal(1, mask.Average(m => (double)m), 3);
            // The model holds θ0 + m ⊙ S.
            int j = mask.Length / 2;
            Assert.Equal(@base[p.Name].Data[j] + mask[j] * combined[p.Name].Data[j], p.Data[j], 4);
        }
    }

    [Fact]
    public void Learning_is_deterministic_at_any_thread_count_and_seeded()
    {
        ConcreteMaskResult Learn(int threads, ulong seed)
        {
            var (model, @base, combined) = Setup(threads);
            return ConcreteMaskLearner.Learn(
                model,
                @base,
                combined,
                TaskVectorFixtures.Prompts(2, 6),
                new ConcreteMaskOptions
                {
                    Steps = 4,
                    LearningRate = 0.1,
                    BatchSize = 3,
                    Seed = seed,
                }
            );
        }
        var (one, two) = (Learn(1, 0), Learn(2, 0));
        Assert.Equal(one.Losses, two.Losses);
        Assert.Equal(one.Mask.SelectMany(m => m), two.Mask.SelectMany(m => m));
        Assert.NotEqual(one.Losses, Learn(2, 1).Losses);
        Assert.Throws<AlloyException>(() => new ConcreteMaskOptions { Temperature = 0 }.Validate());
    }
}
