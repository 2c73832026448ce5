using System.Text.Json;
using Alloy.Checkpoints;
using Alloy.Tests.Support;

namespace Alloy.Tests.Adapters;

/// <summary>
/// <c>alloy extract-lora</c> on models made by <c>alloy synth</c>: at full rank the adapter, applied by a
/// <c>model+adapter</c> reference, gives the fine-tune back; at rank r each module's error is the norm of the
/// discarded singular values (Eckart–Young, against an SVD computed in the test); the folder reads as PEFT reads it.
/// </summary>
public sealed class LoraExtractionTests : IDisposable
{
    private readonly TempFolder _work = new();
    private readonly string _base,
        _tuned;

    public LoraExtractionTests()
    {
        var synth = AlloyCli.Synth(_work["synth"], fineTunes: 1);
        (_base, _tuned) = (Path.Combine(synth, "base"), Path.Combine(synth, "finetune-1"));
    }

    public void Dispose() => _work.Dispose();

    /// <summary><c>alloy extract-lora</c> of the fine-tune against <paramref name="baseModel"/>, into OUTPUT.</summary>
    private CliResult Run(string baseModel, string output, params string[] extra) =>
        RunOn(_tuned, baseModel, output, extra);

    private CliResult RunOn(string tuned, string baseModel, string output, params string[] extra) =>
        AlloyCli.Run([
            "extract-lora",
            "--model",
            tuned,
            "--base-model",
            baseModel,
            "--out-path",
            _work[output],
            .. extra,
        ]);

    private string Extract(string name, params string[] extra)
    {
        var result = Run(_base, name, extra);
        Assert.True(result.ExitCode == 0, result.Stderr);
        return _work[name];
    }

    private static float[] Tensor(string file, string name) => TestCheckpoints.Read(file, name);

    /// <summary>The base with <paramref name="adapter"/> applied (<c>model+adapter</c>), merged to a file.</summary>
    private string Applied(string adapter, string name, string? baseModel = null)
    {
        var recipe = _work.Write(
            name + ".yml",
            $"merge_method: linear\nmodels:\n  - model: {baseModel ?? _base}+{adapter}\n"
                + "    parameters: {weight: 1.0}\n"
                + "dtype: float32\n"
        );
        AlloyCli.Merge(recipe, _work[name]);
        return Path.Combine(_work[name], "model.safetensors");
    }

    /// <summary>A module's update W_ft − W_base, in double.</summary>
    private double[,] Delta(string module) =>
        ReferenceLinearAlgebra.Add(
            TestCheckpoints.Matrix(Path.Combine(_tuned, "model.safetensors"), module + ".weight"),
            TestCheckpoints.Matrix(Path.Combine(_base, "model.safetensors"), module + ".weight"),
            -1
        );

    private static readonly string[] Modules =
    [
        "model.layers.0.self_attn.q_proj",
        "model.layers.1.mlp.down_proj",
        "lm_head",
    ];

    [Theory]
    [InlineData("auto")]
    [InlineData("randomized")] // a sketch as wide as the module spans it: exact up to rounding
    public void At_full_rank_the_adapter_gives_the_fine_tune_back(string svd)
    {
        var applied = Applied(Extract("full", "--svd", svd), "applied");
        AssertSameTensors(_tuned, applied, 1e-5);
    }

    /// <summary>Each tensor of the model in <paramref name="expectedFolder"/> is in the file, within a bound.</summary>
    private static void AssertSameTensors(string expectedFolder, string actualFile, double bound)
    {
        using var expectedModel = SafetensorsFile.Open(Path.Combine(expectedFolder, "model.safetensors"));
        foreach (var tensor in expectedModel.Tensors)
        {
            var expected = Tensor(Path.Combine(expectedFolder, "model.safetensors"), tensor.Info.Name);
            double worst = expected.Zip(Tensor(actualFile, tensor.Info.Name), (x, y) => Math.Abs(x - y)).Max();
            Assert.True(worst < bound, $"{tensor.Info.Name}: off by {worst}");
        }
    }

