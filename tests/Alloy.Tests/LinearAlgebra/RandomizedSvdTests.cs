using Alloy.LinearAlgebra;
using Alloy.Tensors;
using static Alloy.Tests.Support.ReferenceLinearAlgebra;

namespace Alloy.Tests.LinearAlgebra;

/// <summary>
/// The randomized truncated SVD on both backends, against matrices built with a known spectrum (so the Eckart–Young
/// optimum ‖A − A_r‖_F = √Σ_{i&gt;r} σ_i² is known without an SVD): its residual, computed in double in the test, is
/// within one per cent of the optimum; an exactly low-rank matrix comes back to float rounding; the result is a
/// pure function of the matrix and the stream.
/// </summary>
public sealed class RandomizedSvdTests
{
    public static TheoryData<string> Backends() => DenseBackendTests.Backends();

    /// <summary>A = U·diag(σ)·Vᵀ with orthonormal U [m, k], V [n, k] (polar factors of Gaussian matrices).</summary>
    private static float[] WithSpectrum(int m, int n, double[] sigma, string key)
    {
        int k = sigma.Length;
        var u = Polar(FromRowMajor(DenseBackendTests.Random(m * k, key + "u"), m, k));
        var v = Polar(FromRowMajor(DenseBackendTests.Random(n * k, key + "v"), n, k));
        var a = Multiply(Multiply(u, Diagonal(sigma)), Transpose(v));
        return [.. ToRowMajor(a).Select(x => (float)x)];
    }

    private static double[,] Diagonal(double[] values)
    {
        var d = new double[values.Length, values.Length];
        for (int i = 0; i < values.Length; i++)
            d[i, i] = values[i];
        return d;
    }

    /// <summary>‖A − U_r·diag(S_r)·V_rᵀ‖_F in double.</summary>
    private static double Residual(float[] a, int m, int n, (float[] U, float[] S, float[] Vt) svd, int rank)
    {
        int l = svd.S.Length;
        var approximation = Reconstruct(
            FromRowMajor(svd.U, m, l),
            [.. svd.S.Select(x => (double)x)],
            FromRowMajor(svd.Vt, l, n),
            rank
        );
        return FrobeniusNorm(Add(FromRowMajor(a, m, n), approximation, -1));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void On_a_decaying_spectrum_the_error_is_within_a_few_per_cent_of_the_optimum(string backend)
    {
        using var _ = DenseBackend.Use(DenseBackendTests.Get(backend));
        const int m = 180,
            n = 120,
            rank = 12;
        // Slow decay (σ_i = 1/√(i+1)): the hard case for a sketch, as a fine-tune's update is.
        var sigma = Enumerable.Range(0, n).Select(i => 1 / Math.Sqrt(i + 1)).ToArray();
        var a = WithSpectrum(m, n, sigma, "slow");
        double optimum = Math.Sqrt(sigma.Skip(rank).Sum(x => x * x));
        var svd = RandomizedSvd.Compute(a, m, n, rank, RandomStream.For(1, "slow", 0));
        Assert.Equal(rank + RandomizedSvd.DefaultOversampling, svd.S.Length);
        double residual = Residual(a, m, n, svd, rank);
        Assert.InRange(residual / optimum, 1 - 1e-4, 1.01); // 1.0014 seen
        // The residual the extractor reports, √(‖A‖² − Σ S_r²), is the true one.
        double total = a.Sum(x => (double)x * x);
        Assert.Equal(residual, Math.Sqrt(total - svd.S.Take(rank).Sum(x => (double)x * x)), 4);
        // Without power iterations the same sketch is measurably worse: the iterations do something.
        var plain = RandomizedSvd.Compute(a, m, n, rank, RandomStream.For(1, "slow", 0), powerIterations: 0);
        Assert.True(Residual(a, m, n, plain, rank) > residual * 1.01, "power iterations did not help");
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void An_exactly_low_rank_matrix_comes_back_to_float_rounding(string backend)
    {
        using var _ = DenseBackend.Use(DenseBackendTests.Get(backend));
        const int m = 90,
            n = 150;
        double[] sigma = [5, 3, 2, 1, 0.5, 0.25];
        var a = WithSpectrum(m, n, sigma, "low");
        // Rank 8 ≥ 6: the sketch's extra columns see only rounding, and must not break the basis.
        var svd = RandomizedSvd.Compute(a, m, n, 8, RandomStream.For(1, "low", 0));
        Assert.True(Residual(a, m, n, svd, 8) < 1e-5 * Math.Sqrt(sigma.Sum(x => x * x)), "not recovered");
        for (int i = 0; i < sigma.Length; i++)
            Assert.Equal(sigma[i], svd.S[i], 4);
        Assert.True(svd.S[6] < 1e-5, $"a seventh singular value {svd.S[6]} in a rank-6 matrix");
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void The_result_is_a_function_of_the_matrix_and_the_stream(string backend)
    {
        using var _ = DenseBackend.Use(DenseBackendTests.Get(backend));
        const int m = 64,
            n = 100;
        var a = DenseBackendTests.Random(m * n, "noise");
        var first = RandomizedSvd.Compute(a, m, n, 5, RandomStream.For(3, "module", 0));
        var again = RandomizedSvd.Compute(a, m, n, 5, RandomStream.For(3, "module", 0));
        Assert.Equal(first.U, again.U);
        Assert.Equal(first.S, again.S);
        Assert.Equal(first.Vt, again.Vt);
        // Another stream is another sketch: on noise its basis differs in the bits.
        var other = RandomizedSvd.Compute(a, m, n, 5, RandomStream.For(3, "other module", 0));
        Assert.NotEqual(first.Vt, other.Vt);
    }
}
