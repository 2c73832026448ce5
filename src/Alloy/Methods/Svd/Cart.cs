using Alloy.LinearAlgebra;
using Alloy.Methods.TaskVectors;

namespace Alloy.Methods.Svd;

/// <summary>
/// Centered Arithmetic with Rank-reduced Task vectors (CART): task vectors are taken around the average of the
/// fine-tuned models θ̄ instead of the base; each centred matrix θₜ − θ̄ is cut to its top ⌊rank_ratio·r⌋ singular
/// triplets (at least one), and θ = θ̄ + prior·Σₜ LowRank(θₜ − θ̄). Only the weight matrices of the layers are
/// reduced (the reference's attention and MLP matrices); every other tensor is the average θ̄, which is what the
/// formula gives at full rank.
/// </summary>
public sealed class Cart()
    : SvdMergeMethod(
        new(
            "cart",
            "Centered Arithmetic with Rank-reduced Task vectors (CART)",
            "Task vectors around the fine-tunes' average, each cut to a low rank, added back with a prior scale."
        )
        {
            Paper = "https://arxiv.org/abs/2412.12153",
            Parameters = [InitialRankRatio, Prior],
        }
    )
{
    public static readonly NumberParameter InitialRankRatio = MethodParameter.Number(
        "initial_rank_ratio",
        ParameterScope.Global,
        0.12,
        "Fraction of each centred matrix's singular directions kept (at least one).",
        NumberRange.Fraction
    );

    public static readonly NumberParameter Prior = MethodParameter.Number(
        "prior",
        ParameterScope.Global,
        2.0,
        "Scale λ of the summed low-rank centred task vectors."
    );

    /// <summary>Weight matrices inside the layers; embeddings, the head, norms and biases are averaged.</summary>
    protected override bool IsMatrix(MergeInputs inputs) => base.IsMatrix(inputs) && inputs.Position.Layer is not null;

    protected override double NonMatrixScale(MergeInputs inputs) => 1;

    /// <summary>The reference's rank: none at ratio 0, all at ratio 1, else max(1, ⌊ratio·r⌋).</summary>
    internal static int Rank(double ratio, int r) =>
        ratio == 0 ? 0
        : ratio == 1 ? r
        : Math.Max(1, (int)(ratio * r));

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
        int rank = Rank(inputs[InitialRankRatio], r);
        float prior = (float)inputs[Prior];
        using var mean = PooledArray.Rent((long)rows * cols);
        using var centred = PooledArray.Rent((long)rows * cols);
        using var u = PooledArray.Rent((long)rows * r);
        using var s = PooledArray.Rent(r);
        using var vt = PooledArray.Rent((long)r * cols);
        // In task-vector terms: θ̄ − base = mean τ, and θₜ − θ̄ = τₜ − mean τ.
        tasks.Mean(mean.Span);
        mean.Span.CopyTo(delta);
        for (int t = 0; t < tasks.Count && rank > 0; t++)
        {
            tasks.Write(t, centred.Span);
            System.Numerics.Tensors.TensorPrimitives.Subtract(centred.Span, mean.Span, centred.Span);
            linear.Svd(centred.Span, rows, cols, u.Span, s.Span, vt.Span);
            linear.Reconstruct(u.Span, s.Span, vt.Span, rows, cols, r, rank, delta, prior, beta: 1);
        }
    }
}
