using System.Text.Json.Nodes;
using Alloy.Recipes;
using Alloy.Runtime;
using Alloy.Runtime.Models;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// Merges into memory: a runnable model filled by the merge (never written), the same report from <c>alloy eval
/// RECIPE.yml</c> as from evaluating the written folder, and re-merges with new parameter values on the same opened
/// inputs.
/// </summary>
public sealed class InMemoryMergeTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    private static string Example(string relative) => Path.Combine(ExampleTests.RepositoryRoot, "examples", relative);

    /// <summary>The report without what depends on the run's speed or on how the model was named.</summary>
    private static JsonNode Measured(string json)
    {
        var report = JsonNode.Parse(json)!;
        void Strip(JsonNode? node)
        {
            if (node is JsonObject o)
            {
                foreach (var key in new[] { "model", "seconds", "tokens_per_second" })
                    o.Remove(key);
                foreach (var (_, child) in o.ToList())
                    Strip(child);
            }
            else if (node is JsonArray a)
            {
                foreach (var child in a)
                    Strip(child);
            }
        }
        Strip(report);
        return report;
    }

    [Theory]
    [InlineData("ties.yml")] // bfloat16 output, streamed statistics, sign election
    [InlineData("tsv_m.yml")] // whole-tensor SVD method
    [InlineData("frankenmerge.yml")] // a 6-layer model from two 4-layer ones: the config changes too
    public void Evaluating_a_recipe_in_memory_reports_what_evaluating_its_written_folder_does(string recipe)
    {
        string[] data =
        [
            "--text",
            Example("eval/text.txt"),
            "--tasks",
            Example("eval/tasks.jsonl"),
            "--samples",
            "--quiet",
        ];
        var examples = Directory.GetFileSystemEntries(Example(""), "*", SearchOption.AllDirectories).Order().ToList();
        var inMemory = AlloyCli.Run(["eval", Example(recipe), .. data]);
        Assert.True(inMemory.ExitCode == 0, inMemory.Stderr);
        // Nothing was written beside the recipe or its models.
        Assert.Equal(examples, Directory.GetFileSystemEntries(Example(""), "*", SearchOption.AllDirectories).Order());
        AlloyCli.Merge(Example(recipe), _work["merged"]);
        var onDisk = AlloyCli.Run(["eval", _work["merged"], .. data]);
        Assert.True(onDisk.ExitCode == 0, onDisk.Stderr);
        Assert.Equal(Measured(onDisk.Stdout).ToJsonString(), Measured(inMemory.Stdout).ToJsonString());
        Assert.Equal(Example(recipe), (string)JsonNode.Parse(inMemory.Stdout)!["model"]!);
    }

    [Fact]
    public void A_merged_model_in_memory_has_the_written_folders_parameters_bit_for_bit()
    {
        var recipe = RecipeParser.ParseFile(Example("dare_ties.yml"), Diagnostics.Silent());
        using var session = MergeSession.Open(recipe);
        var inMemory = MergedModel.Create(session);
        session.WriteFolder(_work["folder"]);
        var written = LlamaModel.Load(_work["folder"]);
        Assert.Equal(written.Config.Layers, inMemory.Config.Layers);
        Assert.Equal(written.Parameters.Select(p => p.Name), inMemory.Parameters.Select(p => p.Name));
        foreach (var p in written.Parameters)
            Assert.True(p.Data.AsSpan().SequenceEqual(inMemory.Parameters[p.Name].Data), p.Name);
    }

    [Fact]
    public void Re_merging_with_new_parameters_equals_a_fresh_merge_and_reuses_the_opened_inputs()
    {
        var first = RecipeParser.ParseFile(Example("ties.yml"), Diagnostics.Silent());
        using var session = MergeSession.Open(first);
        var model = MergedModel.Create(session);
        var before = model.Parameters["model.layers.2.mlp.up_proj.weight"].Data.ToArray();
        var inputs = session.Plan.Jobs.Select(j => j.Inputs.Select(i => i.Tensor).ToList()).ToList();

        // New values for every parameter block: the weights, densities and a global.
        var second = first with
        {
            Text = null,
            Models = first
                .Models!.Select(
                    (m, k) =>
                        m with
                        {
                            Parameters = new ParameterSettings { ["weight"] = 0.3 * (k + 1), ["density"] = 0.25 },
                        }
                )
                .ToList(),
            Parameters = new ParameterSettings { ["normalize"] = false, ["lambda"] = 0.7 },
        };
        session.Reparameterize(second);
        MergedModel.Refill(session, model);
        Assert.False(
            before.AsSpan().SequenceEqual(model.Parameters["model.layers.2.mlp.up_proj.weight"].Data),
            "the new parameters changed nothing"
        );

        using var fresh = MergeSession.Open(second);
        var expected = MergedModel.Create(fresh);
        foreach (var p in expected.Parameters)
            Assert.True(p.Data.AsSpan().SequenceEqual(model.Parameters[p.Name].Data), p.Name);
        Assert.Equal(fresh.Plan.Describe(), session.Plan.Describe());
        // The inputs are the tensors opened at first: no header was read again.
        Assert.All(session.Plan.Jobs.Select((j, k) => (j, k)), x =>
            Assert.Equal(inputs[x.k], x.j.Inputs.Select(i => i.Tensor), ReferenceEqualityComparer.Instance)
        );
    }

    [Fact]
    public void A_re_merge_may_change_parameter_values_only_and_checks_them_as_a_plan_does()
    {
        var first = RecipeParser.ParseFile(Example("ties.yml"), Diagnostics.Silent());
        using var session = MergeSession.Open(first);
        var otherModels = first with { Models = first.Models!.Take(2).ToList() };
        Assert.Contains(
            "only parameter values may change between re-merges of one plan",
            Assert.Throws<AlloyException>(() => session.Reparameterize(otherModels)).Message
        );
        var badValue = first with
        {
            Parameters = new ParameterSettings { ["lambda"] = 1.0, ["normalize"] = 0.5 },
        };
        Assert.Contains(
            "parameter 'normalize' of ties: 0.5 is not true or false",
            Assert.Throws<AlloyException>(() => session.Reparameterize(badValue)).Message
        );
    }

    [Fact]
    public void Eval_of_a_recipe_with_mistakes_fails_in_one_line()
    {
        var missing = AlloyCli.Run(
            "eval",
            _work.Write("none.yml", "merge_method: linear\nmodels:\n  - model: nowhere\n    parameters: {weight: 1}\n"),
            "--tasks",
            Example("eval/tasks.jsonl"),
            "--quiet"
        );
        Assert.Equal(1, missing.ExitCode);
        Assert.StartsWith("error: ", missing.Stderr);
        Assert.Single(missing.Stderr.Trim().Split('\n'));
    }
}
