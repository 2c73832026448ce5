using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Support;
using Alloy.Runtime.Training;
using Alloy.Tensors;

namespace Alloy.Runtime.Tests.Training;

/// <summary>
/// Backward against central finite differences of the float32 loss, for every parameter tensor of small models that
/// between them have every kind of parameter and layer: embedding, norms, q/k/v/o and MLP weights and biases, GQA,
/// an untied and a tied head, a sliding window, sequences longer than a 64-query attention block, a prompt whose
/// tokens are not scored, and mixtures of experts: Mixtral (fused experts, renormalised top-2) and Qwen2-MoE
/// (per-expert layout, top-2 without renormalisation, the shared expert and its sigmoid gate), through router, experts
/// and routing weights.
/// </summary>
public sealed class GradientCheckTests
{
    public static TheoryData<string> Cases =>
        ["llama-biases", "llama-tied", "mistral-window", "qwen2-tied", "mixtral", "qwen2-moe", "qwen2-moe-normalized"];

    private static ModelConfig ConfigFor(string name) =>
        name switch
        {
            "llama-biases" => RandomModels.Config(),
            "llama-tied" => RandomModels.Config(biases: false, tied: true),
            "mistral-window" => RandomModels.Config(ArchitectureFamily.Mistral, biases: false, window: 5),
            "qwen2-tied" => RandomModels.Config(ArchitectureFamily.Qwen2, tied: true),
            "mixtral" => RandomModels.Moe(ArchitectureFamily.Mixtral),
            "qwen2-moe" => RandomModels.Moe(ArchitectureFamily.Qwen2Moe),
            "qwen2-moe-normalized" => RandomModels.Moe(ArchitectureFamily.Qwen2Moe, ExpertLayout.Fused, true),
            _ => throw new ArgumentException(name),
        };

    /// <summary>
    /// For each parameter tensor: the derivative along a random ±1 direction over the whole tensor, and along the
    /// single element with the largest gradient, each as (L(θ + h·d) − L(θ − h·d)) / 2h with h = 1e-3, against Σ g·d.
    /// In float32 the loss (about 3) is exact to about 1e-7, so the difference quotient is good to about 1e-4
    /// absolute; the tolerance is 2e-4 + 1e-2 relative.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void Gradients_match_central_differences(string name)
    {
        var model = RandomModels.Create(ConfigFor(name));
        var examples = model.Config.Moe is null
            ? new[]
            {
                RandomModels.Examples(model.Config.VocabSize, 1, 70, 9)[0],
                RandomModels.Examples(model.Config.VocabSize, 1, 70, 9)[1],
                RandomModels.Examples(model.Config.VocabSize, 4, 12)[0], // a prompt of 4 tokens, unscored
            }
            : WellRouted(model);
        var loss = new LossGradients(model);
        int targets = examples.Sum(e => e.TargetCount);
        loss.Accumulate(examples, 1.0 / targets);
        var routing = Routing(loss);
        // The choice of experts is piecewise constant: a difference quotient across a change of choice measures a
        // jump, not a derivative, so every evaluation must route as the unperturbed model does.
        double Loss()
        {
            double value = loss.Loss(examples).LossSum / targets;
            if (!Routing(loss).SequenceEqual(routing))
                throw new InvalidOperationException(
                    "a perturbation changed the routing; pick examples with more margin"
                );
            return value;
        }

        const float H = 1e-3f;
        var failures = new List<string>();
        foreach (var p in model.Parameters)
        {
            var gradient = loss.Gradients[p];
            var stream = RandomStream.For(11, p.Name, 0);
            var direction = new float[p.Data.Length];
            for (int i = 0; i < direction.Length; i++)
                direction[i] = stream.Uniform(i) < 0.5 ? -1 : 1;
            Check(p, direction, "random direction");
            Array.Clear(direction);
            direction[IndexOfLargest(gradient)] = 1;
            Check(p, direction, "largest element");

            void Check(Parameter parameter, float[] d, string what)
            {
                double analytic = 0;
                for (int i = 0; i < d.Length; i++)
                    analytic += (double)gradient[i] * d[i];
                var saved = (float[])parameter.Data.Clone();
                for (int i = 0; i < d.Length; i++)
                    parameter.Data[i] = saved[i] + H * d[i];
                double plus = Loss();
                for (int i = 0; i < d.Length; i++)
                    parameter.Data[i] = saved[i] - H * d[i];
                double minus = Loss();
                saved.CopyTo(parameter.Data, 0);
                double numeric = (plus - minus) / (2 * H);
                if (Math.Abs(numeric - analytic) > 2e-4 + 1e-2 * Math.Abs(analytic))
                    failures.Add($"{parameter.Name} ({what}): backward {analytic:G6}, finite difference {numeric:G6}");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>Every block's chosen experts in the last pass of <paramref name="loss"/> (none if dense).</summary>
    private static int[] Routing(LossGradients loss) =>
        [
            .. loss
                .State.Blocks.Where(b => b.Moe is not null)
                .SelectMany(b => b.Moe!.Chosen.Take(b.Moe.RouterLogits.Rows * loss.Model.Config.Moe!.TopK)),
        ];

    /// <summary>
    /// Two sequences (9 tokens scored from the second, 7 with an unscored prompt of 4) whose every token's k-th router
    /// logit leads the (k+1)-th by at least 0.05 in every layer, so the perturbations of h = 1e-3 (which move the
    /// logits by a few thousandths) cannot change which experts are chosen.
    /// </summary>
    private static TrainingExample[] WellRouted(LlamaModel model)
    {
        int vocab = model.Config.VocabSize,
            k = model.Config.Moe!.TopK;
        var state = model.CreateState(keepActivations: true);
        for (int attempt = 0; attempt < 100; attempt++)
        {
            var stream = RandomStream.For(13, "moe-examples", attempt);
            int[] Tokens(int n, int offset) =>
                [.. Enumerable.Range(0, n).Select(i => (int)(stream.Uniform(offset + i) * vocab))];
            TrainingExample[] examples = [new(Tokens(9, 0), 1), new(Tokens(7, 100), 4)];
            var batch = Alloy.Runtime.Inference.TokenBatch.FromSequences([
                .. examples.Select(e => (IReadOnlyList<int>)e.Tokens),
            ]);
            model.Forward(batch, state, Alloy.Runtime.Inference.LogitSelection.None);
            double margin = double.MaxValue;
            foreach (var block in state.Blocks)
                for (int r = 0; r < block.Moe!.RouterLogits.Rows; r++)
                {
                    var sorted = block.Moe.RouterLogits.Row(r).ToArray().OrderDescending().ToArray();
                    margin = Math.Min(margin, sorted[k - 1] - sorted[k]);
                }
            if (margin >= 0.05)
                return examples;
        }
        throw new InvalidOperationException("no well-routed examples in 100 attempts");
    }

    private static int IndexOfLargest(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (Math.Abs(values[i]) > Math.Abs(values[best]))
                best = i;
        return best;
    }
}
