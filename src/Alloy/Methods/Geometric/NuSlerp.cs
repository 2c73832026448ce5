using System.Buffers;
using System.Numerics.Tensors;
using Alloy.Tensors;

namespace Alloy.Methods.Geometric;

/// <summary>
/// mergekit's NuSLERP: slerp of two models with t = w₂/(w₁ + w₂), over the whole tensor or per row/column, and with a
/// base model a slerp of the two task vectors added back to the base.
/// </summary>
public sealed class NuSlerp()
    : MergeMethod(
        new(
            "nuslerp",
            "NuSLERP",
            "Slerp of two models weighted by w₂/(w₁ + w₂), whole tensors or vector by vector; with a base, of their "
                + "task vectors."
        )
        {
            BaseModel = BaseModelUse.Optional,
            EmbeddingShapes = EmbeddingShapeRule.CommonSubmatrix,
            Elementwise = false,
            Parameters = [Weight, RowWise, Flatten],
        }
    )
{
    public static readonly NumberParameter Weight = MethodParameter.Number(
        "weight",
        ParameterScope.PerModel,
        null,
        "Relative weight of each of the two models; t = w₂/(w₁ + w₂)."
    );

    public static readonly BooleanParameter RowWise = MethodParameter.Boolean(
        "nuslerp_row_wise",
        ParameterScope.Global,
        false,
        "With nuslerp_flatten off: interpolate the vectors along the first dimension (W[:, j]) instead of the last "
            + "(W[i, :])."
    );

    private static readonly StatisticsLayout Statistics = new();
    private static readonly SumSlot FirstSquares = Statistics.FirstSum(),
        SecondSquares = Statistics.FirstSum(),
        Dot = Statistics.FirstSum();
    private static readonly ChunkPlan FlatStreamed = Statistics.Plan();

    public static readonly BooleanParameter Flatten = MethodParameter.Boolean(
        "nuslerp_flatten",
        ParameterScope.Global,
        true,
        "Interpolate the whole tensor as one vector; off: vector by vector."
    );

    public override void Validate(MergeInputsInfo inputs)
    {
        if (inputs.Count == 1)
            return;
        if (inputs.BaseIndex >= 0 && inputs.Count != 3)
            throw InputRules.Refuse(
                inputs,
                Name,
                "with a base_model, nuslerp needs exactly two other models (the base can not be one of the two models "
                    + "to merge)"
            );
        if (inputs.BaseIndex < 0 && inputs.Count != 2)
            throw InputRules.Refuse(inputs, Name, "nuslerp needs exactly two models (plus an optional base_model)");
    }

    /// <summary>
    /// Streamed over flat vectors (the two squared norms and the dot) and over rows (chunks of whole rows);
    /// vectors along the first axis need the whole tensor.
    /// </summary>
    public override ChunkPlan? Chunking(MergeInputsInfo inputs, long[] shape) =>
        inputs.Count == 1
            ? ChunkPlan.Elementwise
            : ModeOf(inputs, shape) switch
            {
                Mode.Flat => FlatStreamed,
                Mode.LastAxis => new ChunkPlan { RowLength = shape[^1] },
                _ => null,
            };

    public override void Accumulate(MergeInputs unit, StatisticsPass pass)
    {
        var models = InputRules.NonBase(unit);
        ReadOnlySpan<float> v0 = unit[models[0]],
            v1 = unit[models[1]];
        float[]? scratch = unit.BaseIndex >= 0 ? ArrayPool<float>.Shared.Rent(2 * unit.Length) : null;
        try
        {
            if (scratch is not null)
            {
                // With a base, the task vectors.
                var d0 = scratch.AsSpan(0, unit.Length);
                var d1 = scratch.AsSpan(unit.Length, unit.Length);
                TensorPrimitives.Subtract(v0, unit[unit.BaseIndex], d0);
                TensorPrimitives.Subtract(v1, unit[unit.BaseIndex], d1);
                v0 = d0;
                v1 = d1;
            }
            pass.Add(FirstSquares, SpanMath.SumOfSquares(v0));
            pass.Add(SecondSquares, SpanMath.SumOfSquares(v1));
            pass.Add(Dot, SpanMath.Dot(v0, v1));
        }
        finally
        {
            if (scratch is not null)
                ArrayPool<float>.Shared.Return(scratch);
        }
    }

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        if (inputs.Count == 1)
        {
            inputs[0].CopyTo(output);
            return;
        }
        var models = InputRules.NonBase(inputs);
        double t = Factor(inputs, models);
        var mode = ModeOf(inputs, inputs.Shape);
        var flat = mode == Mode.Flat ? StatisticsOf(inputs) : null;

        if (inputs.BaseIndex < 0)
        {
            Interpolate(inputs[models[0]], inputs[models[1]], t, mode, inputs.Shape, flat, output);
            return;
        }
        // Task-vector slerp: base + nuslerp(x₁ − base, x₂ − base). The first task vector lives in the output, which
        // every mode may overwrite in place (each element is read before it is written).
        var baseValues = inputs[inputs.BaseIndex];
        float[] scratch = ArrayPool<float>.Shared.Rent(output.Length);
        try
        {
            var v1 = scratch.AsSpan(0, output.Length);
            TensorPrimitives.Subtract(inputs[models[0]], baseValues, output);
            TensorPrimitives.Subtract(inputs[models[1]], baseValues, v1);
            Interpolate(output, v1, t, mode, inputs.Shape, flat, output);
            TensorPrimitives.Add(output, baseValues, output);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    private enum Mode
    {
        Flat,
        LastAxis,
        FirstAxis,
    }

    /// <summary>
    /// A 1-D tensor is one vector in every mode (mergekit's transpose of dim 0 and -1 is then a no-op).
    /// </summary>
    private static Mode ModeOf(MergeInputsInfo inputs, long[] shape) =>
        inputs[Flatten] || shape.Length < 2 ? Mode.Flat
        : inputs[RowWise] ? Mode.FirstAxis
        : Mode.LastAxis;

    /// <summary>t = w₂/(w₁ + w₂), or ½ when the weights cancel.</summary>
    private static double Factor(MergeInputsInfo inputs, int[] models)
    {
        double w0 = inputs[Weight, models[0]],
            w1 = inputs[Weight, models[1]];
        return Math.Abs(w0 + w1) < 1e-6 ? 0.5 : w1 / (w0 + w1);
    }

    /// <summary>
    /// Flat mode takes its norms and dot from the tensor's statistics; the other modes compute them per vector.
    /// </summary>
    private static void Interpolate(
        ReadOnlySpan<float> v0,
        ReadOnlySpan<float> v1,
        double t,
        Mode mode,
        long[] shape,
        TensorStatistics? flat,
        Span<float> output
    )
    {
        int n = output.Length;
        if (n == 0)
            return;
        if (mode == Mode.FirstAxis)
        {
            InterpolateColumns(v0, v1, t, (int)shape[0], output);
            return;
        }
        if (mode == Mode.Flat)
        {
            var (c0, c1) = Coefficients(flat![FirstSquares], flat[SecondSquares], flat[Dot], t);
            SpanMath.Combine(v0, c0, v1, c1, output);
            return;
        }
        int length = (int)shape[^1];
        for (int start = 0; start < n; start += length)
        {
            var r0 = v0.Slice(start, length);
            var r1 = v1.Slice(start, length);
            var (c0, c1) = Coefficients(SpanMath.SumOfSquares(r0), SpanMath.SumOfSquares(r1), SpanMath.Dot(r0, r1), t);
            SpanMath.Combine(r0, c0, r1, c1, output.Slice(start, length));
        }
    }

    /// <summary>Vectors along the first axis: element (i, j) of an [m, n/m] view belongs to vector j.</summary>
    private static void InterpolateColumns(
        ReadOnlySpan<float> v0,
        ReadOnlySpan<float> v1,
        double t,
        int rows,
        Span<float> output
    )
    {
        int columns = output.Length / rows;
        // Accumulate every column's squared norms and dot row by row, so memory is read in order.
        double[] sums = ArrayPool<double>.Shared.Rent(3 * columns);
        try
        {
            var s00 = sums.AsSpan(0, columns);
            var s11 = sums.AsSpan(columns, columns);
            var s01 = sums.AsSpan(2 * columns, columns);
            s00.Clear();
            s11.Clear();
            s01.Clear();
            for (int i = 0; i < rows; i++)
            {
                var r0 = v0.Slice(i * columns, columns);
                var r1 = v1.Slice(i * columns, columns);
                for (int j = 0; j < columns; j++)
                {
                    double a = r0[j],
                        b = r1[j];
                    s00[j] += a * a;
                    s11[j] += b * b;
                    s01[j] += a * b;
                }
            }
            // The sums are spent: keep each column's coefficients in place of its squared norms.
            for (int j = 0; j < columns; j++)
                (s00[j], s11[j]) = Coefficients(s00[j], s11[j], s01[j], t);
            for (int i = 0; i < rows; i++)
            {
                var r0 = v0.Slice(i * columns, columns);
                var r1 = v1.Slice(i * columns, columns);
                var row = output.Slice(i * columns, columns);
                for (int j = 0; j < columns; j++)
                    row[j] = (float)(s00[j] * r0[j] + s11[j] * r1[j]);
            }
        }
        finally
        {
            ArrayPool<double>.Shared.Return(sums);
        }
    }

    /// <summary>
    /// nuslerp's per-vector rule from the squared norms and the dot: norms clamped at 1e-7, the cosine clamped to
    /// [−1, 1], and a lerp where |sin θ| &lt; 1e-8 (no 0.9995 threshold, unlike slerp).
    /// </summary>
    private static (double, double) Coefficients(double squared0, double squared1, double dot, double t)
    {
        double cos = dot / (Math.Max(Math.Sqrt(squared0), 1e-7) * Math.Max(Math.Sqrt(squared1), 1e-7));
        double theta = Math.Acos(Math.Clamp(cos, -1, 1));
        return Math.Abs(Math.Sin(theta)) < 1e-8 ? (1 - t, t) : Slerp.Coefficients(theta, t);
    }
}
