using Alloy.LinearAlgebra;
using Alloy.Methods.TaskVectors;

namespace Alloy.Methods.Svd;

/// <summary>
/// Isotropic merging in common and task-specific subspaces (Iso-CTS): per matrix, the top directions of
/// M = Σₜ τₜ (a common_space_fraction of them) are kept, and the rest of the space is shared equally among the tasks,
/// each contributing the top singular directions of its task vector with the common subspace projected out; the
/// combined left and right directions are orthogonalised (polar factors) and given a flat spectrum, the mean of the
/// combined singular values.
/// </summary>
public sealed class IsoCts()
    : SvdMergeMethod(
        new(
            "iso_cts",
            "Isotropic Merging in Common and Task-Specific Subspaces (Iso-CTS)",
            "Iso-C over the common subspace of the task vectors plus each task's own top directions, with a flat "
                + "spectrum."
        )
        {
            Paper = "https://arxiv.org/abs/2502.04959",
            Parameters = [ScalingFactor, CommonSpaceFraction],
        }
    )
{
    public static readonly NumberParameter ScalingFactor = MethodParameter.Number(
        "scaling_factor",
        ParameterScope.Global,
        1,
        "Scale of the merged task vector."
    );

    public static readonly NumberParameter CommonSpaceFraction = MethodParameter.Number(
        "common_space_fraction",
        ParameterScope.Global,
        0.8,
        "Fraction of each matrix's singular directions taken from the common subspace of Σ τₜ.",
        NumberRange.Fraction
    );

    protected override double NonMatrixScale(MergeInputs inputs) => inputs[ScalingFactor];

    /// <summary>
    /// Sizes of the common block and of each task's block, as the reference computes them: the common size is
    /// ⌊r·fraction⌋, then moved so the remainder divides evenly among the tasks (rounding half to even, like Python's
    /// round). Null when the rounding would need more task directions than the matrix has.
    /// </summary>
    internal static (int Common, int PerTask)? Split(int r, int tasks, double fraction)
    {
        int common = (int)(r * fraction);
        int taskTotal = (int)Math.Round((r - common) / (double)tasks, MidpointRounding.ToEven) * tasks;
        common = r - taskTotal;
        return common < 0 ? null : (common, taskTotal / tasks);
    }

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
            count = tasks.Count;
        double fraction = inputs[CommonSpaceFraction];
        var (common, perTask) = Split(r, count, fraction)
            ?? throw new AlloyException(
                $"{Name}: tensor '{inputs.TensorName}' ({rows}×{cols}) has {r} singular directions, too few to give "
                    + $"each of {count} task vectors an equal share with common_space_fraction = {fraction}; raise "
                    + $"common_space_fraction"
            );

        using var u = PooledArray.Rent((long)rows * r);
        using var s = PooledArray.Rent(r);
        using var vt = PooledArray.Rent((long)r * cols);
        using var uComb = PooledArray.Rent((long)rows * r);
        using var sComb = PooledArray.Rent(r);
        using var vtComb = PooledArray.Rent((long)r * cols);
        using var tau = PooledArray.Rent((long)rows * cols);
        using var projection = PooledArray.Rent((long)Math.Max(common, 1) * cols);

        // The common subspace: the top `common` singular triplets of Σ τₜ, placed after the task blocks (the
        // reference's layout; the order does not change the result).
        tasks.Sum(tau.Span);
        linear.Svd(tau.Span, rows, cols, u.Span, s.Span, vt.Span);
        int offset = count * perTask;
        CopyTriplets(u.Span, s.Span, vt.Span, rows, cols, r, common, uComb.Span, sComb.Span, vtComb.Span, r, offset);

        // Each task's block: the top perTask triplets of τₜ − U_c·U_cᵀ·τₜ (the copy of U_c in uComb stays intact).
        var uc = uComb.Span;
        for (int t = 0; t < count && perTask > 0; t++)
        {
            tasks.Write(t, tau.Span);
            if (common > 0)
            {
                // P = U_cᵀ·τ (common×cols), then τ −= U_c·P; U_c is read as columns [offset, offset+common) of uComb.
                linear.Gemm(
                    true,
                    false,
                    common,
                    cols,
                    rows,
                    1,
                    uc[offset..],
                    r,
                    tau.Span,
                    cols,
                    0,
                    projection.Span,
                    cols
                );
                linear.Gemm(
                    false,
                    false,
                    rows,
                    cols,
                    common,
                    -1,
                    uc[offset..],
                    r,
                    projection.Span,
                    cols,
                    1,
                    tau.Span,
                    cols
                );
            }
            linear.Svd(tau.Span, rows, cols, u.Span, s.Span, vt.Span);
            CopyTriplets(
                u.Span,
                s.Span,
                vt.Span,
                rows,
                cols,
                r,
                perTask,
                uComb.Span,
                sComb.Span,
                vtComb.Span,
                r,
                t * perTask
            );
        }

        // Orthogonalise the combined directions, then give them all the mean singular value.
        linear.Polar(uComb.Span, rows, r, u.Span);
        linear.Polar(vtComb.Span, r, cols, vt.Span);
        double level = inputs[ScalingFactor] * MeanOf(sComb.Span[..r]);
        linear.Multiply(rows, cols, r, u.Span, vt.Span, delta, (float)level);
    }
}
