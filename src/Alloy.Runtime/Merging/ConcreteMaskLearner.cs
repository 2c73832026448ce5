using Alloy.Runtime.Models;
using Alloy.Runtime.Training;
using Alloy.Tensors;

namespace Alloy.Runtime.Merging;

/// <summary>Hyper-parameters of <see cref="ConcreteMaskLearner"/>; the defaults are FusionBench's.</summary>
public sealed record ConcreteMaskOptions
{
    public int Steps { get; init; } = 2000;

    public double LearningRate { get; init; } = 1e-3;

    /// <summary>The relaxed Bernoulli's temperature.</summary>
    public double Temperature { get; init; } = 0.5;

    /// <summary>Prompts of each task per step.</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Keys the prompt order and every draw of the mask's noise.</summary>
    public ulong Seed { get; init; }

    public void Validate()
    {
        if (Steps < 1 || BatchSize < 1 || !(LearningRate > 0) || !(Temperature > 0))
            throw new AlloyException(
                $"Concrete mask learning needs steps and batch size of at least 1 and a positive learning rate and "
                    + $"temperature (got {Steps}, {BatchSize}, {LearningRate}, {Temperature})"
            );
    }
}

/// <summary>What <see cref="ConcreteMaskLearner.Learn"/> found.</summary>
/// <param name="Mask">Per model parameter (in model order), the final mask: one relaxed sample, rescaled to mean 1 per
/// tensor.</param>
/// <param name="Losses">The loss of each step, before its update.</param>
public sealed record ConcreteMaskResult(IReadOnlyList<float[]> Mask, IReadOnlyList<double> Losses);

/// <summary>
/// Concrete subspace learning (Tang et al., 2023): a mask over every coordinate of the combined task vector
/// S = Σ_t λ_t τ_t, shared by the tasks, with logits ℓ (from 0) learnt by Adam so that the merged model
/// θ = θ0 + m ⊙ S is confident on each task's unlabeled prompts (<see cref="TaskPrompts"/>). Each step draws the mask
/// from the relaxed Bernoulli: s = σ((ℓ + log u − log(1 − u)) / T) with u uniform, rescaled per tensor to mean 1,
/// m = s / mean(s), as FusionBench's Concrete task arithmetic does, and differentiates through the draw
/// (∂L/∂ℓ_i = (a_i / μ − Σ_j a_j s_j / (n μ²)) · s_i (1 − s_i) / T with a = ∂L/∂θ ⊙ S, μ the tensor's mean of s).
/// The result is one more draw, as FusionBench evaluates. Draws come from counter-based streams keyed by the seed,
/// the step and the tensor, so results do not depend on the thread count.
/// </summary>
public sealed class ConcreteMaskLearner
{
    private readonly LlamaModel _model;
    private readonly float[][] _base;
    private readonly float[][] _combined;
    private readonly LossGradients _loss;

    /// <param name="combined">S = Σ_t λ_t τ_t, under the model's parameter names.</param>
    public ConcreteMaskLearner(LlamaModel model, ParameterSet baseParameters, ParameterSet combined)
    {
        _model = model;
        _base = [.. model.Parameters.Select(p => baseParameters[p.Name].Data)];
        _combined = [.. model.Parameters.Select(p => combined[p.Name].Data)];
        _loss = new LossGradients(model);
    }

    /// <summary>
    /// Draw <paramref name="draw"/> of the mask for <paramref name="logits"/>: into <paramref name="relaxed"/> the
    /// relaxed samples s, and the returned per-tensor means μ (m = s / μ).
    /// </summary>
    public double[] Sample(float[][] logits, double temperature, ulong seed, int draw, float[][] relaxed)
    {
        var means = new double[logits.Length];
        _model.Compute.For(logits.Length, k =>
        {
            var stream = RandomStream.For(seed, _model.Parameters[k].Name, draw);
            double sum = 0;
            for (int j = 0; j < logits[k].Length; j++)
            {
                double u = Math.Clamp(stream.Uniform(j), 1e-6, 1 - 1e-6);
                double s = 1 / (1 + Math.Exp(-(logits[k][j] + Math.Log(u) - Math.Log(1 - u)) / temperature));
                relaxed[k][j] = (float)s;
                sum += relaxed[k][j];
            }
            means[k] = sum / logits[k].Length;
        });
        return means;
    }