    [Fact]
    public void At_rank_r_each_modules_error_is_the_norm_of_the_discarded_singular_values()
    {
        var adapter = Path.Combine(
            Extract("rank4", "--max-rank", "4", "--no-distribute-scale"),
            "adapter_model.safetensors"
        );
        var report = Run(_base, "rank4-again", "--max-rank", "4");
        foreach (var module in Modules)
        {
            var delta = Delta(module);
            var (_, s, _) = ReferenceLinearAlgebra.Svd(delta);
            double discarded = Math.Sqrt(s.Skip(4).Sum(v => v * v));
            var low = ReferenceLinearAlgebra.Multiply(
                TestCheckpoints.Matrix(adapter, $"base_model.model.{module}.lora_B.weight"),
                TestCheckpoints.Matrix(adapter, $"base_model.model.{module}.lora_A.weight")
            );
            Assert.Equal(
                discarded,
                ReferenceLinearAlgebra.FrobeniusNorm(ReferenceLinearAlgebra.Add(delta, low, -1)),
                4
            );
            var line = report.Stdout.Split('\n').Single(l => l.StartsWith(module + " ", StringComparison.Ordinal));
            Assert.Contains("rank 4", line);
            double reported = double.Parse(
                line[(line.LastIndexOf(' ') + 1)..],
                System.Globalization.CultureInfo.InvariantCulture
            );
            Assert.Equal(discarded, reported, 3);
        }
    }

