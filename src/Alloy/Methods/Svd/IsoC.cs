using Alloy.LinearAlgebra;
using Alloy.Methods.TaskVectors;

namespace Alloy.Methods.Svd;

/// <summary>
/// Isotropic merging in the common subspace (Iso-C): per matrix, M = Σₜ τₜ = U·S·Vᵀ is replaced by its flattened
/// spectrum mean(S)·U·Vᵀ, so every direction of the tasks' common subspace gets the same weight.
/// </summary>
public sealed class IsoC()
    : SvdMergeMethod(
        new(
            "iso_c",
            "Isotropic Merging in Common Subspace (Iso-C)",
            "Per matrix, the sum of the task vectors with a flattened spectrum."
        )
        {
            Paper = "https://arxiv.org/abs/2502.04959",
            Parameters = [ScalingFactor],
        }
    )
{
    public static readonly NumberParameter ScalingFactor = MethodParameter.Number(
        "scaling_factor",
        ParameterScope.Global,
        1,
        "Scale of the merged task vector."
    );

    protected override double NonMatrixScale(MergeInputs inputs) => inputs[ScalingFactor];

    protected override void MergeMatrix(
        MergeInputs inputs,
        TaskVectorSet tasks,
        int rows,
        int cols,
        DenseBackend linear,
        Span<float> delta
    )
    {
        int r = Math.Min(rows, cols);
        using var u = PooledArray.Rent((long)rows * r);
        using var s = PooledArray.Rent(r);
        using var vt = PooledArray.Rent((long)r * cols);
        tasks.Sum(delta);
        linear.Svd(delta, rows, cols, u.Span, s.Span, vt.Span);
        linear.Multiply(rows, cols, r, u.Span, vt.Span, delta, (float)(inputs[ScalingFactor] * MeanOf(s.Span)));
    }
}
