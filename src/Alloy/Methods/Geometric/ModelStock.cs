using System.Numerics.Tensors;
using Alloy.Tensors;

namespace Alloy.Methods.Geometric;

/// <summary>
/// Model Stock: moves from the base towards the average of the fine-tunes by t = N·cos θ/(1 + (N−1)·cos θ), where
/// cos θ is the mean pairwise cosine between their task vectors (per tensor, or per row with filter_wise).
/// </summary>
public sealed class ModelStock()
    : MergeMethod(
        new(
            "model_stock",
            "Model Stock",
            "Moves from the base towards the fine-tunes' average by a factor from the angle between their task vectors."
        )
        {
            Paper = "https://arxiv.org/abs/2403.19522",
            BaseModel = BaseModelUse.Required,
            EmbeddingShapes = EmbeddingShapeRule.CommonSubmatrix,
            Elementwise = false,
            Parameters = [FilterWise],
        }
    )
{
    public static readonly BooleanParameter FilterWise = MethodParameter.Boolean(
        "filter_wise",
        ParameterScope.Global,
        false,
        "Compute t per row (along the last dimension) instead of per tensor."
    );

    public override int ScratchBuffers(int inputCount) => 0;

    public override void Validate(MergeInputsInfo inputs)
    {
        // The base alone (a slice whose only source is the base) passes through; mergekit does the same.
        if (inputs.Count == 1 && inputs.BaseIndex == 0)
            return;
        if (inputs.Count < 3 || inputs.BaseIndex < 0)
            throw InputRules.Refuse(inputs, Name, "model_stock needs base_model plus at least two other models");
    }

    /// <summary>
    /// Streamed: per tensor, the Gram matrix of the task vectors (its upper triangle row by row); with filter_wise,
    /// chunks of whole rows and nothing gathered first.
    /// </summary>
    public override ChunkPlan? Chunking(MergeInputsInfo inputs, long[] shape)
    {
        if (inputs.Count == 1)
            return ChunkPlan.Elementwise;
        if (RowLength(inputs, shape) is { } row)
            return new ChunkPlan { RowLength = row };
        return GramLayout(inputs.Count - 1).Plan;
    }

    /// <summary>The Gram matrix of n task vectors: one sum per entry of its upper triangle, row by row.</summary>
    private static (ChunkPlan Plan, SumSlot[] Entries) GramLayout(int n)
    {
        var layout = new StatisticsLayout();
        var entries = layout.FirstSums(n * (n + 1) / 2);
        return (layout.Plan(), entries);
    }

    public override void Accumulate(MergeInputs unit, StatisticsPass pass)
    {
        var models = InputRules.NonBase(unit);
        var gram = new double[models.Length * (models.Length + 1) / 2];
        AddGram(unit, models, 0, unit.Length, gram);
        var entries = GramLayout(models.Length).Entries;
        for (int g = 0; g < gram.Length; g++)
            pass.Add(entries[g], gram[g]);
    }

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        var baseValues = inputs[inputs.BaseIndex];
        if (inputs.Count == 1)
        {
            baseValues.CopyTo(output);
            return;
        }
        var models = InputRules.NonBase(inputs);
        int n = models.Length;

        // Σᵢ (xᵢ − base) in the output; each row then becomes base + (t/N)·Σᵢ (xᵢ − base) = t·mean + (1−t)·base.
        output.Clear();
        foreach (int i in models)
            SpanMath.AddScaledDifference(inputs[i], baseValues, 1, output);

        var gram = new double[n * (n + 1) / 2];
        if (RowLength(inputs, inputs.Shape) is not { } length)
        {
            var stats = StatisticsOf(inputs);
            var entries = GramLayout(n).Entries;
            for (int g = 0; g < gram.Length; g++)
                gram[g] = stats[entries[g]];
            double t = InterpolationFactor(gram, n, inputs, null);
            TensorPrimitives.MultiplyAdd(output, (float)(t / n), baseValues, output);
            return;
        }
        for (int start = 0; start < output.Length; start += (int)length)
        {
            Array.Clear(gram);
            AddGram(inputs, models, start, (int)length, gram);
            double t = InterpolationFactor(gram, n, inputs, (inputs.ElementOffset + start) / length);
            var row = output.Slice(start, (int)length);
            TensorPrimitives.MultiplyAdd(row, (float)(t / n), baseValues.Slice(start, (int)length), row);
        }
    }

    /// <summary>With filter_wise, the length of a row (the last dimension); null for one t per tensor.</summary>
    private static long? RowLength(MergeInputsInfo inputs, long[] shape) =>
        inputs[FilterWise] && shape.Length > 0 && shape[^1] > 0 ? shape[^1] : null;

    /// <summary>
    /// Adds the task vectors' Gram matrix over [start, start + length) to <paramref name="gram"/> (upper triangle, row
    /// by row).
    /// </summary>
    private static void AddGram(MergeInputs inputs, int[] models, int start, int length, Span<double> gram)
    {
        var b = inputs[inputs.BaseIndex].Slice(start, length);
        int g = 0;
        for (int i = 0; i < models.Length; i++)
        for (int j = i; j < models.Length; j++)
            gram[g++] += SpanMath.DeltaDot(
                inputs[models[i]].Slice(start, length),
                inputs[models[j]].Slice(start, length),
                b
            );
    }

    /// <summary>
    /// t = N·c/(1 + (N−1)·c) from the mean pairwise cosine c of the task vectors (Gram matrix, upper triangle).
    /// </summary>
    private static double InterpolationFactor(double[] gram, int n, MergeInputsInfo inputs, long? row)
    {
        // Index of (i, j), i ≤ j, in the upper triangle stored row by row.
        int At(int i, int j) => i * n - i * (i - 1) / 2 + (j - i);
        double sum = 0;
        for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            sum += Math.Clamp(gram[At(i, j)] / Math.Max(Math.Sqrt(gram[At(i, i)] * gram[At(j, j)]), 1e-6), -1, 1);
        double cos = sum / (n * (n - 1) / 2);
        double denominator = 1 + (n - 1) * cos;
        // mergekit divides by zero here and writes inf/NaN; near zero, t explodes just as badly.
        if (Math.Abs(denominator) < 1e-6)
            throw new AlloyException(
                $"model_stock: tensor '{inputs.TensorName}'{(row is { } r ? $" row {r}" : "")}: the mean cosine "
                    + $"between the task vectors is {cos:G6} = −1/(N−1) for N = {n} models, so t = N·cos/(1 + "
                    + $"(N−1)·cos) divides by zero; the models' changes cancel out — leave one of them out or use "
                    + $"another method"
            );
        return n * cos / denominator;
    }
}
