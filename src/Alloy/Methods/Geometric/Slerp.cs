using Alloy.Tensors;

namespace Alloy.Methods.Geometric;

/// <summary>
/// Spherical linear interpolation between the base and one other model, each tensor taken as one flat vector: the angle
/// comes from the normalized vectors, the coefficients are applied to the raw ones (so norms interpolate too).
/// </summary>
public sealed class Slerp()
    : MergeMethod(
        new("slerp", "SLERP", "Spherical interpolation between the base and one other model.")
        {
            Paper = "https://en.wikipedia.org/wiki/Slerp",
            BaseModel = BaseModelUse.Required,
            EmbeddingShapes = EmbeddingShapeRule.CommonSubmatrix,
            Elementwise = false,
            Parameters = [T],
        }
    )
{
    /// <summary>mergekit's colinearity limit: above this |cos θ| the two vectors are interpolated linearly.</summary>
    public const double DotThreshold = 0.9995;

    public static readonly NumberParameter T = MethodParameter.Number(
        "t",
        ParameterScope.Global,
        null,
        "Interpolation factor: 0 gives the base model, 1 the other model.",
        NumberRange.Fraction
    );

    public override int ScratchBuffers(int inputCount) => 0;

    private static readonly StatisticsLayout Statistics = new();
    private static readonly SumSlot BaseSquares = Statistics.FirstSum(),
        OtherSquares = Statistics.FirstSum(),
        Dot = Statistics.FirstSum();
    private static readonly ChunkPlan Streamed = Statistics.Plan();

    public override void Validate(MergeInputsInfo inputs) => InputRules.BaseAndOneOther(inputs, Name);

    /// <summary>Streamed: the two squared norms and the dot, then any split.</summary>
    public override ChunkPlan? Chunking(MergeInputsInfo inputs, long[] shape) =>
        inputs.Count == 1 ? ChunkPlan.Elementwise : Streamed;

    public override void Accumulate(MergeInputs unit, StatisticsPass pass)
    {
        var a = unit[unit.BaseIndex];
        var b = unit[InputRules.Other(unit)];
        pass.Add(BaseSquares, SpanMath.SumOfSquares(a));
        pass.Add(OtherSquares, SpanMath.SumOfSquares(b));
        pass.Add(Dot, SpanMath.Dot(a, b));
    }

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        if (inputs.Count == 1)
        {
            inputs[0].CopyTo(output);
            return;
        }
        var a = inputs[inputs.BaseIndex];
        var b = inputs[InputRules.Other(inputs)];
        double t = inputs[T];

        // mergekit normalizes a vector only when its norm exceeds 1e-8 (a zero tensor stays as it is).
        var stats = StatisticsOf(inputs);
        double na = Math.Sqrt(stats[BaseSquares]),
            nb = Math.Sqrt(stats[OtherSquares]);
        double cos = stats[Dot] / ((na > 1e-8 ? na : 1) * (nb > 1e-8 ? nb : 1));
        var (ca, cb) = Math.Abs(cos) > DotThreshold ? (1 - t, t) : Coefficients(Math.Acos(cos), t);
        SpanMath.Combine(a, ca, b, cb, output);
    }

    /// <summary>The slerp coefficients sin((1−t)θ)/sin θ and sin(tθ)/sin θ of the start and end vectors.</summary>
    public static (double Start, double End) Coefficients(double theta, double t)
    {
        double sin = Math.Sin(theta);
        return (Math.Sin((1 - t) * theta) / sin, Math.Sin(t * theta) / sin);
    }
}