    [Fact]
    public void The_folder_reads_as_peft_reads_it_and_mistakes_fail_in_one_line()
    {
        var adapter = Extract("peft", "--max-rank", "8", "--exclude-regex", "lm_head", "--save-module", "down_proj");
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(adapter, "adapter_config.json")));
        var root = config.RootElement;
        Assert.Equal("LORA", root.GetProperty("peft_type").GetString());
        Assert.Equal(8, root.GetProperty("r").GetInt32());
        Assert.Equal(8, root.GetProperty("lora_alpha").GetInt32());
        Assert.DoesNotContain(
            "lm_head",
            root.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString())
        );
        var saved = root.GetProperty("modules_to_save").EnumerateArray().Select(e => e.GetString()).ToList();
        Assert.Contains("model.embed_tokens", saved);
        Assert.Contains("model.layers.1.mlp.down_proj", saved);
        using var weights = SafetensorsFile.Open(Path.Combine(adapter, "adapter_model.safetensors"));
        var names = weights.Tensors.Select(t => t.Info.Name).ToList();
        Assert.All(names, n => Assert.StartsWith("base_model.model.", n));
        Assert.Contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", names);
        Assert.Contains("base_model.model.model.layers.1.mlp.down_proj.weight", names);
        Assert.DoesNotContain(names, n => n.Contains("lm_head", StringComparison.Ordinal));

        var missing = Run(_work["nowhere"], "x");
        Assert.Equal(1, missing.ExitCode);
        Assert.DoesNotContain("   at ", missing.Stderr);
        var rank = Run(_base, "y", "--max-rank", "0");
        Assert.Equal(1, rank.ExitCode);
        Assert.Contains("--max-rank must be at least 1", rank.Stderr);
    }

    [Theory]
    [InlineData("--max-rank", "6")]
    [InlineData("--max-rank", "4", "--svd", "randomized")]
    // Ranks lowered after the SVD: the factors go through the spill file before the header is known.
    [InlineData("--rank-by", "energy:0.6", "--svd", "randomized")]
    [InlineData("--rank-by", "energy:0.6", "--sv-epsilon", "0.01")]
    public void The_adapter_is_the_same_bytes_at_any_thread_count(params string[] options)
    {
        // 15 modules and 25 tensors pass through a window of 2 or 4 at a time.
        var one = Extract("one", [.. options, "--threads", "1"]);
        var two = Extract("two", [.. options, "--threads", "2"]);
        var bytes = File.ReadAllBytes(Path.Combine(one, "adapter_model.safetensors"));
        Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(two, "adapter_model.safetensors")));
        Assert.False(File.Exists(Path.Combine(one, "adapter_model.safetensors.spill")), "the spill file was left");
        // The tensors keep the fine-tune's order: lora_A then lora_B of each module, modules as the model has them.
        using var weights = SafetensorsFile.Open(Path.Combine(one, "adapter_model.safetensors"));
        var byOffset = weights.Tensors.OrderBy(t => t.Offset).Select(t => t.Info.Name).ToList();
        int q0 = byOffset.IndexOf("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
        Assert.Equal("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", byOffset[q0 + 1]);
        Assert.Equal("base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight", byOffset[q0 + 2]);
        Assert.True(
            byOffset.IndexOf("base_model.model.lm_head.lora_A.weight")
                > byOffset.IndexOf("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight")
        );
    }

    /// <summary>A base and fine-tune of hidden 128 (k_proj and v_proj 64 wide), one layer.</summary>
    private (string Base, string Tuned) Wider()
    {
        var synth = AlloyCli.Run(
            "synth",
            _work["wide"],
            "--fine-tunes",
            "1",
            "--layers",
            "1",
            "--hidden",
            "128",
            "--intermediate",
            "256",
            "--heads",
            "4",
            "--kv-heads",
            "2",
            "--dtype",
            "float32"
        );
        Assert.True(synth.ExitCode == 0, synth.Stderr);
        return (_work["wide/base"], _work["wide/finetune-1"]);
    }

    /// <summary>The report's line of a module: its rank, which SVD, and its reported error.</summary>
    private static (int Rank, string Svd, double Error) Line(CliResult report, string module)
    {
        var words = report
            .Stdout.Split('\n')
            .Single(l => l.StartsWith(module + " ", StringComparison.Ordinal))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return (
            int.Parse(words[Array.IndexOf(words, "rank") + 1], System.Globalization.CultureInfo.InvariantCulture),
            words[Array.IndexOf(words, "svd") + 1],
            double.Parse(words[^1], System.Globalization.CultureInfo.InvariantCulture)
        );
    }

    [Fact]
    public void Auto_takes_the_randomized_svd_where_the_sketch_is_a_quarter_of_the_module_or_less()
    {
        var (baseModel, tuned) = Wider();
        const string q = "model.layers.0.self_attn.q_proj",
            k = "model.layers.0.self_attn.k_proj";
        // Rank 8: a sketch of 18 columns is ≤ 128 / 4 for q_proj [128, 128], > 64 / 4 for k_proj [64, 128].
        var auto = RunOn(tuned, baseModel, "auto", "--max-rank", "8", "--no-distribute-scale");
        Assert.True(auto.ExitCode == 0, auto.Stderr);
        Assert.Equal("randomized", Line(auto, q).Svd);
        Assert.Equal("exact", Line(auto, k).Svd);
        Assert.Equal("randomized", Line(auto, "lm_head").Svd);
        var exact = RunOn(tuned, baseModel, "exact", "--max-rank", "8", "--svd", "exact");
        Assert.Equal("exact", Line(exact, q).Svd);

        // The randomized module's residual, measured here, is its reported error and within 5 % of the optimum.
        var adapter = Path.Combine(_work["auto"], "adapter_model.safetensors");
        var delta = ReferenceLinearAlgebra.Add(
            TestCheckpoints.Matrix(Path.Combine(tuned, "model.safetensors"), q + ".weight"),
            TestCheckpoints.Matrix(Path.Combine(baseModel, "model.safetensors"), q + ".weight"),
            -1
        );
        var (_, s, _) = ReferenceLinearAlgebra.Svd(delta);
        double optimum = Math.Sqrt(s.Skip(8).Sum(v => v * v));
        var low = ReferenceLinearAlgebra.Multiply(
            TestCheckpoints.Matrix(adapter, $"base_model.model.{q}.lora_B.weight"),
            TestCheckpoints.Matrix(adapter, $"base_model.model.{q}.lora_A.weight")
        );
        double residual = ReferenceLinearAlgebra.FrobeniusNorm(ReferenceLinearAlgebra.Add(delta, low, -1));
        Assert.InRange(residual / optimum, 1 - 1e-4, 1.05);
        Assert.Equal(residual, Line(auto, q).Error, 2e-3 * residual); // the report has 4 digits
        Assert.Equal(optimum, Line(exact, q).Error, 2e-3 * optimum);

        // An energy share rank 8 cannot reach is left to the exact SVD; one the sketch reaches is settled by it,
        // keeping at least that share at a rank no smaller than the exact smallest.
        var most = RunOn(tuned, baseModel, "most", "--max-rank", "8", "--rank-by", "energy:0.99");
        Assert.Equal("exact", Line(most, q).Svd);
        var some = RunOn(tuned, baseModel, "some", "--max-rank", "8", "--rank-by", "energy:0.05");
        var (rank, svd, _) = Line(some, q);
        Assert.Equal("randomized", svd);
        var someAdapter = Path.Combine(_work["some"], "adapter_model.safetensors");
        var kept = ReferenceLinearAlgebra.Multiply(
            TestCheckpoints.Matrix(someAdapter, $"base_model.model.{q}.lora_B.weight"),
            TestCheckpoints.Matrix(someAdapter, $"base_model.model.{q}.lora_A.weight")
        );
        double total = s.Sum(v => v * v);
        double left = ReferenceLinearAlgebra.FrobeniusNorm(ReferenceLinearAlgebra.Add(delta, kept, -1));
        Assert.True(left * left <= 0.95 * total * (1 + 1e-6), $"rank {rank} keeps less than 5 %");
        int smallest = 1;
        while (s.Take(smallest).Sum(v => v * v) < 0.05 * total)
            smallest++;
        Assert.InRange(rank, smallest, smallest + 1);
    }

    [Fact]
    public void Bias_updates_are_stored_as_lora_B_bias_and_given_back_at_full_rank()
    {
        // The synth pair with q/k/v biases (Qwen2's attention_bias), changed in the fine-tune.
        string biasBase = _work["bias/base"],
            biasTuned = _work["bias/tuned"];
        foreach (var (source, target, shift) in new[] { (_base, biasBase, 0.0), (_tuned, biasTuned, 1.0) })
        {
            var tensors = TestCheckpoints.ReadAll(Path.Combine(source, "model.safetensors"));
            var list = new List<(string, long[], float[])>();
            foreach (var (name, values) in tensors)
            {
                list.Add((name, TestCheckpoints.Shape(Path.Combine(source, "model.safetensors"), name), values));
                if (
                    name.Contains("_proj.weight", StringComparison.Ordinal)
                    && name.Contains("self_attn.")
                    && !name.Contains("o_proj")
                )
                {
                    int rows = (int)TestCheckpoints.Shape(Path.Combine(source, "model.safetensors"), name)[0];
                    var bias = Enumerable
                        .Range(0, rows)
                        .Select(i => (float)(0.01 * i + shift * 0.003 * (i % 7 - 3)))
                        .ToArray();
                    list.Add((name.Replace(".weight", ".bias", StringComparison.Ordinal), [rows], bias));
                }
            }
            var config = System
                .Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!
                .AsObject();
            config["attention_bias"] = true;
            TestCheckpoints.Write(target, config, list);
        }

        var result = RunOn(biasTuned, biasBase, "bias-adapter", "--save-module", "v_proj");
        Assert.True(result.ExitCode == 0, result.Stderr);
        var adapter = _work["bias-adapter"];
        using (var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(adapter, "adapter_config.json"))))
            Assert.True(config.RootElement.GetProperty("lora_bias").GetBoolean());
        var file = Path.Combine(adapter, "adapter_model.safetensors");
        const string q = "model.layers.0.self_attn.q_proj";
        var stored = Tensor(file, $"base_model.model.{q}.lora_B.bias");
        var expected = Tensor(Path.Combine(biasTuned, "model.safetensors"), q + ".bias")
            .Zip(Tensor(Path.Combine(biasBase, "model.safetensors"), q + ".bias"), (x, y) => x - y)
            .ToArray();
        Assert.Equal(expected, stored);
        Assert.Contains(expected, v => v != 0);
        // A saved module's bias is saved whole, beside its weight.
        Assert.NotNull(TestCheckpoints.Read(file, "base_model.model.model.layers.0.self_attn.v_proj.bias"));

        AssertSameTensors(biasTuned, Applied(adapter, "bias-applied", biasBase), 1e-5);
    }

    [Fact]
    public void The_embedding_decomposed_with_embed_lora_is_given_back_at_full_rank()
    {
        var adapter = Extract("embed", "--embed-lora", "--skip-undecomposable");
        using (var weights = SafetensorsFile.Open(Path.Combine(adapter, "adapter_model.safetensors")))
        {
            Assert.NotNull(weights.Find("base_model.model.model.embed_tokens.lora_embedding_A"));
            Assert.Null(weights.Find("base_model.model.model.embed_tokens.weight"));
            Assert.Null(weights.Find("base_model.model.model.norm.weight"));
        }
        var applied = Applied(adapter, "embedded");
        const string name = "model.embed_tokens.weight";
        var expected = Tensor(Path.Combine(_tuned, "model.safetensors"), name);
        Assert.True(
            expected.Zip(Tensor(applied, name), (x, y) => Math.Abs(x - y)).Max() < 1e-5,
            "the embedding is not given back"
        );
    }

    [Fact]
    public void Ranking_by_energy_gives_each_module_the_smallest_rank_keeping_that_share()
    {
        var adapter = Path.Combine(Extract("energy", "--rank-by", "energy:0.8"), "adapter_model.safetensors");
        var ranks = new HashSet<int>();
        foreach (var module in Modules)
        {
            int rank = TestCheckpoints.Matrix(adapter, $"base_model.model.{module}.lora_A.weight").GetLength(0);
            var (_, s, _) = ReferenceLinearAlgebra.Svd(Delta(module));
            double total = s.Sum(v => v * v);
            Assert.True(s.Take(rank).Sum(v => v * v) >= 0.8 * total - 1e-9, $"{module}: rank {rank} keeps too little");
            Assert.True(s.Take(rank - 1).Sum(v => v * v) < 0.8 * total, $"{module}: rank {rank} is not the smallest");
            ranks.Add(rank);
        }
        Assert.True(ranks.Count > 1, "every module got the same rank");
        var bad = Run(_base, "z", "--rank-by", "energy:2");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("energy to keep must be in (0, 1]", bad.Stderr);
    }
}
