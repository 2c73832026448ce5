using Alloy.Runtime.Merging;
using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Support;
using Alloy.Tensors;

namespace Alloy.Runtime.Tests.Merging;

/// <summary>
/// AdaMergingLearner's learning core on the small random models of the gradient tests: the λ-gradient against finite
/// differences, learning lowers the entropy, the clamp, determinism, and θ(λ) itself.
/// </summary>
public sealed class AdaMergingLearnerTests
{
    private static double[][] Filled(int tasks, int groups, double value) =>
        [.. Enumerable.Range(0, tasks).Select(_ => Enumerable.Repeat(value, groups).ToArray())];

    /// <summary>
    /// Every ∂L/∂λ against (L(λ + h) − L(λ − h)) / 2h with h = 1e-3, at seeded λ in [0.2, 0.8]. The float32 loss
    /// (about 2 × 3) is noisy at about 1e-6, so the quotient is good to about 1e-4 absolute (seen: 6e-5); the
    /// tolerance is 2e-4 + 2% relative, and the largest gradient must be above 0.1 so a wrong gradient cannot pass as
    /// noise.
    /// </summary>
    [Theory]
    [InlineData(LambdaGranularity.Task)]
    [InlineData(LambdaGranularity.Layer)]
    public void Lambda_gradient_matches_central_differences(LambdaGranularity granularity)
    {
        var (model, @base, taskVectors) = TaskVectorFixtures.Setup(tasks: 2);
        var merging = new AdaMergingLearner(model, @base, taskVectors);
        var batches = TaskVectorFixtures.Prompts(2, 5);
        int groups = merging.Groups(granularity);
        var stream = RandomStream.For(5, "lambdas", groups);
        var lambdas = Enumerable
            .Range(0, 2)
            .Select(t => Enumerable.Range(0, groups).Select(g => 0.2 + 0.6 * stream.Uniform(t * groups + g)).ToArray())
            .ToArray();
        var (loss, gradient) = merging.LossAndGradient(lambdas, batches);
        Assert.Equal(merging.Loss(lambdas, batches), loss, 1e-9);

        const double H = 1e-3;
        var failures = new List<string>();
        for (int t = 0; t < 2; t++)
        for (int g = 0; g < groups; g++)
        {
            double saved = lambdas[t][g];
            lambdas[t][g] = saved + H;
            double plus = merging.Loss(lambdas, batches);
            lambdas[t][g] = saved - H;
            double minus = merging.Loss(lambdas, batches);
            lambdas[t][g] = saved;
            double numeric = (plus - minus) / (2 * H);
            if (Math.Abs(numeric - gradient[t][g]) > 2e-4 + 2e-2 * Math.Abs(gradient[t][g]))
                failures.Add($"λ[{t}][{g}]: analytic {gradient[t][g]:G6}, finite difference {numeric:G6}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        double largest = gradient.SelectMany(row => row).Max(Math.Abs);
        Assert.True(largest > 0.1, $"the largest gradient is only {largest}");
    }

    /// <summary>
    /// 30 Adam steps at a learning rate of 0.05 on three task vectors, every prompt in every batch: the entropy falls
    /// by more than 10%, and the learnt λ's loss is below the starting λ's.
    /// </summary>
    [Fact]
    public void Learning_lowers_the_entropy()
    {
        var (model, @base, taskVectors) = TaskVectorFixtures.Setup(tasks: 3);
        var prompts = TaskVectorFixtures.Prompts(3, 6);
        var options = new AdaMergingOptions
        {
            Steps = 30,
            LearningRate = 0.05,
            Granularity = LambdaGranularity.Layer,
        };
        var steps = new List<int>();
        var result = AdaMergingLearner.Learn(model, @base, taskVectors, prompts, options, (step, _) => steps.Add(step));

        Assert.Equal(Enumerable.Range(1, 30), steps);
        Assert.Equal(30, result.Losses.Count);
        Assert.True(result.Losses[^1] < 0.9 * result.Losses[0], string.Join(", ", result.Losses));
        var merging = new AdaMergingLearner(model, @base, taskVectors);
        int groups = merging.Groups(LambdaGranularity.Layer);
        double before = merging.Loss(Filled(3, groups, 0.3), prompts);
        double after = merging.Loss(result.Lambdas, prompts);
        Assert.True(after < 0.9 * before, $"{before} → {after}");
    }

    /// <summary>
    /// A learning rate large enough to push λ past both ends: every reported λ is in [0, 1], some sit on an end, and
    /// the model holds θ of the reported λ.
    /// </summary>
    [Fact]
    public void Learnt_lambdas_stay_in_the_unit_interval()
    {
        var (model, @base, taskVectors) = TaskVectorFixtures.Setup(tasks: 2);
        var options = new AdaMergingOptions { Steps = 12, LearningRate = 0.3 };
        var result = AdaMergingLearner.Learn(model, @base, taskVectors, TaskVectorFixtures.Prompts(2, 4), options);

        var all = result.Lambdas.SelectMany(row => row).ToList();
        Assert.Equal(2 * model.Parameters.Count, all.Count);
        Assert.All(all, l => Assert.InRange(l, 0, 1));
        Assert.Contains(all, l => l is 0 or 1);
        var held = model.Parameters.Select(p => (float[])p.Data.Clone()).ToList();
        new AdaMergingLearner(model, @base, taskVectors).Apply(result.Lambdas);
        Assert.Equal(held, model.Parameters.Select(p => p.Data));
    }

    /// <summary>
    /// λ beyond an end merges as the end and gets no gradient (torch.clamp's), while λ on an end still gets one.
    /// </summary>
    [Theory]
    [InlineData(1.5, 1.0)]
    [InlineData(-0.2, 0.0)]
    public void A_clamped_lambda_has_no_gradient(double outside, double end)
    {
        var (model, @base, taskVectors) = TaskVectorFixtures.Setup(tasks: 2);
        var merging = new AdaMergingLearner(model, @base, taskVectors);
        var batches = TaskVectorFixtures.Prompts(2, 4);

        var (loss, gradient) = merging.LossAndGradient(
            [
                [outside],
                [0.4],
            ],
            batches
        );
        var (lossAtEnd, gradientAtEnd) = merging.LossAndGradient(
            [
                [end],
                [0.4],
            ],
            batches
        );

        Assert.Equal(0, gradient[0][0]);
        Assert.NotEqual(0, gradient[1][0]);
        Assert.Equal(lossAtEnd, loss);
        Assert.Equal(gradientAtEnd[1][0], gradient[1][0]);
        Assert.True(Math.Abs(gradientAtEnd[0][0]) > 1e-3, $"gradient on the end: {gradientAtEnd[0][0]}");
    }

    /// <summary>
    /// The same seed gives the same bits on one thread and on two, with batches smaller than the prompt sets (so the
    /// seeded order matters); another seed gives other losses.
    /// </summary>
    [Fact]
    public void Learning_is_deterministic_at_any_thread_count()
    {
        var prompts = TaskVectorFixtures.Prompts(2, 10);
        AdaMergingResult Learn(int threads, ulong seed)
        {
            var (model, @base, taskVectors) = TaskVectorFixtures.Setup(tasks: 2, threads);
            var options = new AdaMergingOptions
            {
                Steps = 6,
                LearningRate = 0.02,
                BatchSize = 3,
                Seed = seed,
            };
            return AdaMergingLearner.Learn(model, @base, taskVectors, prompts, options);
        }
        var one = Learn(1, 9);
        var two = Learn(2, 9);
        Assert.Equal(one.Lambdas, two.Lambdas);
        Assert.Equal(one.Losses, two.Losses);
        Assert.NotEqual(one.Losses, Learn(2, 10).Losses);
    }

    /// <summary>λ = 0 gives the base's exact bits, after a merge that changed every tensor.</summary>
    [Fact]
    public void Zero_lambdas_give_the_base_exactly()
    {
        var (model, @base, taskVectors) = TaskVectorFixtures.Setup(tasks: 3);
        var merging = new AdaMergingLearner(model, @base, taskVectors);
        int groups = merging.Groups(LambdaGranularity.Layer);

        merging.Apply(Filled(3, groups, 0.7));
        Assert.All(model.Parameters, p => Assert.NotEqual(@base[p.Name].Data, p.Data));
        merging.Apply(Filled(3, groups, 0));
        Assert.All(model.Parameters, p => Assert.Equal(@base[p.Name].Data, p.Data));
    }

    /// <summary>
    /// θ = θ0 + Σ clamp(λ)·τ element by element, layer-wise: tensor k takes its own λ, and 1.25 merges as 1. Halves
    /// and ones make every product exact, so float32 sums in task order are the expected bits.
    /// </summary>
    [Fact]
    public void Merged_weights_are_the_base_plus_the_clamped_lambdas_times_the_task_vectors()
    {
        var (model, @base, taskVectors) = TaskVectorFixtures.Setup(tasks: 2);
        var merging = new AdaMergingLearner(model, @base, taskVectors);
        int groups = merging.Groups(LambdaGranularity.Layer);
        double[][] lambdas =
        [
            [.. Enumerable.Range(0, groups).Select(k => k % 2 == 0 ? 0.5 : 0.25)],
            [.. Enumerable.Range(0, groups).Select(k => k % 3 == 0 ? 1.25 : 0.0)],
        ];
        merging.Apply(lambdas);
        for (int k = 0; k < groups; k++)
        {
            var p = model.Parameters[k];
            float a = k % 2 == 0 ? 0.5f : 0.25f,
                b = k % 3 == 0 ? 1f : 0f;
            var (theta0, tau1, tau2) = (@base[p.Name].Data, taskVectors[0][p.Name].Data, taskVectors[1][p.Name].Data);
            var expected = theta0.Select((v, i) => v + a * tau1[i] + b * tau2[i]).ToArray();
            Assert.Equal(expected, p.Data);
        }
    }

    public static TheoryData<AdaMergingOptions> BadOptions =>
        [
            new() { Steps = 0 },
            new() { LearningRate = 0 },
            new() { LearningRate = double.NaN },
            new() { BatchSize = 0 },
            new() { Initial = -0.1 },
            new() { Initial = 1.5 },
            new() { Initial = double.NaN },
            new() { Granularity = (LambdaGranularity)7 },
        ];

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void Bad_options_are_reported_in_one_line(AdaMergingOptions options)
    {
        var (model, @base, taskVectors) = TaskVectorFixtures.Setup(tasks: 1);
        var error = Assert.Throws<AlloyException>(() =>
            AdaMergingLearner.Learn(model, @base, taskVectors, TaskVectorFixtures.Prompts(1, 2), options)
        );
        Assert.DoesNotContain('\n', error.Message);
        Assert.StartsWith("AdaMerging", error.Message);
    }

    [Fact]
    public void Mismatched_inputs_are_reported()
    {
        var (model, @base, taskVectors) = TaskVectorFixtures.Setup(tasks: 2);
        var options = new AdaMergingOptions { Steps = 1 };
        var error = Assert.Throws<AlloyException>(() =>
            AdaMergingLearner.Learn(model, @base, taskVectors, TaskVectorFixtures.Prompts(3, 2), options)
        );
        Assert.Contains("prompts for 3 tasks", error.Message);

        var truncated = new ParameterSet(taskVectors[1].Skip(1));
        error = Assert.Throws<AlloyException>(() => new AdaMergingLearner(model, @base, [taskVectors[0], truncated]));
        Assert.Contains($"task vector 2 has no tensor '{model.Parameters[0].Name}'", error.Message);

        Assert.Throws<ArgumentException>(() => new AdaMergingLearner(model, model.Parameters, taskVectors));
    }
}
