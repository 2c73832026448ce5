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
        _second,
        _third;

    public AdapterMergeTests()
    {
        AlloyCli.Synth(_work["synth"], fineTunes: 2);
        _first = Extract("finetune-1", "first", 4);
        _second = Extract("finetune-2", "second", 3);
        _third = Extract("finetune-2", "third", 4);
    }

    public void Dispose() => _work.Dispose();

    private string Extract(string model, string name, int rank) =>
        ExtractWith(model, name, "--max-rank", $"{rank}", "--exclude-regex", "embed_tokens");

    private string Merge(string type, params string[] extra) => MergeWith(type, _second, type, extra);

    /// <summary>0.7 of the first adapter and 0.3 of <paramref name="other"/>, into <paramref name="output"/>.</summary>
    private string MergeWith(string type, string other, string output, params string[] extra)
    {
        var result = RunMerge(type, output, [_first + ":0.7", other + ":0.3"], extra);
        Assert.True(result.ExitCode == 0, result.Stderr);
        return _work[output];
    }

    private CliResult RunMerge(string type, string output, string[] adapters, params string[] extra) =>
        TestAdapters.Merge(type, _work[output], adapters, extra);

    private static (double[,] B, double[,] A) Factors(string adapter) => TestAdapters.Factors(adapter, Module);

    /// <summary>
    /// The merged update is the best rank-4 approximation of <paramref name="target"/> (Eckart–Young): its error is
    /// the norm of the target's singular values past 4, which is returned.
    /// </summary>
    private static double AssertBestRank4(double[,] target, (double[,] B, double[,] A) merged)
    {
        var (_, s, _) = ReferenceLinearAlgebra.Svd(target);
        double discarded = Math.Sqrt(s.Skip(4).Sum(v => v * v));
        var residual = ReferenceLinearAlgebra.Add(target, Product(merged), -1);
        Assert.Equal(discarded, ReferenceLinearAlgebra.FrobeniusNorm(residual), 4);
        return discarded;
    }

    private static double[,] Product((double[,] B, double[,] A) f) => ReferenceLinearAlgebra.Multiply(f.B, f.A);

    /// <summary>0.7·ΔW_first + 0.3·ΔW_second, each ΔW = B·A at scale α / r = 1.</summary>
    private double[,] WeightedSum() =>
        ReferenceLinearAlgebra.Add(
            ReferenceLinearAlgebra.Scale(Product(Factors(_first)), 0.7),
            Product(Factors(_second)),
            0.3
        );

    [Fact]
    public void Cat_is_the_exact_weighted_sum_at_the_sum_of_the_ranks()
    {
        var merged = Factors(Merge("cat"));
        Assert.Equal(7, merged.A.GetLength(0));
        Assert.True(ReferenceLinearAlgebra.MaxDifference(Product(merged), WeightedSum()) < 1e-5);
    }

    [Fact]
    public void Svd_is_the_best_approximation_of_the_weighted_sum_at_the_largest_input_rank()
    {
        var merged = Factors(Merge("svd"));
        Assert.Equal(4, merged.A.GetLength(0));
        double discarded = AssertBestRank4(WeightedSum(), merged);
        Assert.True(discarded > 1e-3, "the weighted sum has rank 4 or less: the test cannot tell");
        var two = Factors(Merge("svd", "--svd-rank", "2", "--overwrite", "--svd-clamp", "0.99"));
        Assert.Equal(2, two.A.GetLength(0));
    }

    [Fact]
    public void Linear_combines_the_factors_and_needs_equal_ranks()
    {
        var refused = RunMerge("linear", "refused", [_first, _second]);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("linear needs adapters of equal rank", refused.Stderr);

        var third = _third;
        var result = RunMerge("linear", "linear", [_first + ":0.7", third + ":0.3"]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        var (b1, a1) = Factors(_first);
        var (b2, a2) = Factors(third);
        // PEFT: A = √0.7·A1 + √0.3·A2, B = √0.7·B1 + √0.3·B2; so B·A is not 0.7·ΔW1 + 0.3·ΔW2.
        var expected = ReferenceLinearAlgebra.Multiply(
            ReferenceLinearAlgebra.Add(ReferenceLinearAlgebra.Scale(b1, Math.Sqrt(0.7)), b2, Math.Sqrt(0.3)),
            ReferenceLinearAlgebra.Add(ReferenceLinearAlgebra.Scale(a1, Math.Sqrt(0.7)), a2, Math.Sqrt(0.3))
        );
        Assert.True(ReferenceLinearAlgebra.MaxDifference(Product(Factors(_work["linear"])), expected) < 1e-5);
    }

    /// <summary>
    /// PEFT's ties on same-shaped tensors, written out here: each trimmed to its int(density·n) largest magnitudes,
    /// the sign of the trimmed tensors' unweighted sum elected (0 elects +), the agreeing weighted entries summed and
    /// divided by how many agree.
    /// </summary>
    internal static double[,] PeftTies(IReadOnlyList<double[,]> tensors, IReadOnlyList<double> weights, double density)
    {
        int rows = tensors[0].GetLength(0),
            cols = tensors[0].GetLength(1),
            n = rows * cols,
            keep = (int)(density * n);
        var trimmed = tensors
            .Select(t =>
            {
                var cut = t.Cast<double>().Select(Math.Abs).OrderByDescending(v => v).ElementAt(keep - 1);
                var copy = (double[,])t.Clone();
                for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++)
                    copy[i, j] = Math.Abs(copy[i, j]) >= cut ? copy[i, j] : 0;
                return copy;
            })
            .ToList();
        var merged = new double[rows, cols];
        for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
        {
            double sign = trimmed.Sum(t => t[i, j]) >= 0 ? 1 : -1;
            int agreeing = 0;
            for (int t = 0; t < trimmed.Count; t++)
                if (Math.Sign(trimmed[t][i, j]) == sign)
                {
                    merged[i, j] += weights[t] * trimmed[t][i, j];
                    agreeing++;
                }
            merged[i, j] /= Math.Max(agreeing, 1);
        }
        return merged;
    }

    [Fact]
    public void Ties_applies_peft_s_rule_to_the_a_and_b_matrices_separately()
    {
        var merged = Factors(MergeWith("ties", _third, "ties", "--density", "0.5"));
        var (b1, a1) = Factors(_first);
        var (b3, a3) = Factors(_third);
        double[] roots = [Math.Sqrt(0.7), Math.Sqrt(0.3)];
        Assert.True(ReferenceLinearAlgebra.MaxDifference(merged.A, PeftTies([a1, a3], roots, 0.5)) < 1e-6);
        Assert.True(ReferenceLinearAlgebra.MaxDifference(merged.B, PeftTies([b1, b3], roots, 0.5)) < 1e-6);
        var refused = RunMerge("ties", "no-density", [_first, _third]);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("needs --density", refused.Stderr);
    }

    [Fact]
    public void Ties_svd_is_the_best_rank_r_approximation_of_ties_on_the_updates()
    {
        var merged = Factors(MergeWith("ties_svd", _second, "ties_svd", "--density", "0.5"));
        var expected = PeftTies([Product(Factors(_first)), Product(Factors(_second))], [0.7, 0.3], 0.5);
        AssertBestRank4(expected, merged);
    }

    [Fact]
    public void Dare_at_density_one_is_linear_and_below_it_is_seeded()
    {
        var linear = Factors(MergeWith("linear", _third, "linear"));
        var full = Factors(MergeWith("dare_linear", _third, "dare-full", "--density", "1"));
        Assert.True(
            ReferenceLinearAlgebra.MaxDifference(linear.A, full.A) < 1e-6
                && ReferenceLinearAlgebra.MaxDifference(linear.B, full.B) < 1e-6
        );
        var half = Factors(MergeWith("dare_linear", _third, "dare-half", "--density", "0.5", "--seed", "3"));
        var again = Factors(MergeWith("dare_linear", _third, "dare-again", "--density", "0.5", "--seed", "3"));
        var other = Factors(MergeWith("dare_linear", _third, "dare-other", "--density", "0.5", "--seed", "4"));
        Assert.Equal(0, ReferenceLinearAlgebra.MaxDifference(half.A, again.A));
        Assert.True(ReferenceLinearAlgebra.MaxDifference(half.A, other.A) > 1e-3);
        Assert.True(ReferenceLinearAlgebra.MaxDifference(half.A, linear.A) > 1e-3);
    }

    /// <summary>An adapter of a fine-tune (modules without a low-rank form skipped), with extract-lora's options.
    /// </summary>
    private string ExtractWith(string model, string name, params string[] options)
    {
        var result = AlloyCli.Run([
            "extract-lora",
            "--model",
            _work[$"synth/{model}"],
            "--base-model",
            _work["synth/base"],
            "--out-path",
            _work[name],
            "--skip-undecomposable",
            .. options,
        ]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        return _work[name];
    }

    /// <summary>The base with <paramref name="adapter"/> applied, merged in float32.</summary>
    private Dictionary<string, float[]> Applied(string adapter, string name)
    {
        var recipe = _work.Write(
            name + ".yml",
            $"merge_method: passthrough\nmodels:\n  - model: {_work["synth/base"]}+{adapter}\ndtype: float32\n"
        );
        AlloyCli.Merge(recipe, _work[name]);
        return TestCheckpoints.ReadAll(_work[name]);
    }

    [Fact]
    public void Embedding_updates_merge_in_the_weights_layout_and_are_written_back_as_peft_stores_them()
    {
        var first = ExtractWith("finetune-1", "embed-1", "--embed-lora", "--max-rank", "64");
        var second = ExtractWith("finetune-2", "embed-2", "--embed-lora", "--max-rank", "64");
        var merged = RunMerge("cat", "embed-cat", [first + ":0.7", second + ":0.3"]);
        Assert.True(merged.ExitCode == 0, merged.Stderr);
        string file = Path.Combine(_work["embed-cat"], "adapter_model.safetensors");
        const string Embedding = "base_model.model.model.embed_tokens.lora_embedding_";
        var a = TestCheckpoints.Shape(file, Embedding + "A");
        var b = TestCheckpoints.Shape(file, Embedding + "B");
        var inputRank = TestCheckpoints.Shape(Path.Combine(first, "adapter_model.safetensors"), Embedding + "A")[0];
        Assert.Equal(TestCheckpoints.Shape(Path.Combine(first, "adapter_model.safetensors"), Embedding + "A")[1], a[1]);
        Assert.Equal(a[0], b[1]);
        Assert.True(a[0] > inputRank); // cat: the ranks add up

        // cat is exact: base + the merged update = base + 0.7·Δ₁ + 0.3·Δ₂, the embedding included.
        var baseWeights = TestCheckpoints.ReadAll(Path.Combine(_work["synth/base"], "model.safetensors"));
        var one = Applied(first, "applied-1");
        var two = Applied(second, "applied-2");
        var both = Applied(_work["embed-cat"], "applied-cat");
        foreach (var (name, values) in both)
        {
            var expected = baseWeights[name]
                .Select((w, j) => w + 0.7f * (one[name][j] - w) + 0.3f * (two[name][j] - w))
                .ToArray();
            double difference = values.Zip(expected).Max(p => Math.Abs(p.First - p.Second));
            Assert.True(difference < 1e-5, $"{name}: {difference}");
        }
        Assert.NotEqual(baseWeights["model.embed_tokens.weight"], both["model.embed_tokens.weight"]);
    }

    [Fact]
    public void A_module_one_adapter_saves_whole_is_copied_and_one_that_two_save_is_refused()
    {
        var saving = ExtractWith("finetune-1", "saving", "--save-module", "lm_head", "--exclude-regex", "embed_tokens");
        var plain = ExtractWith("finetune-2", "plain", "--exclude-regex", "embed_tokens|lm_head");
        var merged = RunMerge("svd", "kept", [saving + ":0.5", plain + ":0.5"]);
        Assert.True(merged.ExitCode == 0, merged.Stderr);
        const string Head = "base_model.model.lm_head.weight";
        Assert.Equal(
            TestCheckpoints.Read(Path.Combine(saving, "adapter_model.safetensors"), Head),
            TestCheckpoints.Read(Path.Combine(_work["kept"], "adapter_model.safetensors"), Head)
        );
        var config = System.Text.Json.JsonDocument.Parse(
            File.ReadAllText(Path.Combine(_work["kept"], "adapter_config.json"))
        );
        Assert.Equal(
            ["lm_head"],
            config.RootElement.GetProperty("modules_to_save").EnumerateArray().Select(e => e.GetString())
        );

        var again = ExtractWith(
            "finetune-2",
            "saving-too",
            "--save-module",
            "lm_head",
            "--exclude-regex",
            "embed_tokens"
        );
        var refused = RunMerge("cat", "refused", [saving, again]);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("'lm_head' is saved whole (modules_to_save) by both", refused.Stderr);
        Assert.False(Directory.Exists(_work["refused"]));
    }
}
