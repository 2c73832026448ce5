using Alloy.LinearAlgebra;
using Alloy.Methods.TaskVectors;

namespace Alloy.Methods.Svd;

/// <summary>
/// Task Singular Vectors merge (TSV-M): per matrix, each task vector keeps its top ⌊r/T⌋ singular triplets; the
/// concatenated left and right singular vectors are replaced by their nearest orthonormal sets (polar factors),
/// which removes the interference between tasks' directions, and τ = U⊥·diag(S)·V⊥ᵀ.
/// </summary>
public sealed class TsvMerge()
    : SvdMergeMethod(
        new(
            "tsv_m",
            "Task Singular Vectors Merge (TSV-M)",
            "Per matrix, each task vector's top singular directions, made orthogonal across tasks."
        )
        {
            Paper = "https://arxiv.org/abs/2412.00081",
            Parameters = [Alpha],
        }
    )
{
    public static readonly NumberParameter Alpha = MethodParameter.Number(
        "alpha",
        ParameterScope.PerModel,
        1,
        "Scale of each task vector, applied before the SVD (the same value for every model scales the merged task "
            + "vector)."
    );

    // alpha scales each τₜ, so non-matrix tensors get the mean of the scaled task vectors (FusionBench's list form;
    // one value for all models equals its scalar form, as the merge is homogeneous).
    protected override float[]? TaskScales(MergeInputs inputs) =>
        [.. InputRules.NonBase(inputs).Select(i => (float)inputs[Alpha, i])];

    protected override double NonMatrixScale(MergeInputs inputs) => 1;

    protected override void MergeMatrix(
        MergeInputs inputs,
        TaskVectorSet tasks,
        int rows,
        int cols,
        DenseBackend linear,
        Span<float> delta
    )
    {
        int r = Math.Min(rows, cols),
            count = tasks.Count,
            keep = r / count,
            total = keep * count;
        if (keep == 0)
        {
            // Fewer singular directions than tasks: each task keeps none (the reference's ⌊r/T⌋ = 0).
            delta.Clear();
            return;
        }
        using var tau = PooledArray.Rent((long)rows * cols);
        using var u = PooledArray.Rent((long)rows * r);
        using var s = PooledArray.Rent(r);
        using var vt = PooledArray.Rent((long)r * cols);
        using var uCat = PooledArray.Rent((long)rows * total);
        using var sCat = PooledArray.Rent(total);
        using var vtCat = PooledArray.Rent((long)total * cols);
        for (int t = 0; t < count; t++)
        {
            tasks.Write(t, tau.Span);
            linear.Svd(tau.Span, rows, cols, u.Span, s.Span, vt.Span);
            CopyTriplets(
                u.Span,
                s.Span,
                vt.Span,
                rows,
                cols,
                r,
                keep,
                uCat.Span,
                sCat.Span,
                vtCat.Span,
                total,
                t * keep
            );
        }
        // Polar factors into the buffers that held one task's factors (same sizes or larger).
        var uOrth = u.Span[..(rows * total)];
        var vtOrth = vt.Span[..(total * cols)];
        linear.Polar(uCat.Span, rows, total, uOrth);
        linear.Polar(vtCat.Span, total, cols, vtOrth);
        linear.Reconstruct(uOrth, sCat.Span, vtOrth, rows, cols, total, total, delta);
    }
}
