using Alloy.LinearAlgebra;
using Alloy.Methods.TaskVectors;

namespace Alloy.Methods.Svd;

/// <summary>
/// Spectral Truncation And Rescale (STAR): per matrix, each task vector keeps the fewest top singular triplets whose
/// singular values reach eta % of its nuclear norm, rescaled so the nuclear norm is unchanged; the processed task
/// vectors are averaged.
/// </summary>
public sealed class Star()
    : SvdMergeMethod(
        new(
            "star",
            "Spectral Truncation And Rescale (STAR)",
            "Per matrix, each task vector cut to the top singular values holding eta % of its nuclear norm, rescaled, "
                + "then averaged."
        )
        {
            Paper = "https://arxiv.org/abs/2502.10339",
            Parameters = [Eta],
        }
    )
{
    public static readonly NumberParameter Eta = MethodParameter.Number(
        "eta",
        ParameterScope.Global,
        40,
        "Percentage of each task matrix's nuclear norm (sum of singular values) that the kept singular values must "
            + "reach.",
        new NumberRange(0, 100, MinimumOpen: true)
    );

    protected override double NonMatrixScale(MergeInputs inputs) => 1;

    /// <summary>
    /// The number of leading singular values (descending) whose running sum first reaches eta % of their total, and
    /// the factor total / kept sum that restores the nuclear norm. Sums in double. A zero matrix keeps nothing.
    /// </summary>
    internal static (int Rank, double Rescale) Truncation(ReadOnlySpan<float> singularValues, double eta)
    {
        double total = 0;
        foreach (var v in singularValues)
            total += v;
        if (total == 0)
            return (0, 0);
        double target = total * eta / 100,
            running = 0;
        for (int i = 0; i < singularValues.Length; i++)
        {
            running += singularValues[i];
            if (running >= target)
                return (i + 1, total / running);
        }
        return (singularValues.Length, 1);
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
        int r = Math.Min(rows, cols);
        double eta = inputs[Eta];
        using var tau = PooledArray.Rent((long)rows * cols);
        using var u = PooledArray.Rent((long)rows * r);
        using var s = PooledArray.Rent(r);
        using var vt = PooledArray.Rent((long)r * cols);
        delta.Clear();
        for (int t = 0; t < tasks.Count; t++)
        {
            tasks.Write(t, tau.Span);
            linear.Svd(tau.Span, rows, cols, u.Span, s.Span, vt.Span);
            var (rank, rescale) = Truncation(s.Span, eta);
            // delta += (1/T)·rescale·U_k·diag(S_k)·V_kᵀ
            linear.Reconstruct(
                u.Span,
                s.Span,
                vt.Span,
                rows,
                cols,
                r,
                rank,
                delta,
                (float)(rescale / tasks.Count),
                beta: 1
            );
        }
    }
}
