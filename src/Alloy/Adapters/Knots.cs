using Alloy.LinearAlgebra;

namespace Alloy.Adapters;

/// <summary>
/// KnOTS (Stoica et al., arXiv 2410.19735) for one module: the task updates ΔW_t = s_t·B_t·A_t [rows, cols] side by
/// side, [ΔW_1 … ΔW_T] = U·S·[V_1ᵀ … V_Tᵀ], so every task is ΔW_t = U·(S·V_tᵀ) in one shared basis U. The
/// coefficient matrices S·V_tᵀ [ρ, cols] are merged with the type's element rule (TIES, task arithmetic, DARE-TIES)
/// and weights w_t; the merged update is U·merged, stored as B = U, A = merged (rank ρ, the joint basis's rank).
/// </summary>
internal static class Knots
{
    /// <summary>
    /// Singular values at or below this share of the largest are dropped from the joint basis (the authors drop
    /// s ≤ 1e-5 in absolute terms; relative, it does not depend on the adapters' scale).
    /// </summary>
    public const double RelativeCut = 1e-5;

    public static (float[] A, float[] B, int Rank) Merge(
        string weight,
        IReadOnlyList<LoraFactors> inputs,
        int rows,
        int cols,
        AdapterMergeOptions options
    )
    {
        var basis = JointBasis(inputs, rows, cols);
        int rank = basis.Rank;
        var merged = AdapterMerger.Elementwise(
            options.Type,
            basis.Coefficients,
            [.. inputs.Select(f => f.Weight)],
            options,
            weight + "/knots"
        );
        if (options.SvdRank is not { } wanted)
            return (merged, basis.U, rank);
        if (wanted < 1)
            throw new AlloyException($"--svd-rank must be at least 1 (got {wanted})");
        if (wanted >= rank)
            return (merged, basis.U, rank);
        // U has orthonormal columns, so the best rank-k update is U times the best rank-k part of the merged matrix.
        int k = Math.Min(rank, cols);
        var (p, s, qt) = (new float[rank * k], new float[k], new float[k * cols]);
        DenseBackend.Current.Svd(merged, rank, cols, p, s, qt);
        int kept = Math.Min(wanted, k);
        var scaled = new float[rank * kept];
        for (int i = 0; i < rank; i++)
        for (int j = 0; j < kept; j++)
            scaled[i * kept + j] = p[i * k + j] * s[j];
        var b = new float[rows * kept];
        DenseBackend.Current.Multiply(rows, kept, rank, basis.U, scaled, b);
        return (qt.AsSpan(0, kept * cols).ToArray(), b, kept);
    }

    /// <summary>
    /// The joint basis of the updates: U [rows, ρ] with orthonormal columns and each task's coefficients
    /// S·V_tᵀ [ρ, cols], so that s_t·B_t·A_t = U·S·V_tᵀ. Computed from the small factors: B_cat = [B_1 … B_T] =
    /// U_b·Σ_b·W_bᵀ and s_t·A_t = P_t·Σ_t·Z_tᵀ, so the concatenation is U_b·C·diag(Z_1ᵀ … Z_Tᵀ) with the small core
    /// C = Σ_b·W_bᵀ·diag(P_1·Σ_1 … P_T·Σ_T); C = P·S·Hᵀ gives U = U_b·P and S·V_tᵀ = S·H_tᵀ·Z_tᵀ.
    /// </summary>
    internal static (float[] U, float[][] Coefficients, int Rank) JointBasis(
        IReadOnlyList<LoraFactors> inputs,
        int rows,
        int cols
    )
    {
        var backend = DenseBackend.Current;
        int total = inputs.Sum(f => f.Rank);
        var cat = new float[rows * total];
        int offset = 0;
        foreach (var f in inputs)
        {
            for (int i = 0; i < rows; i++)
                Array.Copy(f.B, i * f.Rank, cat, i * total + offset, f.Rank);
            offset += f.Rank;
        }
        int kb = Math.Min(rows, total);
        var (ub, sb, wbt) = (new float[rows * kb], new float[kb], new float[kb * total]);
        backend.Svd(cat, rows, total, ub, sb, wbt);

        // Each s_t·A_t = P_t·Σ_t·Z_tᵀ; the core's columns of task t are Σ_b·W_bᵀ[:, block t]·P_t·Σ_t.
        var sides = new List<(float[] Zt, int K)>();
        var blocks = new List<double[]>();
        offset = 0;
        foreach (var f in inputs)
        {
            int kt = Math.Min(f.Rank, cols);
            var scaledA = new float[f.Rank * cols];
            for (int j = 0; j < scaledA.Length; j++)
                scaledA[j] = (float)(f.Scale * f.A[j]);
            var (pt, st, zt) = (new float[f.Rank * kt], new float[kt], new float[kt * cols]);
            backend.Svd(scaledA, f.Rank, cols, pt, st, zt);
            var block = new double[kb * kt];
            for (int r = 0; r < kb; r++)
            for (int j = 0; j < kt; j++)
            {
                double sum = 0;
                for (int i = 0; i < f.Rank; i++)
                    sum += (double)wbt[r * total + offset + i] * pt[i * kt + j];
                block[r * kt + j] = sb[r] * sum * st[j];
            }
            sides.Add((zt, kt));
            blocks.Add(block);
            offset += f.Rank;
        }
        int width = sides.Sum(x => x.K);
        var core = new float[kb * width];
        for (int t = 0, column = 0; t < blocks.Count; column += sides[t].K, t++)
        for (int r = 0; r < kb; r++)
        for (int j = 0; j < sides[t].K; j++)
            core[r * width + column + j] = (float)blocks[t][r * sides[t].K + j];
        int kc = Math.Min(kb, width);
        var (p, s, ht) = (new float[kb * kc], new float[kc], new float[kc * width]);
        backend.Svd(core, kb, width, p, s, ht);
        int rank = Math.Max(1, s.Count(v => v > RelativeCut * s[0]));

        var leftKept = new float[kb * rank];
        for (int i = 0; i < kb; i++)
            Array.Copy(p, i * kc, leftKept, i * rank, rank);
        var u = new float[rows * rank];
        backend.Multiply(rows, rank, kb, ub, leftKept, u);

        var coefficients = new float[inputs.Count][];
        int first = 0;
        for (int t = 0; t < inputs.Count; t++)
        {
            var (zt, kt) = sides[t];
            var sh = new float[rank * kt];
            for (int r = 0; r < rank; r++)
            for (int j = 0; j < kt; j++)
                sh[r * kt + j] = s[r] * ht[r * width + first + j];
            coefficients[t] = new float[rank * cols];
            backend.Multiply(rank, cols, kt, sh, zt, coefficients[t]);
            first += kt;
        }
        return (u, coefficients, rank);
    }
}
