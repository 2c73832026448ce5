using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Support;
using Alloy.Runtime.Training;
using Alloy.Tensors;

namespace Alloy.Runtime.Tests.Training;

/// <summary>
/// <see cref="TrainableLora"/>: the factors' gradients against finite differences, a frozen model whose adapted
/// weights are W₀ + (α/r)·B·A, and the same adapter at any thread count.
/// </summary>
public sealed class LoraTrainingTests
{
    private static readonly LoraOptions AllLinear = new()
    {
        Rank = 2,
        Alpha = 3,
        Targets = [LoraOptions.AllLinear],
        Seed = 4,
    };

    private static TrainingExample[] Batch(LlamaModel model) =>
        RandomModels.Examples(model.Config.VocabSize, 1, 30, 17, 9);

    /// <summary>B starts at zero, which makes ∂/∂A zero; random values exercise both factors.</summary>
    private static void Randomise(TrainableLora lora)
    {
        foreach (var b in lora.Parameters.Where(p => p.Name.EndsWith("lora_B.weight", StringComparison.Ordinal)))
        {
            var stream = RandomStream.For(9, b.Name, 0);
            for (int i = 0; i < b.Data.Length; i++)
                b.Data[i] = (float)(0.3 * stream.Normal(i));
        }
        lora.Apply();
    }

    /// <summary>
    /// Each factor's derivative along a random ±1 direction, (L(θ + h·d) − L(θ − h·d)) / 2h with h = 1e-3 and the
    /// weights refreshed by Apply, against Σ g·d from Backward: tolerance 2e-4 + 1e-2 relative, as for the model's own
    /// gradients (GradientCheckTests).
    /// </summary>
    [Fact]
    public void Factor_gradients_match_central_differences()
    {
        var model = RandomModels.Create(RandomModels.Config());
        var lora = new TrainableLora(model, AllLinear);
        Randomise(lora);
        var examples = Batch(model);
        int targets = examples.Sum(e => e.TargetCount);
        var loss = new LossGradients(model);
        loss.Accumulate(examples, 1.0 / targets);
        var gradients = new GradientSet(lora.Parameters);
        lora.Backward(loss.Gradients, gradients);
        double Loss() => loss.Loss(examples).LossSum / targets;

        const float H = 1e-3f;
        var failures = new List<string>();
        foreach (var p in lora.Parameters)
        {
            var stream = RandomStream.For(11, p.Name, 0);
            var saved = (float[])p.Data.Clone();
            double analytic = 0;
            var direction = new float[p.Data.Length];
            for (int i = 0; i < direction.Length; i++)
            {
                direction[i] = stream.Uniform(i) < 0.5 ? -1 : 1;
                analytic += (double)gradients[p][i] * direction[i];
            }
            double At(float step)
            {
                for (int i = 0; i < saved.Length; i++)
                    p.Data[i] = saved[i] + step * direction[i];
                lora.Apply();
                return Loss();
            }
            double numeric = (At(H) - At(-H)) / (2 * H);
            saved.CopyTo(p.Data, 0);
            lora.Apply();
            if (Math.Abs(numeric - analytic) > 2e-4 + 1e-2 * Math.Abs(analytic))
                failures.Add($"{p.Name}: backward {analytic:G6}, finite difference {numeric:G6}");
        }
        Assert.Equal(2 * 7 * 2, lora.Parameters.Count); // A and B of 7 linear layers in each of 2 blocks
        Assert.Empty(failures);
    }

    [Fact]
    public void Only_the_factors_learn_and_each_target_runs_as_its_frozen_weight_plus_the_scaled_product()
    {
        var model = RandomModels.Create(RandomModels.Config());
        var before = model.Parameters.ToDictionary(p => p.Name, p => (float[])p.Data.Clone());
        var options = new LoraOptions
        {
            Rank = 3,
            Alpha = 6,
            Targets = ["q_proj", "down_proj"],
        };
        var lora = new TrainableLora(model, options);
        var initialA = lora.Parameters.Select(p => (float[])p.Data.Clone()).ToList();
        var trainer = new Trainer(model, new TrainingOptions { Steps = 20, LearningRate = 1e-2 }, lora);
        var batch = Batch(model);
        var losses = Enumerable.Range(0, 20).Select(_ => trainer.Step(batch).Loss).ToList();
        Assert.True(losses[^1] < 0.9 * losses[0], string.Join(", ", losses));

        Assert.Equal(
            [
                "model.layers.0.self_attn.q_proj",
                "model.layers.0.mlp.down_proj",
                "model.layers.1.self_attn.q_proj",
                "model.layers.1.mlp.down_proj",
            ],
            lora.Modules
        );
        foreach (var p in model.Parameters)
        {
            string module = p.Name[..p.Name.LastIndexOf('.')];
            if (!lora.Modules.Contains(module) || p.Name.EndsWith(".bias", StringComparison.Ordinal))
            {
                Assert.Equal(before[p.Name], p.Data); // frozen, to the bit
                continue;
            }
            var a = lora.Parameters[$"base_model.model.{module}.lora_A.weight"];
            var b = lora.Parameters[$"base_model.model.{module}.lora_B.weight"];
            Assert.Equal([options.Rank, p.Columns], a.Shape);
            Assert.Equal([p.Rows, options.Rank], b.Shape);
            Assert.Contains(b.Data, v => v != 0); // B learnt from zero
            for (int i = 0; i < p.Rows; i++)
            for (int j = 0; j < p.Columns; j++)
            {
                double update = 0;
                for (int k = 0; k < options.Rank; k++)
                    update += (double)b.Data[i * options.Rank + k] * a.Data[k * p.Columns + j];
                double expected = before[p.Name][i * p.Columns + j] + options.Alpha / options.Rank * update;
                Assert.Equal(expected, p.Data[i * p.Columns + j], 1e-5);
            }
        }
        // A moved from its initialisation, which is U(−1/√in, 1/√in).
        var firstA = lora.Parameters[0];
        Assert.NotEqual(initialA[0], firstA.Data);
        Assert.All(initialA[0], v =>
            Assert.InRange(v, -1 / MathF.Sqrt(firstA.Columns), 1 / MathF.Sqrt(firstA.Columns))
        );
    }

    [Fact]
    public void An_adapter_trains_to_the_same_bits_at_any_thread_count()
    {
        float[][] Train(int threads)
        {
            var model = RandomModels.Create(RandomModels.Config(), threads: threads);
            var lora = new TrainableLora(model, AllLinear);
            new Trainer(
                model,
                new TrainingOptions
                {
                    Steps = 4,
                    BatchSize = 2,
                    LearningRate = 1e-2,
                },
                lora
            ).Run(Batch(model));
            return [.. lora.Parameters.Select(p => p.Data)];
        }
        Assert.Equal(Train(1), Train(2));
    }

    [Fact]
    public void Targets_that_match_no_layer_are_refused_with_the_names_there_are()
    {
        var model = RandomModels.Create(RandomModels.Config());
        var error = Assert.Throws<AlloyException>(() =>
            new TrainableLora(model, new LoraOptions { Targets = ["c_attn"] })
        );
        Assert.Contains("matches no linear layer", error.Message);
        Assert.Contains("q_proj", error.Message);
        Assert.Throws<AlloyException>(() => new TrainableLora(model, new LoraOptions { Rank = 0 }));
    }
}
