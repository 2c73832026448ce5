using Alloy.Planning;
using Alloy.Recipes;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.Planning;

public sealed class PlannerTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public PlannerTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    private MergePlan Plan(string yaml, out ModelSet models)
    {
        var diagnostics = new Diagnostics();
        var recipe = RecipeParser.Parse(yaml, "test.yml", diagnostics);
        models = ModelSet.Open(recipe, diagnostics);
        return Planner.Create(recipe, models, new PlanOptions(), diagnostics);
    }

    [Fact]
    public void Jobs_follow_layer_order_and_carry_their_position()
    {
        var plan = Plan(
            $$"""
            merge_method: passthrough
            slices:
              - sources: [{ model: "{{_models.FineTunes[0]}}", layer_range: [0, 2] }]
              - sources: [{ model: "{{_models.FineTunes[1]}}", layer_range: [3, 4] }]
            """,
            out var models
        );
        using (models)
        {
            var names = plan.Jobs.Select(j => j.Output.Name).ToList();
            Assert.Equal("model.embed_tokens.weight", names[0]);
            Assert.Equal(["model.norm.weight", "lm_head.weight"], names[^2..]);
            Assert.Equal(3, plan.OutputLayerCount);
            Assert.True(plan.LayerCountChanged);
            // Layers come in numeric order (mergekit writes layers.10 before layers.2).
            var layers = names
                .Where(n => n.StartsWith("model.layers.", StringComparison.Ordinal))
                .Select(n => int.Parse(n.Split('.')[2]))
                .ToList();
            Assert.Equal(layers.Order(), layers);

            var embed = plan.Jobs[0];
            Assert.True(embed.IsCopy);
            var lastLayer = plan.Jobs.First(j => j.Output.Name.StartsWith("model.layers.2.", StringComparison.Ordinal));
            Assert.Equal(_models.FineTunes[1], lastLayer.Inputs[0].Model.Location);
            Assert.Equal("model.layers.3.input_layernorm.weight", lastLayer.Inputs[0].Tensor.Name);
        }
    }

    [Fact]
    public void Merged_tensors_know_their_layer_and_the_layer_count()
    {
        var plan = Plan(
            $$"""
            merge_method: linear
            models:
              - model: "{{_models.FineTunes[0]}}"
                parameters: { weight: 1 }
              - model: "{{_models.FineTunes[1]}}"
                parameters: { weight: 1 }
            dtype: bfloat16
            """,
            out var models
        );
        using (models)
        {
            var embed = plan.Jobs.Single(j => j.Output.Name == "model.embed_tokens.weight").Info!.Position;
            Assert.Equal(new Alloy.Methods.TensorPosition(null, true, 4), embed);
            var layer2 = plan
                .Jobs.First(j => j.Output.Name.StartsWith("model.layers.2.", StringComparison.Ordinal))
                .Info!.Position;
            Assert.Equal(new Alloy.Methods.TensorPosition(2, false, 4), layer2);
            var head = plan.Jobs.Single(j => j.Output.Name == "lm_head.weight").Info!.Position;
            Assert.Equal(new Alloy.Methods.TensorPosition(null, false, 4), head);
            Assert.All(plan.Jobs, j => Assert.Equal(DType.BF16, j.Output.DType));
            Assert.Equal(DType.BF16, plan.ConfigDType);
        }
    }
}
