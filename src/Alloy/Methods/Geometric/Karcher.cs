using System.Buffers;
using System.Numerics.Tensors;
using Alloy.Tensors;

namespace Alloy.Methods.Geometric;

/// <summary>
/// The Karcher (Riemannian, Fréchet) mean of the models' directions on the unit sphere, by fixed-point iteration,
/// scaled by the weighted mean of their norms. Each tensor is one flat vector.
/// </summary>
public sealed class Karcher()
    : MergeMethod(
        new("karcher", "Karcher Mean", "The Riemannian mean of the models' directions, scaled by their mean norm.")
        {
            Paper = "https://en.wikipedia.org/wiki/Karcher_mean",
            EmbeddingShapes = EmbeddingShapeRule.CommonSubmatrix,
            Elementwise = false,
            Parameters = [MaxIterations, Tolerance, Weight],
        }
    )
{
    public static readonly IntegerParameter MaxIterations = MethodParameter.Integer(
        "max_iter",
        ParameterScope.Global,
        10,
        "Maximum number of iterations.",
        minimum: 0
    );

    public static readonly NumberParameter Tolerance = MethodParameter.Number(
        "tol",
        ParameterScope.Global,
        1e-5,
        "Convergence tolerance (on the tangent step), and the smallest norm a model may have to count.",
        NumberRange.NonNegative
    );

    public static readonly NumberParameter Weight = MethodParameter.Number(
        "weight",
        ParameterScope.PerModel,
        1,
        "Weight of each model (Alloy; mergekit weighs every model equally).",
        NumberRange.NonNegative
    );

    public override void Validate(MergeInputsInfo inputs)
    {
        if (Enumerable.Range(0, inputs.Count).Sum(i => inputs[Weight, i]) <= 0)
            throw new AlloyException(
                $"karcher: the weights of tensor '{inputs.TensorName}' are all zero; give at least one model a "
                    + $"positive weight"
            );
    }

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        if (inputs.Count == 1)
        {
            inputs[0].CopyTo(output);
            return;
        }
        int maxIter = inputs[MaxIterations];
        double tol = inputs[Tolerance];
        int count = inputs.Count;
        var alpha = new double[count];
        var norms = new double[count];
        double weightSum = Enumerable.Range(0, count).Sum(i => inputs[Weight, i]);
        for (int i = 0; i < count; i++)
        {
            alpha[i] = inputs[Weight, i] / weightSum;
            norms[i] = SpanMath.Norm(inputs[i]);
        }
        // Models with a (near) zero norm have no direction: they leave the mean but still count in the final scale.
        var valid = Enumerable.Range(0, count).Where(i => norms[i] > tol && alpha[i] > 0).ToArray();
        if (valid.Length == 0)
        {
            output.Clear();
            return;
        }
        double validSum = valid.Sum(i => alpha[i]);
        var a = valid.Select(i => alpha[i] / validSum).ToArray();

        // u, the current mean direction, lives in the output; start from the normalized weighted mean of the units.
        var u = output;
        u.Clear();
        for (int k = 0; k < valid.Length; k++)
            TensorPrimitives.MultiplyAdd(inputs[valid[k]], (float)(a[k] / norms[valid[k]]), u, u);
        double uNorm = SpanMath.Norm(u);
        if (uNorm < tol)
            TensorPrimitives.Multiply(inputs[valid[0]], (float)(1 / norms[valid[0]]), u);
        else
            TensorPrimitives.Multiply(u, (float)(1 / uNorm), u);

        float[] tangentBuffer = ArrayPool<float>.Shared.Rent(output.Length);
        try
        {
            var tangent = tangentBuffer.AsSpan(0, output.Length);
            for (int iteration = 0; iteration < maxIter; iteration++)
            {
                // T = Σ aᵢ·θᵢ/sin θᵢ·(uᵢ − cos θᵢ·u), with uᵢ = xᵢ/‖xᵢ‖: the xᵢ terms first, the u terms summed into
                // one coefficient.
                tangent.Clear();
                double uCoefficient = 0;
                for (int k = 0; k < valid.Length; k++)
                {
                    var x = inputs[valid[k]];
                    double cos = Math.Clamp(SpanMath.Dot(u, x) / norms[valid[k]], -1, 1);
                    double theta = Math.Acos(cos);
                    if (theta < tol)
                        continue;
                    double factor = a[k] * theta / Math.Sin(theta);
                    TensorPrimitives.MultiplyAdd(x, (float)(factor / norms[valid[k]]), tangent, tangent);
                    uCoefficient -= factor * cos;
                }
                TensorPrimitives.MultiplyAdd(u, (float)uCoefficient, tangent, tangent);
                double step = SpanMath.Norm(tangent);
                if (step < tol)
                    break;
                // The exponential map: move along the geodesic from u in the direction of T by ‖T‖.
                TensorPrimitives.Multiply(u, (float)Math.Cos(step), u);
                TensorPrimitives.MultiplyAdd(tangent, (float)(Math.Sin(step) / step), u, u);
                uNorm = SpanMath.Norm(u);
                if (uNorm > tol)
                    TensorPrimitives.Multiply(u, (float)(1 / uNorm), u);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(tangentBuffer);
        }

        // The scale is the weighted mean norm over all models, zero-norm ones included (mergekit's rule).
        double scale = 0;
        for (int i = 0; i < count; i++)
            scale += alpha[i] * norms[i];
        TensorPrimitives.Multiply(u, (float)scale, output);
    }
}
