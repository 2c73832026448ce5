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
        AlloyCli.Run([
            "extract-lora",
            "--model",
            _tuned,
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
    private string Applied(string adapter, string name)
    {
        var recipe = _work.Write(
            name + ".yml",
            $"merge_method: linear\nmodels:\n  - model: {_base}+{adapter}\n    parameters: {{weight: 1.0}}\n"
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

    [Fact]
    public void At_full_rank_the_adapter_gives_the_fine_tune_back()
    {
        var applied = Applied(Extract("full"), "applied");
        using var tuned = SafetensorsFile.Open(Path.Combine(_tuned, "model.safetensors"));
        foreach (var tensor in tuned.Tensors)
        {
            var expected = Tensor(Path.Combine(_tuned, "model.safetensors"), tensor.Info.Name);
            double worst = expected.Zip(Tensor(applied, tensor.Info.Name), (x, y) => Math.Abs(x - y)).Max();
            Assert.True(worst < 1e-5, $"{tensor.Info.Name}: off by {worst}");
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

    [Fact]
    public void The_adapter_is_the_same_bytes_at_any_thread_count()
    {
        var one = Extract("one", "--max-rank", "6", "--threads", "1");
        var two = Extract("two", "--max-rank", "6", "--threads", "2");
        Assert.Equal(
            File.ReadAllBytes(Path.Combine(one, "adapter_model.safetensors")),
            File.ReadAllBytes(Path.Combine(two, "adapter_model.safetensors"))
        );
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
