using Alloy.Runtime.Compute;
using Alloy.Runtime.Models;

namespace Alloy.Runtime.Training;

/// <summary>
/// AdamW (Loshchilov and Hutter) as torch.optim.AdamW computes it: θ ← θ·(1 − lr·λ), then
/// θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε), with m and v the running moments of the gradient. Weight decay
/// skips 1-D parameters (norm weights, biases) unless asked. State is two float32 arrays per parameter.
/// </summary>
public sealed class AdamW
{
    private readonly float[][] _first;
    private readonly float[][] _second;

    public AdamW(ParameterSet parameters, TrainingOptions options)
    {
        Parameters = parameters;
        Options = options;
        _first = [.. parameters.Select(p => new float[p.Data.Length])];
        _second = [.. parameters.Select(p => new float[p.Data.Length])];
    }

    public ParameterSet Parameters { get; }

    public TrainingOptions Options { get; }

    /// <summary>Steps taken so far (t in the bias corrections).</summary>
    public int StepCount { get; private set; }

    /// <summary>Whether weight decay applies to <paramref name="parameter"/>.</summary>
    public bool Decays(Parameter parameter) => Options.DecayNormsAndBiases || parameter.Shape.Length >= 2;

    /// <summary>
    /// One update of every parameter from <paramref name="gradients"/> times <paramref name="gradientScale"/>
    /// (clipping).
    /// </summary>
    public void Step(ComputeContext context, GradientSet gradients, double learningRate, float gradientScale = 1)
    {
        StepCount++;
        float beta1 = (float)Options.Beta1,
            beta2 = (float)Options.Beta2,
            epsilon = (float)Options.Epsilon;
        float stepSize = (float)(learningRate / (1 - Math.Pow(Options.Beta1, StepCount)));
        float inverseCorrection2 = (float)(1 / Math.Sqrt(1 - Math.Pow(Options.Beta2, StepCount)));
        for (int index = 0; index < Parameters.Count; index++)
        {
            var parameter = Parameters[index];
            var (p, g, m, v) = (parameter.Data, gradients[parameter], _first[index], _second[index]);
            float keep = Decays(parameter) ? (float)(1 - learningRate * Options.WeightDecay) : 1f;
            // Elementwise: any split gives the same bits.
            context.ForBlocks(p.Length, 1 << 14, (start, end) =>
            {
                for (int i = start; i < end; i++)
                {
                    float grad = g[i] * gradientScale;
                    m[i] = beta1 * m[i] + (1 - beta1) * grad;
                    v[i] = beta2 * v[i] + (1 - beta2) * grad * grad;
                    p[i] = p[i] * keep - stepSize * m[i] / (MathF.Sqrt(v[i]) * inverseCorrection2 + epsilon);
                }
            });
        }
    }
}
