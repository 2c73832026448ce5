using Alloy.Checkpoints;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// Fisher merging and RegMean through <c>alloy merge</c> on models made by <c>alloy synth</c>: with statistics files
/// made by <c>alloy fisher</c> and <c>alloy regmean</c>, and with <c>data:</c> (computed once, then read from the
/// cache); the merged tensors against the formulas applied to the files by the test itself.
/// </summary>
public sealed class DataAwareMergeTests : IDisposable
{
    private readonly TempFolder _work = new();
    private readonly string _first,
        _second;
    private readonly string _firstData,
        _secondData;

    public DataAwareMergeTests()
    {
        (_first, _second) = Synth("synth", layers: 2, intermediate: 64);
        _firstData = _work.Write("first.txt", "the cat sat on the mat\nhello world again\nmerging models is fun\n");
        _secondData = _work.Write(
            "second.jsonl",
            "{\"prompt\": \"1+2=\", \"completion\": \"3\"}\n{\"text\": \"four\"}\n"
        );
    }

    /// <summary>Two float32 fine-tunes of one base, made by <c>alloy synth</c>.</summary>
    private (string First, string Second) Synth(string folder, int layers, int intermediate)
    {
        AlloyCli.Synth(_work[folder], fineTunes: 2, layers, intermediate);
        return (_work[$"{folder}/finetune-1"], _work[$"{folder}/finetune-2"]);
    }

    public void Dispose() => _work.Dispose();

