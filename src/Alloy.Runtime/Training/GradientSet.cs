using Alloy.Runtime.Compute;
using Alloy.Runtime.Models;
using Alloy.Tensors;

namespace Alloy.Runtime.Training;

/// <summary>
/// One gradient buffer per parameter, of its shape, in the parameter set's order. Backward passes add into these
/// buffers (so several micro-batches accumulate until <see cref="Clear"/>); a tied head and the embedding share one
/// parameter and so one buffer.
/// </summary>
public sealed class GradientSet
{
    private readonly Dictionary<Parameter, float[]> _byParameter = new(ReferenceEqualityComparer.Instance);

    public GradientSet(ParameterSet parameters)
    {
        Parameters = parameters;
        foreach (var p in parameters)
            _byParameter.Add(p, new float[p.Data.Length]);
    }

    private GradientSet(ParameterSet parameters, GradientSet all)
    {
        Parameters = parameters;
        foreach (var p in parameters)
            _byParameter.Add(p, all[p]);
    }

    /// <summary>
    /// The gradients of <paramref name="subset"/> (some of this set's parameters), sharing these buffers: what an
    /// optimizer of part of a model steps with, and what its norm is computed over.
    /// </summary>
    public GradientSet Subset(ParameterSet subset) => new(subset, this);

    public ParameterSet Parameters { get; }

    /// <summary>
    /// The gradient buffer of <paramref name="parameter"/>, laid out as its <see cref="Parameter.Data"/>.
    /// </summary>
    public float[] this[Parameter parameter] => _byParameter[parameter];

    /// <summary>The gradient of the parameter of that Hugging Face name.</summary>
    public float[] this[string name] => _byParameter[Parameters[name]];

    public void Clear(ComputeContext context) =>
        context.For(Parameters.Count, i => Array.Clear(_byParameter[Parameters[i]]));

    /// <summary>
    /// √(Σ g²) over every parameter, summed in double, parameter by parameter in order (deterministic).
    /// </summary>
    public double GlobalNorm(ComputeContext context) =>
        Math.Sqrt(context.Sum(Parameters.Count, i => SpanMath.SumOfSquares(_byParameter[Parameters[i]])));

    /// <summary>Multiplies every gradient by <paramref name="factor"/>.</summary>
    public void Scale(ComputeContext context, float factor) => context.For(Parameters.Count, i =>
        {
            var g = _byParameter[Parameters[i]];
            System.Numerics.Tensors.TensorPrimitives.Multiply(g, factor, g);
        });
}
