using System.Numerics.Tensors;
using Alloy.Tensors;

namespace Alloy.Runtime.Compute;

/// <summary>The row kernels of the forward pass: vectorized, allocation-free, one row at a time.</summary>
public static class VectorMath
{
    /// <summary>
    /// RMSNorm of one row: y = (x / √(mean(x²) + ε)) · weight, the sum of squares accumulated in double. Returns
    /// 1/√(mean(x²) + ε), which backward needs. <paramref name="y"/> may be <paramref name="x"/>.
    /// </summary>
    public static float RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, double epsilon, Span<float> y)
    {
        float inverse = (float)(1.0 / Math.Sqrt(SpanMath.SumOfSquares(x) / x.Length + epsilon));
        // Normalise, then scale by the weight: two roundings, in transformers' order.
        TensorPrimitives.Multiply(x, inverse, y);
        TensorPrimitives.Multiply(y, weight, y);
        return inverse;
    }

    /// <summary>
    /// SwiGLU's activation: h = silu(gate) · up, silu(g) = g · σ(g). <paramref name="h"/> must not overlap the inputs.
    /// </summary>
    public static void SwiGlu(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> h)
    {
        TensorPrimitives.Sigmoid(gate, h);
        TensorPrimitives.Multiply(h, gate, h);
        TensorPrimitives.Multiply(h, up, h);
    }

    /// <summary>
    /// RMSNorm's backward for one row: dx (+)= r·(w∘dy) − x·r³/n·Σ(w∘dy∘x), with r the forward's 1/rms and the sum in
    /// double; <paramref name="weightTerm"/> receives dy∘(x·r), whose column sums are the weight's gradient.
    /// </summary>
    public static void RmsNormBackward(
        ReadOnlySpan<float> x,
        float inverseRms,
        ReadOnlySpan<float> weight,
        ReadOnlySpan<float> dy,
        Span<float> dx,
        bool accumulate,
        Span<float> weightTerm
    )
    {
        double dot = 0;
        for (int i = 0; i < x.Length; i++)
            dot += (double)weight[i] * dy[i] * x[i];
        float r = inverseRms,
            correction = (float)(dot * r * r * r / x.Length);
        for (int i = 0; i < x.Length; i++)
        {
            float value = r * weight[i] * dy[i] - x[i] * correction;
            dx[i] = accumulate ? dx[i] + value : value;
            weightTerm[i] = dy[i] * (x[i] * r);
        }
    }

    /// <summary>
    /// SwiGLU's backward for one row, h = silu(g)·u: du = dh·silu(g), dg = dh·u·σ(g)·(1 + g·(1 − σ(g))).
    /// </summary>
    public static void SwiGluBackward(
        ReadOnlySpan<float> gate,
        ReadOnlySpan<float> up,
        ReadOnlySpan<float> dh,
        Span<float> dGate,
        Span<float> dUp
    )
    {
        for (int i = 0; i < gate.Length; i++)
        {
            float g = gate[i],
                sigmoid = 1f / (1f + MathF.Exp(-g));
            dUp[i] = dh[i] * g * sigmoid;
            dGate[i] = dh[i] * up[i] * sigmoid * (1f + g * (1f - sigmoid));
        }
    }

    /// <summary>
    /// target[j] += Σ_rows m[row, j], summed in double over the rows in order. Parallel over blocks of columns, so the
    /// result does not depend on the thread count (bias and norm-weight gradients).
    /// </summary>
    public static void AddColumnSums(ComputeContext context, Matrix m, float[] target)
    {
        if (target.Length != m.Columns)
            throw new ArgumentException($"{target.Length} sums for {m.Columns} columns");
        const int Block = 64;
        var data = m.Data;
        int rows = m.Rows,
            columns = m.Columns;
        context.ForBlocks(columns, Block, (start, end) =>
        {
            Span<double> acc = stackalloc double[Block];
            for (int j = start; j < end; j++)
                acc[j - start] = target[j];
            for (int r = 0; r < rows; r++)
            {
                int offset = r * columns;
                for (int j = start; j < end; j++)
                    acc[j - start] += data[offset + j];
            }
            for (int j = start; j < end; j++)
                target[j] = (float)acc[j - start];
        });
    }

    /// <summary>
    /// exp(xᵢ − max(x)) into <paramref name="exps"/> (at least as long as x; it may be x itself), and their sum in
    /// double: the stable softmax's numerators and denominator.
    /// </summary>
    public static double ShiftedExp(ReadOnlySpan<float> x, Span<float> exps, out float max)
    {
        max = TensorPrimitives.Max(x);
        var shifted = exps[..x.Length];
        TensorPrimitives.Subtract(x, max, shifted);
        TensorPrimitives.Exp(shifted, shifted);
        return SpanMath.Sum(shifted);
    }

    /// <summary>
    /// log Σ exp(xᵢ), the normaliser of a log-softmax (log p(i) = xᵢ − LogSumExp(x)), by <see cref="ShiftedExp"/>;
    /// <paramref name="scratch"/> receives its exponentials.
    /// </summary>
    public static double LogSumExp(ReadOnlySpan<float> x, Span<float> scratch) =>
        Math.Log(ShiftedExp(x, scratch, out float max)) + max;

    /// <summary>
    /// The index of the largest value; the first one on ties (as torch.argmax). NaN is never the largest.
    /// </summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best] || float.IsNaN(values[best]))
                best = i;
        return best;
    }
}