    /// <summary>Writes θ = θ0 + (s / μ) ⊙ S into the model.</summary>
    public void Apply(float[][] relaxed, double[] means)
    {
        var parameters = _model.Parameters;
        _model.Compute.For(parameters.Count, k =>
        {
            var theta = parameters[k].Data;
            float scale = (float)(1 / means[k]);
            for (int j = 0; j < theta.Length; j++)
                theta[j] = _base[k][j] + relaxed[k][j] * scale * _combined[k][j];
        });
    }

    /// <summary>The loss at draw <paramref name="draw"/> of <paramref name="logits"/>, and its gradient in ℓ.</summary>
    public (double Loss, float[][] Gradient) LossAndGradient(
        float[][] logits,
        IReadOnlyList<IReadOnlyList<int[]>> batches,
        double temperature,
        ulong seed,
        int draw
    )
    {
        var relaxed = logits.Select(l => new float[l.Length]).ToArray();
        var means = Sample(logits, temperature, seed, draw, relaxed);
        Apply(relaxed, means);
        _loss.Gradients.Clear(_model.Compute);
        double loss = TaskPrompts.Entropy(_loss, batches, gradient: true);
        var gradient = logits.Select(l => new float[l.Length]).ToArray();
        var parameters = _model.Parameters;
        _model.Compute.For(parameters.Count, k =>
        {
            var g = _loss.Gradients[parameters[k]];
            float[] s = relaxed[k],
                S = _combined[k];
            int n = s.Length;
            double mu = means[k];
            double weighted = 0; // Σ_j a_j s_j
            for (int j = 0; j < n; j++)
                weighted += (double)g[j] * S[j] * s[j];
            for (int j = 0; j < n; j++)
            {
                double ds = g[j] * S[j] / mu - weighted / (n * mu * mu);
                gradient[k][j] = (float)(ds * s[j] * (1 - s[j]) / temperature);
            }
        });
        return (loss, gradient);
    }

    /// <summary>
    /// Learns the mask's logits with Adam from 0, then returns one more draw, rescaled (the model then holds the
    /// merge inside it). <paramref name="progress"/> receives each 1-based step and its loss.
    /// </summary>
    public static ConcreteMaskResult Learn(
        LlamaModel model,
        ParameterSet baseParameters,
        ParameterSet combined,
        IReadOnlyList<IReadOnlyList<int[]>> prompts,
        ConcreteMaskOptions options,
        Action<int, double>? progress = null,
        CancellationToken cancellation = default
    )
    {
        options.Validate();
        var learner = new ConcreteMaskLearner(model, baseParameters, combined);
        var batcher = new TaskPrompts(prompts, options.BatchSize, options.Seed);
        var logits = new ParameterSet(model.Parameters.Select(p => new Parameter("mask." + p.Name, p.Shape)));
        var gradients = new GradientSet(logits);
        var adam = new AdamW(logits, new TrainingOptions { WeightDecay = 0 });
        float[][] Logits() => [.. logits.Select(p => p.Data)];
        var losses = new List<double>(options.Steps);
        for (int step = 0; step < options.Steps; step++)
        {
            cancellation.ThrowIfCancellationRequested();
            var (loss, gradient) = learner.LossAndGradient(
                Logits(),
                batcher.Batches(step),
                options.Temperature,
                options.Seed,
                step
            );
            if (!double.IsFinite(loss))
                throw new AlloyException($"Concrete mask step {step + 1}: the entropy is not finite ({loss})");
            for (int k = 0; k < logits.Count; k++)
                gradient[k].CopyTo(gradients[logits[k]], 0);
            adam.Step(model.Compute, gradients, options.LearningRate);
            losses.Add(loss);
            progress?.Invoke(step + 1, loss);
        }
        var relaxed = Logits().Select(l => new float[l.Length]).ToArray();
        var means = learner.Sample(Logits(), options.Temperature, options.Seed, options.Steps, relaxed);
        learner.Apply(relaxed, means);
        return new ConcreteMaskResult(
            [.. relaxed.Select((s, k) => s.Select(v => (float)(v / means[k])).ToArray())],
            losses
        );
    }
}
