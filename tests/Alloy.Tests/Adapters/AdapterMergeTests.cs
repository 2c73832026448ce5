using System.Runtime.InteropServices;
using Alloy.Checkpoints;
using Alloy.Tests.Support;

namespace Alloy.Tests.Adapters;

/// <summary>
/// <c>alloy merge-adapters</c> on adapters extracted from two fine-tunes of one synth base (ranks 4 and 3), against
/// PEFT's formulas evaluated in the test: cat is the exact weighted sum at rank 7, linear combines the factors, svd
/// is the best rank-r approximation of the weighted sum (Eckart–Young, against an SVD in the test).
/// </summary>
public sealed class AdapterMergeTests : IDisposable
{
    private const string Module = "model.layers.1.mlp.up_proj";
    private readonly TempFolder _work = new();
    private readonly string _first,
        _second;

    public AdapterMergeTests()
    {
        var synth = AlloyCli.Run(
            "synth",
            _work["synth"],
            "--fine-tunes",
            "2",
            "--layers",
            "2",
            "--hidden",
            "32",
            "--intermediate",
            "64",
            "--heads",
            "4",
            "--kv-heads",
            "2",
            "--dtype",
            "float32"
        );
        Assert.True(synth.ExitCode == 0, synth.Stderr);
        _first = Extract("finetune-1", "first", 4);
        _second = Extract("finetune-2", "second", 3);
    }

    public void Dispose() => _work.Dispose();

    private string Extract(string model, string name, int rank)
    {
        var result = AlloyCli.Run(
            "extract-lora",
            "--model",
            _work[$"synth/{model}"],
            "--base-model",
            _work["synth/base"],
            "--out-path",
            _work[name],
            "--max-rank",
            $"{rank}",
            "--skip-undecomposable",
            "--exclude-regex",
            "embed_tokens"
        );
        Assert.True(result.ExitCode == 0, result.Stderr);
        return _work[name];
    }

    private string Merge(string type, params string[] extra)
    {
        var result = AlloyCli.Run([
            "merge-adapters",
            "--adapter",
            _first + ":0.7",
            "--adapter",
            _second + ":0.3",
            "--combination-type",
            type,
            "--out-path",
            _work[type],
            .. extra,
        ]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        return _work[type];
    }

    /// <summary>The module's B [rows, r] and A [r, cols] in an adapter folder (every scale here is 1).</summary>
    private static (double[,] B, double[,] A) Factors(string adapter)
    {
        using var file = SafetensorsFile.Open(Path.Combine(adapter, "adapter_model.safetensors"));
        double[,] Matrix(string name)
        {
            var t = file.Find($"base_model.model.{Module}.{name}.weight")!;
            var values = MemoryMarshal.Cast<byte, float>(t.Bytes(0, (int)t.Info.ByteLength)).ToArray();
            return ReferenceLinearAlgebra.FromRowMajor(values, (int)t.Info.Shape[0], (int)t.Info.Shape[1]);
        }
        return (Matrix("lora_B"), Matrix("lora_A"));
    }

    private static double[,] Product((double[,] B, double[,] A) f) => ReferenceLinearAlgebra.Multiply(f.B, f.A);

    /// <summary>0.7·ΔW_first + 0.3·ΔW_second, each ΔW = B·A at scale α / r = 1.</summary>
    private double[,] WeightedSum() =>
        ReferenceLinearAlgebra.Add(
            ReferenceLinearAlgebra.Scale(Product(Factors(_first)), 0.7),
            Product(Factors(_second)),
            0.3
        );

    private static double MaxDifference(double[,] x, double[,] y)
    {
        double worst = 0;
        for (int i = 0; i < x.GetLength(0); i++)
        for (int j = 0; j < x.GetLength(1); j++)
            worst = Math.Max(worst, Math.Abs(x[i, j] - y[i, j]));
        return worst;
    }

    [Fact]
    public void Cat_is_the_exact_weighted_sum_at_the_sum_of_the_ranks()
    {
        var merged = Factors(Merge("cat"));
        Assert.Equal(7, merged.A.GetLength(0));
        Assert.True(MaxDifference(Product(merged), WeightedSum()) < 1e-5);
    }

    [Fact]
    public void Svd_is_the_best_approximation_of_the_weighted_sum_at_the_largest_input_rank()
    {
        var merged = Factors(Merge("svd"));
        Assert.Equal(4, merged.A.GetLength(0));
        var sum = WeightedSum();
        var (_, s, _) = ReferenceLinearAlgebra.Svd(sum);
        double discarded = Math.Sqrt(s.Skip(4).Sum(v => v * v));
        var residual = ReferenceLinearAlgebra.Add(sum, Product(merged), -1);
        double norm = 0;
        foreach (double v in residual)
            norm += v * v;
        Assert.Equal(discarded, Math.Sqrt(norm), 4);
        Assert.True(discarded > 1e-3, "the weighted sum has rank 4 or less: the test cannot tell");
        var two = Factors(Merge("svd", "--svd-rank", "2", "--overwrite", "--svd-clamp", "0.99"));
        Assert.Equal(2, two.A.GetLength(0));
    }

    [Fact]
    public void Linear_combines_the_factors_and_needs_equal_ranks()
    {
        var refused = AlloyCli.Run(
            "merge-adapters",
            "--adapter",
            _first,
            "--adapter",
            _second,
            "--combination-type",
            "linear",
            "--out-path",
            _work["refused"]
        );
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("linear needs adapters of equal rank", refused.Stderr);

        var third = Extract("finetune-2", "third", 4);
        var result = AlloyCli.Run(
            "merge-adapters",
            "--adapter",
            _first + ":0.7",
            "--adapter",
            third + ":0.3",
            "--combination-type",
            "linear",
            "--out-path",
            _work["linear"]
        );
        Assert.True(result.ExitCode == 0, result.Stderr);
        var (b1, a1) = Factors(_first);
        var (b2, a2) = Factors(third);
        // PEFT: A = √0.7·A1 + √0.3·A2, B = √0.7·B1 + √0.3·B2; so B·A is not 0.7·ΔW1 + 0.3·ΔW2.
        var expected = ReferenceLinearAlgebra.Multiply(
            ReferenceLinearAlgebra.Add(ReferenceLinearAlgebra.Scale(b1, Math.Sqrt(0.7)), b2, Math.Sqrt(0.3)),
            ReferenceLinearAlgebra.Add(ReferenceLinearAlgebra.Scale(a1, Math.Sqrt(0.7)), a2, Math.Sqrt(0.3))
        );
        Assert.True(MaxDifference(Product(Factors(_work["linear"])), expected) < 1e-5);
    }
}
