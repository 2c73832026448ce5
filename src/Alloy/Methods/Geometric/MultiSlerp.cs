using System.Buffers;
using System.Numerics.Tensors;
using Alloy.Tensors;

namespace Alloy.Methods.Geometric;

/// <summary>
/// mergekit's Multi-SLERP: a weighted spherical mean of any number of models (or of their task vectors, with a base),
/// each tensor taken as one flat vector, scaled by the weighted mean of the norms.
/// </summary>
public sealed class MultiSlerp()
    : MergeMethod(
        new(
            "multislerp",
            "Multi-SLERP",
            "A weighted spherical mean of any number of models (or of their task vectors, with a base)."
        )
        {
            Paper = "https://goddard.blog/posts/multislerp-wow-what-a-cool-idea",
            BaseModel = BaseModelUse.Optional,
            Elementwise = false,
            Parameters = [Weight, NormalizeWeights, Epsilon],
        }
    )
{
    public static readonly NumberParameter Weight = MethodParameter.Number(
        "weight",
        ParameterScope.PerModel,
        null,
        "Weight of each model."
    );

    public static readonly BooleanParameter NormalizeWeights = MethodParameter.Boolean(
        "normalize_weights",
        ParameterScope.Global,
        true,
        "Divide the weights by their sum."
    );

    public static readonly NumberParameter Epsilon = MethodParameter.Number(
        "eps",
        ParameterScope.Global,
        1e-8,
        "Small constant for numerical stability (added to norms; a mean direction shorter than this counts as zero).",
        NumberRange.NonNegative
    );

    public override void Validate(MergeInputsInfo inputs)
    {
        var models = InputRules.NonBase(inputs);
        if (models.Length == 0)
            throw InputRules.Refuse(inputs, Name, "multislerp needs at least one model besides base_model");
        if (inputs[NormalizeWeights] && Math.Abs(models.Sum(i => inputs[Weight, i])) < 1e-12)
            throw new AlloyException(
                $"multislerp: the weights of tensor '{inputs.TensorName}' sum to zero, so they cannot be normalized; "
                    + $"change the weights or set normalize_weights: false"
            );
    }

    /// <summary>
    /// Streamed: the squared norm of each vector (in model order), then the squared norm of their weighted mean
    /// direction m.
    /// </summary>
    public override ChunkPlan? Chunking(MergeInputsInfo inputs, long[] shape)
    {
        int models = InputRules.NonBase(inputs).Length;
        return models == 1 ? ChunkPlan.Elementwise : Layout(models).Plan;
    }

    private static (ChunkPlan Plan, SumSlot[] Squares, SumSlot MeanSquares) Layout(int models)
    {
        var layout = new StatisticsLayout();
        var squares = layout.FirstSums(models);
        var mean = layout.LastSum();
        return (layout.Plan(), squares, mean);
    }

    public override void Accumulate(MergeInputs unit, StatisticsPass pass)
    {
        var models = InputRules.NonBase(unit);
        float[]? scratch = unit.BaseIndex >= 0 ? ArrayPool<float>.Shared.Rent(unit.Length) : null;
        float[]? mean = pass.Kind == StatisticsPassKind.Last ? ArrayPool<float>.Shared.Rent(unit.Length) : null;
        try
        {
            var delta = scratch is null ? [] : scratch.AsSpan(0, unit.Length);
            var slots = Layout(models.Length);
            if (mean is null)
            {
                for (int k = 0; k < models.Length; k++)
                    pass.Add(slots.Squares[k], SpanMath.SumOfSquares(Vector(unit, models[k], delta)));
                return;
            }
            var m = mean.AsSpan(0, unit.Length);
            AddDirections(unit, models, Scales(unit, models, unit.Statistics!).Directions, delta, m);
            pass.Add(slots.MeanSquares, SpanMath.SumOfSquares(m));
        }
        finally
        {
            if (scratch is not null)
                ArrayPool<float>.Shared.Return(scratch);
            if (mean is not null)
                ArrayPool<float>.Shared.Return(mean);
        }
    }

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        var models = InputRules.NonBase(inputs);
        if (models.Length == 1)
        {
            inputs[models[0]].CopyTo(output);
            return;
        }
        double eps = inputs[Epsilon];
        var stats = StatisticsOf(inputs);
        var (weights, directions, normSum) = Scales(inputs, models, stats);
        bool hasBase = inputs.BaseIndex >= 0;
        float[]? scratch = hasBase ? ArrayPool<float>.Shared.Rent(output.Length) : null;
        try
        {
            var delta = scratch is null ? [] : scratch.AsSpan(0, output.Length);
            // m = Σ wᵢ·xᵢ/(‖xᵢ‖ + eps), the weighted Euclidean mean of the unit vectors, accumulated in the output.
            AddDirections(inputs, models, directions, delta, output);
            double meanNorm = Math.Sqrt(stats[Layout(models.Length).MeanSquares]);
            if (meanNorm < eps)
            {
                if (models.Length != 2)
                    throw new AlloyException(
                        $"multislerp: for tensor '{inputs.TensorName}' the weighted mean of the models' directions is "
                            + $"zero (antipodal models, or weights that exactly balance them out); change the weights"
                    );
                // Two antipodal vectors: mergekit falls back to the weighted sum.
                output.Clear();
                for (int k = 0; k < 2; k++)
                    TensorPrimitives.MultiplyAdd(Vector(inputs, models[k], delta), (float)weights[k], output, output);
            }
            else
            {
                // mergekit then projects the units onto the tangent space at m̂ = m/‖m‖ and maps their weighted sum τ
                // back with the exponential map, p = m̂·cos r + τ·sin r / r with r = ‖τ‖ + eps. At the weighted mean τ
                // = Σ wᵢ·(uᵢ − (uᵢ·m̂)·m̂) = m − (m·m̂)·m̂ = 0 exactly, so p = m̂·cos(eps); computing τ would only add
                // rounding noise.
                TensorPrimitives.Multiply(output, (float)(Math.Cos(eps) * normSum / meanNorm), output);
            }
            if (hasBase)
                TensorPrimitives.Add(output, inputs[inputs.BaseIndex], output);
        }
        finally
        {
            if (scratch is not null)
                ArrayPool<float>.Shared.Return(scratch);
        }
    }

    /// <summary>
    /// The weights (normalized if asked), each vector's scale wᵢ/(‖xᵢ‖ + eps) towards the mean direction, and the
    /// weighted mean of the norms Σ wᵢ·‖xᵢ‖, from the first sums.
    /// </summary>
    private static (double[] Weights, double[] Directions, double NormSum) Scales(
        MergeInputsInfo inputs,
        int[] models,
        TensorStatistics stats
    )
    {
        double eps = inputs[Epsilon];
        var weights = models.Select(i => inputs[Weight, i]).ToArray();
        if (inputs[NormalizeWeights])
        {
            double sum = weights.Sum();
            for (int k = 0; k < weights.Length; k++)
                weights[k] /= sum;
        }
        var directions = new double[models.Length];
        var squares = Layout(models.Length).Squares;
        double normSum = 0;
        for (int k = 0; k < models.Length; k++)
        {
            double norm = Math.Sqrt(stats[squares[k]]);
            normSum += weights[k] * norm;
            directions[k] = weights[k] / (norm + eps);
        }
        return (weights, directions, normSum);
    }

    /// <summary>m = Σ (float)directionᵢ·xᵢ, accumulated in model order into <paramref name="mean"/>.</summary>
    private static void AddDirections(
        MergeInputs inputs,
        int[] models,
        double[] directions,
        Span<float> scratch,
        Span<float> mean
    )
    {
        mean.Clear();
        for (int k = 0; k < models.Length; k++)
            TensorPrimitives.MultiplyAdd(Vector(inputs, models[k], scratch), (float)directions[k], mean, mean);
    }

    /// <summary>
    /// Model i's vector: the model itself, or with a base its task vector x − base, written to
    /// <paramref name="scratch"/>.
    /// </summary>
    private static ReadOnlySpan<float> Vector(MergeInputs inputs, int i, Span<float> scratch)
    {
        if (inputs.BaseIndex < 0)
            return inputs[i];
        TensorPrimitives.Subtract(inputs[i], inputs[inputs.BaseIndex], scratch);
        return scratch;
    }
}
