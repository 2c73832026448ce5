using System.Text.RegularExpressions;
using Alloy.Cli;
using Alloy.Runtime.Alignment;
using Alloy.Runtime.Models;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// <c>alloy align</c> through the CLI's entry point, on a model made by <c>alloy synth</c> and a copy of it with every
/// symmetry applied at once: both matchings undo the permutation, so a plain average of the two is the model again.
/// </summary>
public sealed class AlignCommandTests : IDisposable
{
    private readonly TempFolder _work = new();
    private readonly string _base;
    private readonly string _permuted;

    public AlignCommandTests()
    {
        _base = Path.Combine(AlloyCli.Synth(_work["synth"], fineTunes: 0, seed: 3), "base");
        var model = LlamaModel.Load(_base, new Runtime.RuntimeOptions { Threads = 2 });
        var perms = ModelAlignment.Spec(model.Config).Random(seed: 9);
        foreach (var p in perms.Values)
            if (p.Length > 1 && p.SequenceEqual(Enumerable.Range(0, p.Length)))
                Array.Reverse(p);
        _permuted = _work["permuted"];
        ModelSaver.Save(ModelAlignment.Permute(model, perms), _base, _permuted, DType.F32);
    }

    public void Dispose() => _work.Dispose();

    private string Average(string other, string output)
    {
        var config = _work.Write(
            $"{output}.yml",
            $"merge_method: linear\nmodels:\n  - model: {_base}\n    parameters: {{weight: 0.5}}\n  - model: "
                + $"{other}\n    parameters: {{weight: 0.5}}\ndtype: float32\n"
        );
        AlloyCli.Merge(config, _work[output]);
        return _work[output];
    }

    private static double MaxDifference(string a, string b)
    {
        var (x, y) = (TestCheckpoints.ReadAll(a), TestCheckpoints.ReadAll(b));
        Assert.Equal(x.Keys.Order(), y.Keys.Order());
        return x.Max(t => t.Value.Zip(y[t.Key]).Max(p => Math.Abs(p.First - p.Second)));
    }

    [Fact]
    public void Weight_matching_undoes_the_permutation_and_the_average_is_the_model()
    {
        var result = AlloyCli.Run("align", _permuted, "--to", _base, "--out", _work["aligned"], "--seed", "4", "-q");
        Assert.True(result.ExitCode == 0, result.Stderr);
        var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches(@"^residual +cosine -?0\.\d{4} -> 1\.0000$", lines[0]);
        Assert.Matches(@"^mlp +cosine -?0\.\d{4} -> 1\.0000$", lines[1]);
        Assert.Matches(@"^heads +cosine -?0\.\d{4} -> 1\.0000$", lines[2]);
        Assert.Matches(@"^aligned .* by weight matching \(\d+ sweeps, [0-9.]+ s\); wrote .*aligned$", lines[3]);
        Assert.Equal(0, MaxDifference(_base, _work["aligned"]));
        Assert.True(File.Exists(_work["aligned/tokenizer.json"]));

        Assert.InRange(MaxDifference(_base, Average(_work["aligned"], "merged")), 0, 1e-6);
        // Unaligned, the same average is another model.
        Assert.True(MaxDifference(_base, Average(_permuted, "naive")) > 0.01);
    }

    [Fact]
    public void Activation_matching_undoes_the_permutation()
    {
        var data = _work.Write(
            "data.txt",
            string.Join("\n", Enumerable.Range(0, 24).Select(i => $"example {i}: the quick brown fox {i * 7 % 13}"))
        );
        var result = AlloyCli.Run("align", _permuted, "--to", _base, "--out", _work["aligned"], "--data", data, "-q");
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Matches(@"^residual +mean correlation -?0\.\d{4} -> 1\.0000\n", result.Stdout);
        Assert.Contains("by activation matching (24 examples", result.Stdout);
        Assert.Equal(0, MaxDifference(_base, _work["aligned"]));
    }

    [Fact]
    public void A_recipe_aligns_a_model_entry_before_merging()
    {
        string Recipe(string name, string align) =>
            _work.Write(
                name,
                $"merge_method: linear\nmodels:\n  - model: {_base}\n    parameters: {{weight: 0.5}}\n  - model: "
                    + $"{_permuted}\n    {align}parameters: {{weight: 0.5}}\ndtype: float32\n"
            );
        var merged = AlloyCli.Merge(Recipe("aligned.yml", "align: weight_matching\n    "), _work["merged"], "-v");
        Assert.Matches(
            $@"aligned {Regex.Escape(_permuted)} to {Regex.Escape(_base)} by weight matching "
                + @"\(\d+ sweeps, \d+ tensors permuted\)",
            merged.Stderr
        );
        Assert.InRange(MaxDifference(_base, _work["merged"]), 0, 1e-6);

        AlloyCli.Fails(Recipe("bad.yml", "align: zipit\n    "), _work["bad"], "'align' must be weight_matching");
        var self = _work.Write(
            "self.yml",
            $"merge_method: linear\nmodels:\n  - model: {_base}\n    align: weight_matching\n    parameters: "
                + $"{{weight: 0.5}}\n  - model: {_permuted}\n    parameters: {{weight: 0.5}}\ndtype: float32\n"
        );
        AlloyCli.Fails(self, _work["self"], "cannot be aligned itself");
    }

    [Fact]
    public void Mismatched_models_fail_in_one_line()
    {
        string wide = Path.Combine(AlloyCli.Synth(_work["wide"], fineTunes: 0, intermediate: 48, seed: 3), "base");
        var result = AlloyCli.Run("align", wide, "--to", _base, "--out", _work["out"], "-q");
        Assert.Equal(ExitCodes.InputError, result.ExitCode);
        Assert.Equal(
            "error: the model and the reference differ in intermediate_size (48 against 64); alignment permutes the "
                + "units of models of one architecture and shape",
            result.Stderr.Trim()
        );
        Assert.False(Directory.Exists(_work["out"]) && Directory.EnumerateFileSystemEntries(_work["out"]).Any());

        var missing = AlloyCli.Run("align", _permuted, "--to", _work["nowhere"], "--out", _work["out"], "-q");
        Assert.Equal(ExitCodes.InputError, missing.ExitCode);
        Assert.Single(missing.Stderr.Trim().Split('\n'));
        Assert.Contains("does not exist", missing.Stderr);
    }
}