    private string Statistics(string command, string model, string data, string name, params string[] extra)
    {
        var result = AlloyCli.Run([command, model, "--data", data, "--out", _work[name], "-q", .. extra]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        return _work[name];
    }

    private string Recipe(string method, string firstParameters, string secondParameters, string globals = "") =>
        _work.Write(
            $"{method}-{Guid.NewGuid():N}.yml",
            $"""
            merge_method: {method}
            models:
              - model: {_first}
                parameters: {firstParameters}
              - model: {_second}
                parameters: {secondParameters}
            {(globals.Length > 0 ? "parameters: " + globals : "")}
            dtype: float32
            """
        );

    private static float[] Tensor(string file, string name) => TestCheckpoints.Read(file, name);

    private static double Norm(string file) =>
        Math.Sqrt(TestCheckpoints.ReadAll(file).Values.Sum(values => values.Sum(v => (double)v * v)));

    /// <summary>
    /// The merged weight W* in <paramref name="merged"/> satisfies RegMean's normal equations Σ_t G̃_t (W* − W_t)ᵀ = 0,
    /// with each model's Gram from its file, mean-normalised by the token count in the file's metadata and its
    /// off-diagonal entries scaled by <paramref name="alpha"/>.
    /// </summary>
    private static void AssertSolvesRegMean(
        string merged,
        string name,
        IReadOnlyList<(string Model, string Grams)> inputs,
        double alpha
    )
    {
        var w = Tensor(merged, name);
        int n = (int)Math.Sqrt(Tensor(inputs[0].Grams, name).Length),
            rows = w.Length / n;
        var residual = new double[n * rows];
        double scale = 0;
        foreach (var (model, gramFile) in inputs)
        {
            using var file = SafetensorsFile.Open(gramFile);
            double count = double.Parse(file.Metadata["tokens"], System.Globalization.CultureInfo.InvariantCulture);
            var (g, wt) = (Tensor(gramFile, name), Tensor(Path.Combine(model, "model.safetensors"), name));
            for (int i = 0; i < n; i++)
            for (int r = 0; r < rows; r++)
            {
                double sum = 0;
                for (int j = 0; j < n; j++)
                    sum += (i == j ? 1 : alpha) * g[i * n + j] / count * (w[r * n + j] - wt[r * n + j]);
                residual[i * rows + r] += sum;
                scale = Math.Max(scale, Math.Abs(g[i * n + i] / count));
            }
        }
        Assert.True(residual.Max(Math.Abs) < 1e-4 * scale, $"normal equations off by {residual.Max(Math.Abs)}");
    }

    [Fact]
    public void Fisher_merging_from_alloy_fisher_files_weights_each_entry_by_the_normalised_floored_fisher()
    {
        var f1 = Statistics("fisher", _first, _firstData, "f1.safetensors");
        var f2 = Statistics("fisher", _second, _secondData, "f2.safetensors");
        var output = _work["fisher"];
        AlloyCli.Merge(Recipe("fisher", $"{{fisher: {f1}, weight: 2}}", $"{{fisher: {f2}}}"), output);

        const string name = "model.layers.1.mlp.down_proj.weight";
        var (t1, t2) = (
            Tensor(Path.Combine(_first, "model.safetensors"), name),
            Tensor(Path.Combine(_second, "model.safetensors"), name)
        );
        var (g1, g2) = (Tensor(f1, name), Tensor(f2, name));
        double c1 = 2 / Norm(f1),
            c2 = 1 / Norm(f2);
        var merged = Tensor(Path.Combine(output, "model.safetensors"), name);
        int differing = 0;
        for (int j = 0; j < merged.Length; j++)
        {
            double a = c1 * Math.Max(g1[j], 1e-6),
                b = c2 * Math.Max(g2[j], 1e-6);
            Assert.Equal((float)((a * t1[j] + b * t2[j]) / (a + b)), merged[j]);
            differing += Math.Abs(merged[j] - (2 * t1[j] + t2[j]) / 3) > 1e-4 ? 1 : 0;
        }
        Assert.True(differing > merged.Length / 2, "the Fisher changed almost nothing against a weighted average");
    }

    [Fact]
    public void RegMean_from_alloy_regmean_files_solves_the_normal_equations_and_averages_other_tensors()
    {
        var g1 = Statistics("regmean", _first, _firstData, "g1.safetensors");
        var g2 = Statistics("regmean", _second, _secondData, "g2.safetensors");
        var output = _work["regmean"];
        AlloyCli.Merge(Recipe("regmean", $"{{gram: {g1}}}", $"{{gram: {g2}}}", "{alpha: 1.0}"), output);

        AssertSolvesRegMean(
            Path.Combine(output, "model.safetensors"),
            "model.layers.0.self_attn.o_proj.weight",
            [(_first, g1), (_second, g2)],
            alpha: 1
        );

        const string norm = "model.layers.0.input_layernorm.weight";
        var (n1, n2) = (
            Tensor(Path.Combine(_first, "model.safetensors"), norm),
            Tensor(Path.Combine(_second, "model.safetensors"), norm)
        );
        Assert.Equal(n1.Zip(n2, (a, b) => (a + b) / 2), Tensor(Path.Combine(output, "model.safetensors"), norm));
    }

    [Theory]
    [InlineData("fisher", "fisher", "fisher: {0}", "{fisher_samples: 100}")]
    [InlineData("regmean", "regmean", "gram: {0}", "")]
    public void Statistics_from_data_equal_the_commands_files_and_are_computed_once(
        string method,
        string command,
        string fileParameter,
        string settings
    )
    {
        var s1 = Statistics(command, _first, _firstData, "s1.safetensors");
        var s2 = Statistics(command, _second, _secondData, "s2.safetensors");
        var fromFiles = _work["from-files"];
        AlloyCli.Merge(
            Recipe(method, "{" + string.Format(fileParameter, s1) + "}", "{" + string.Format(fileParameter, s2) + "}"),
            fromFiles
        );

        var cache = _work["cache"];
        var recipe = Recipe(method, $"{{data: {_firstData}}}", $"{{data: {_secondData}}}", settings);
        var first = AlloyCli.Merge(recipe, _work["from-data"], "--statistics-cache", cache);
        Assert.Equal(2, first.Stderr.Split("note: computing").Length - 1);
        var cached = Directory.GetFiles(cache).ToDictionary(f => f, File.GetLastWriteTimeUtc);
        Assert.Equal(2, cached.Count);

        var second = AlloyCli.Merge(recipe, _work["again"], "--statistics-cache", cache);
        Assert.DoesNotContain("note: computing", second.Stderr);
        Assert.Equal(2, second.Stderr.Split("note: using the cached").Length - 1);
        Assert.Equal(cached, Directory.GetFiles(cache).ToDictionary(f => f, File.GetLastWriteTimeUtc));

        var expected = File.ReadAllBytes(Path.Combine(fromFiles, "model.safetensors"));
        Assert.Equal(expected, File.ReadAllBytes(Path.Combine(_work["from-data"], "model.safetensors")));
        Assert.Equal(expected, File.ReadAllBytes(Path.Combine(_work["again"], "model.safetensors")));
    }

    [Fact]
    public void Statistics_mistakes_fail_in_one_line()
    {
        var fisher = Statistics("fisher", _first, _firstData, "f.safetensors");
        var gram = Statistics("regmean", _first, _firstData, "g.safetensors");
        AlloyCli.Fails(
            Recipe("fisher", $"{{fisher: {fisher}}}", "{weight: 1}"),
            _work["o1"],
            "has no statistics: set 'fisher: FILE'"
        );
        AlloyCli.Fails(
            Recipe("fisher", $"{{fisher: {fisher}}}", $"{{fisher: {gram}}}"),
            _work["o2"],
            "holds regmean_gram, not diagonal_fisher (made by `alloy fisher`)"
        );
        AlloyCli.Fails(
            Recipe("regmean", $"{{gram: {gram}, data: {_firstData}}}", $"{{gram: {gram}}}"),
            _work["o3"],
            "sets both 'gram' and 'data'"
        );
        AlloyCli.Fails(
            Recipe("regmean", $"{{gram: {gram}}}", $"{{gram: {_work["missing.safetensors"]}}}"),
            _work["o4"],
            "does not exist (make it with `alloy regmean"
        );
        AlloyCli.Fails(
            Recipe("fisher", $"{{data: {_firstData}}}", $"{{data: {_work["nothing.txt"]}}}"),
            _work["o5"],
            "data file"
        );
    }

    [Fact]
    public void RegMean_admits_one_tensors_gram_matrices_at_a_time_within_the_memory_limit()
    {
        // Eight layers with wide MLPs: the Gram matrices together are several times one tensor's need, and a limit
        // between the two is enough, because a tensor's Grams are read when its turn comes and dropped after.
        var (first, second) = Synth("deep", layers: 8, intermediate: 256);
        var g1 = Statistics("regmean", first, _firstData, "d1.safetensors");
        var g2 = Statistics("regmean", second, _secondData, "d2.safetensors");
        long all = new FileInfo(g1).Length + new FileInfo(g2).Length;
        var recipe = _work.Write(
            "deep.yml",
            $"""
            merge_method: regmean
            models:
              - model: {first}
                parameters: {"{"}gram: {g1}{"}"}
              - model: {second}
                parameters: {"{"}gram: {g2}{"}"}
            dtype: float32
            """
        );
        var refused = AlloyCli.Run("merge", recipe, _work["small"], "--quiet", "--memory-limit", "64K");
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("GiB of working memory", refused.Stderr);
        long limit = all / 2;
        Assert.True(all > 4_000_000, $"the Gram matrices take only {all} bytes");
        AlloyCli.Merge(recipe, _work["bounded"], "--memory-limit", $"{limit / 1024}K");
    }

    private string AdaRecipe(string globals) =>
        _work.Write($"ada-{Guid.NewGuid():N}.yml", LearningRecipe("adamerging", globals));

    /// <summary>A recipe of <paramref name="method"/> over the base and both models, each with its prompts.</summary>
    private string LearningRecipe(string method, string globals) =>
        $"""
            merge_method: {method}
            base_model: {_work["synth/base"]}
            models:
              - model: {_first}
                parameters: {"{"}data: {_firstData}{"}"}
              - model: {_second}
                parameters: {"{"}data: {_secondData}{"}"}
            parameters: {globals}
            dtype: float32
            """;

    private static Dictionary<string, double> Lambdas(string folder, int model)
    {
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "adamerging.json")));
        return json
            .RootElement.GetProperty("models")[model]
            .GetProperty("lambdas")
            .EnumerateObject()
            .ToDictionary(p => p.Name, p => p.Value.GetDouble());
    }

    [Theory]
    [InlineData("layer", "none")]
    [InlineData("task", "none")]
    [InlineData("layer", "ties")]
    public void AdaMerging_learns_coefficients_that_lower_the_entropy_and_merges_with_them(
        string granularity,
        string sparsify
    )
    {
        var output = _work["ada"];
        var result = AlloyCli.Merge(
            AdaRecipe($"{{steps: 12, learning_rate: 0.05, granularity: {granularity}, sparsify: {sparsify}}}"),
            output
        );
        Assert.Contains("adamerging: step 12/12", result.Stderr);
        using (
            var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "adamerging.json")))
        )
        {
            var losses = json.RootElement.GetProperty("losses").EnumerateArray().Select(l => l.GetDouble()).ToList();
            Assert.Equal(12, losses.Count);
            Assert.True(losses[^1] < losses[0], $"entropy {losses[0]} → {losses[^1]}");
        }
        var (l1, l2) = (Lambdas(output, 0), Lambdas(output, 1));
        Assert.Equal(granularity == "task" ? 1 : 21, l1.Count);
        Assert.All(l1.Values.Concat(l2.Values), l => Assert.InRange(l, 0, 1));

        // θ = θ0 + Σ λ_t τ̃_t, τ̃ trimmed to the top 20% per tensor and sign-elected with ties.
        const string name = "model.layers.1.mlp.up_proj.weight";
        var base0 = Tensor(_work["synth/base/model.safetensors"], name);
        var taus = new[] { _first, _second }
            .Select(m => Tensor(Path.Combine(m, "model.safetensors"), name).Zip(base0, (x, b) => x - b).ToArray())
            .ToArray();
        if (sparsify == "ties")
        {
            foreach (var tau in taus)
            {
                int keep = (int)(0.2 * tau.Length);
                float cut = tau.Select(Math.Abs).OrderByDescending(v => v).ElementAt(keep - 1);
                for (int j = 0; j < tau.Length; j++)
                    tau[j] = Math.Abs(tau[j]) >= cut ? tau[j] : 0;
            }
            for (int j = 0; j < base0.Length; j++)
            {
                float sign = taus[0][j] + taus[1][j] >= 0 ? 1 : -1;
                foreach (var tau in taus)
                    tau[j] = tau[j] * sign > 0 ? tau[j] : 0;
            }
        }
        double Of(Dictionary<string, double> l) => l.TryGetValue("*", out var all) ? all : l[name];
        var merged = Tensor(Path.Combine(output, "model.safetensors"), name);
        for (int j = 0; j < merged.Length; j++)
            Assert.True(
                Math.Abs(base0[j] + Of(l1) * taus[0][j] + Of(l2) * taus[1][j] - merged[j]) < 1e-5,
                $"entry {j}: {merged[j]}"
            );

        // The written recipe reproduces the merge from adamerging.json, without learning.
        var again = AlloyCli.Merge(Path.Combine(output, "mergekit_config.yml"), _work["again"]);
        Assert.DoesNotContain("adamerging: step", again.Stderr);
        Assert.Equal(
            File.ReadAllBytes(Path.Combine(output, "model.safetensors")),
            File.ReadAllBytes(_work["again/model.safetensors"])
        );
    }

    [Fact]
    public void AdaMerging_reuses_given_lambdas_and_refuses_missing_data_or_a_foreign_file()
    {
        var learnt = _work["learnt"];
        AlloyCli.Merge(AdaRecipe("{steps: 3, granularity: task}"), learnt);
        // A learnt merge's folder (with adamerging.json) is a model output --overwrite may replace.
        AlloyCli.Merge(AdaRecipe("{steps: 3, granularity: task}"), learnt, "--overwrite");
        var json = Path.Combine(learnt, "adamerging.json");
        var reused = AlloyCli.Merge(AdaRecipe($"{{lambdas: {json}}}"), _work["reused"]);
        Assert.DoesNotContain("adamerging: step", reused.Stderr);
        Assert.Equal(
            File.ReadAllBytes(Path.Combine(learnt, "model.safetensors")),
            File.ReadAllBytes(_work["reused/model.safetensors"])
        );

        var noData = _work.Write(
            "nodata.yml",
            $"""
            merge_method: adamerging
            base_model: {_work["synth/base"]}
            models:
              - model: {_first}
              - model: {_second}
            """
        );
        AlloyCli.Fails(noData, _work["o1"], "has no data: (prompts of its task)");
        var foreign = _work.Write("foreign.json", File.ReadAllText(json).Replace(_second, "/elsewhere/model"));
        AlloyCli.Fails(AdaRecipe($"{{lambdas: {foreign}}}"), _work["o2"], "the coefficients have no model");
        var bad = _work.Write("bad.json", "{\"granularity\": \"task\"}");
        AlloyCli.Fails(AdaRecipe($"{{lambdas: {bad}}}"), _work["o3"], "not an adamerging.json");
    }

    [Fact]
    public void RegMean_plus_plus_gathers_grams_behind_the_merged_blocks_once_and_merges_with_them()
    {
        var cache = _work["cache"];
        var recipe = Recipe("regmean_plusplus", $"{{data: {_firstData}}}", $"{{data: {_secondData}}}");
        var first = AlloyCli.Merge(recipe, _work["pp"], "--statistics-cache", cache);
        Assert.Contains("computing RegMean++ Gram matrices of 2 models", first.Stderr);
        var again = AlloyCli.Merge(recipe, _work["pp-again"], "--statistics-cache", cache);
        Assert.Contains("using the cached RegMean++ Gram matrices", again.Stderr);
        Assert.Equal(
            File.ReadAllBytes(_work["pp/model.safetensors"]),
            File.ReadAllBytes(_work["pp-again/model.safetensors"])
        );

        // The written recipe names the Gram files it merged with, and its blocks solve RegMean's equations with them.
        var written = File.ReadAllText(_work["pp/mergekit_config.yml"]);
        var grams = System
            .Text.RegularExpressions.Regex.Matches(written, @"gram: (\S+)")
            .Select(m => m.Groups[1].Value)
            .ToList();
        Assert.Equal(2, grams.Count);
        const string name = "model.layers.1.mlp.down_proj.weight";
        var merged = Tensor(_work["pp/model.safetensors"], name);
        AssertSolvesRegMean(
            _work["pp/model.safetensors"],
            name,
            [(_first, grams[0]), (_second, grams[1])],
            alpha: 0.95
        );

        // Plain RegMean on the same data takes block 1's inputs from each model's own block 0: another answer.
        AlloyCli.Merge(
            Recipe("regmean", $"{{data: {_firstData}}}", $"{{data: {_secondData}}}"),
            _work["plain"],
            "--statistics-cache",
            cache
        );
        var plain = Tensor(_work["plain/model.safetensors"], name);
        Assert.True(plain.Zip(merged, (x, y) => Math.Abs(x - y)).Max() > 1e-4, "RegMean++ equals RegMean here");
    }

    [Theory]
    [InlineData("task_arithmetic")]
    [InlineData("adamerging")]
    public void Concrete_subspace_learns_a_shared_mask_writes_it_beside_the_model_and_merges_inside_it(string inside)
    {
        var cache = _work["cache"];
        var recipe = _work.Write(
            $"concrete-{inside}.yml",
            $"""
            merge_method: concrete_subspace
            base_model: {_work["synth/base"]}
            models:
              - model: {_first}
                parameters: {"{"}data: {_firstData}, lambda: 0.4{"}"}
              - model: {_second}
                parameters: {"{"}data: {_secondData}{"}"}
            parameters: {"{"}steps: 8, learning_rate: 0.05, inside: {inside}, adamerging_steps: 4, granularity: task{"}"}
            dtype: float32
            """
        );
        var output = _work["concrete"];
        var first = AlloyCli.Merge(recipe, output, "--statistics-cache", cache);
        Assert.Contains("concrete mask: step 8/8", first.Stderr);
        Assert.Equal(inside == "adamerging", File.Exists(Path.Combine(output, "adamerging.json")));

        // θ = θ0 + m ⊙ Σ λ_t τ_t with the written mask and the models' (or learnt) λ.
        double l1 = 0.4,
            l2 = 0.3;
        if (inside == "adamerging")
            (l1, l2) = (Lambdas(output, 0)["*"], Lambdas(output, 1)["*"]);
        const string name = "model.layers.0.mlp.gate_proj.weight";
        var mask = Tensor(Path.Combine(output, "concrete_mask.safetensors"), name);
        var base0 = Tensor(_work["synth/base/model.safetensors"], name);
        var (x1, x2) = (
            Tensor(Path.Combine(_first, "model.safetensors"), name),
            Tensor(Path.Combine(_second, "model.safetensors"), name)
        );
        var merged = Tensor(Path.Combine(output, "model.safetensors"), name);
        Assert.True(Math.Abs(mask.Average(m => (double)m) - 1) < 1e-3, "the mask is not rescaled to mean 1");
        Assert.True(mask.Max() - mask.Min() > 0.1, "the mask is flat");
        for (int j = 0; j < merged.Length; j++)
        {
            double expected = base0[j] + mask[j] * (l1 * (x1[j] - base0[j]) + l2 * (x2[j] - base0[j]));
            Assert.True(Math.Abs(expected - merged[j]) < 1e-5, $"entry {j}: {merged[j]}, expected {expected}");
        }

        // The written recipe merges again from the files beside the model, and the same recipe reuses the cached mask.
        var again = AlloyCli.Merge(Path.Combine(output, "mergekit_config.yml"), _work["concrete-again"]);
        Assert.DoesNotContain("step", again.Stderr);
        Assert.Equal(
            File.ReadAllBytes(Path.Combine(output, "model.safetensors")),
            File.ReadAllBytes(_work["concrete-again/model.safetensors"])
        );
        var cached = AlloyCli.Merge(recipe, _work["concrete-cached"], "--statistics-cache", cache);
        Assert.Contains("using the cached Concrete mask", cached.Stderr);

        var fisher = Statistics("fisher", _first, _firstData, "not-a-mask.safetensors");
        AlloyCli.Fails(
            _work.Write("bad-mask.yml", File.ReadAllText(recipe).Replace("inside: ", $"mask: {fisher}, inside: ")),
            _work["o-mask"],
            "holds diagonal_fisher, not concrete_mask"
        );
    }

    /// <summary>
    /// A search re-merges a session with its recipe's values (the quality benchmark does): what the session learnt
    /// when it opened — RegMean++'s Grams, AdaMerging's λ, a Concrete mask — must survive, not be learnt or computed
    /// anew from data: the plan is the same after the recipe is given again.
    /// </summary>
    [Theory]
    [InlineData("regmean_plusplus", "")]
    [InlineData("adamerging", "steps: 3, granularity: layer")]
    [InlineData("concrete_subspace", "steps: 3")]
    public void A_session_keeps_what_it_learnt_when_its_recipe_is_given_again(string method, string globals)
    {
        var text = LearningRecipe(method, "{" + globals + "}");
        var cache = _work["session-cache"];
        var options = new MergeOptions
        {
            Statistics = new Alloy.Runtime.Merging.StatisticsCache(cache),
            Learner = new Alloy.Runtime.Merging.MergeLearner(cache),
        };
        var recipe = Alloy.Recipes.RecipeParser.Parse(text, "session.yml", Diagnostics.Silent());
        using var session = MergeSession.Open(recipe, options);
        var learnt = session.Plan.Describe();
        session.Reparameterize(recipe);
        Assert.Equal(learnt, session.Plan.Describe());
    }
}
