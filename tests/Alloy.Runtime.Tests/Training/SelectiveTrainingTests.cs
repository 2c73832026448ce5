using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Support;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Tests.Training;

/// <summary><c>--only</c>: training the routers of a mixture of experts, or any parameters by pattern.</summary>
public sealed class SelectiveTrainingTests
{
    public static TheoryData<string> Families => ["Mixtral", "Qwen2Moe"];

    /// <summary>
    /// 40 steps on a fixed batch, routers only: the loss falls, every router weight moved, and every other parameter
    /// is bit for bit what it was.
    /// </summary>
    [Theory]
    [MemberData(nameof(Families))]
    public void Router_only_training_lowers_the_loss_and_leaves_the_rest_untouched(string family)
    {
        var model = RandomModels.Create(RandomModels.Moe(Enum.Parse<ArchitectureFamily>(family)));
        var before = model.Parameters.ToDictionary(p => p.Name, p => (float[])p.Data.Clone());
        var examples = RandomModels.Examples(model.Config.VocabSize, 1, 20, 17, 25, 12);
        var trainer = new Trainer(
            model,
            new TrainingOptions
            {
                Steps = 40,
                BatchSize = examples.Length,
                LearningRate = 3e-2,
                Only = [ParameterSelection.Router],
            }
        );
        double start = trainer.Loss(examples);
        trainer.Run(examples);
        double end = trainer.Loss(examples);
        Assert.True(end < start - 0.02, $"loss {start:F4} → {end:F4}");

        var routers = model.Parameters.Where(p => ParameterSelection.IsRouter(p.Name)).Select(p => p.Name).ToList();
        Assert.Equal(family == "Mixtral" ? 2 : 4, routers.Count); // a gate per layer, and Qwen2-MoE's shared gates
        Assert.Equal(routers, trainer.Trained.Select(p => p.Name));
        foreach (var p in model.Parameters)
            if (routers.Contains(p.Name))
                Assert.NotEqual(before[p.Name], p.Data);
            else
                Assert.Equal(before[p.Name], p.Data);
    }

    [Fact]
    public void Patterns_match_whole_names_with_wildcards()
    {
        var parameters = RandomModels.Create(RandomModels.Moe(ArchitectureFamily.Qwen2Moe)).Parameters;
        var selected = ParameterSelection.Select(
            parameters,
            ["model.layers.1.mlp.experts.*.down_proj.weight", "router"]
        );
        Assert.Equal(
            [
                "model.layers.0.mlp.gate.weight",
                "model.layers.0.mlp.shared_expert_gate.weight",
                "model.layers.1.mlp.gate.weight",
                .. Enumerable.Range(0, 4).Select(e => $"model.layers.1.mlp.experts.{e}.down_proj.weight"),
                "model.layers.1.mlp.shared_expert_gate.weight",
            ],
            selected.Select(p => p.Name)
        );
        Assert.Equal(
            ["model.norm.weight"],
            ParameterSelection.Select(parameters, ["model.norm.weight"]).Select(p => p.Name)
        );
    }

    [Fact]
    public void A_selection_that_matches_nothing_is_refused_with_one_line()
    {
        var dense = RandomModels.Create(RandomModels.Config()).Parameters;
        var e = Assert.Throws<AlloyException>(() => ParameterSelection.Select(dense, ["router"]));
        Assert.Equal("--only router: the model has no router (it is not a mixture of experts)", e.Message);
        e = Assert.Throws<AlloyException>(() => ParameterSelection.Select(dense, ["self_attn"]));
        Assert.StartsWith("--only 'self_attn' matches no parameter (patterns match whole names", e.Message);
    }
}
