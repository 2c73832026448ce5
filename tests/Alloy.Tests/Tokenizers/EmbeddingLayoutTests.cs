using Alloy.Planning;
using Alloy.Recipes;
using Alloy.Tests.Support;
using Alloy.Tokenizers;

namespace Alloy.Tests.Tokenizers;

/// <summary>The plan describes re-laid-out embeddings row by row: own rows, shared composed rows, padding.</summary>
public sealed class EmbeddingLayoutTests : IClassFixture<TokenizerFamily>
{
    private readonly TokenizerFamily _models;

    public EmbeddingLayoutTests(TokenizerFamily models) => _models = models;

    private (MergePlan Plan, ModelSet Models, Diagnostics Diagnostics) Plan(string yaml)
    {
        var diagnostics = new Diagnostics();
        var recipe = RecipeParser.Parse(yaml, "test.yml", diagnostics);
        var models = ModelSet.Open(recipe, diagnostics);
        return (Planner.Create(recipe, models, new PlanOptions(), diagnostics), models, diagnostics);
    }

    [Fact]
    public void Each_input_keeps_its_own_rows_shares_composed_rows_and_pads_with_its_mean()
    {
        var (plan, models, diagnostics) = Plan(
            $$"""
            merge_method: linear
            base_model: {{_models.Base}}
            models:
              - {model: {{_models.Base}}, parameters: {weight: 1} }
              - {model: {{_models.ChatMl}}, parameters: {weight: 1} }
              - {model: {{_models.ChatMl2}}, parameters: {weight: 1} }
            tokenizer: {source: union, pad_to_multiple_of: 8}
            """
        );
        using (models)
        {
            var vocabulary = plan.Tokenizer!.Vocabulary!;
            Assert.Equal(262, vocabulary.TokenRows);
            Assert.Equal(264, vocabulary.Rows);
            Assert.Equal([.. Enumerable.Range(0, 260), -1, -1], vocabulary.Permutation(models.All[0].Reference));
            Assert.Equal(260, vocabulary.Permutation(models.All[1].Reference)[260]);

            var embed = plan.Jobs.Single(j => j.Output.Name == "model.embed_tokens.weight");
            Assert.Equal([264L, 16L], embed.Output.Shape);
            var (base_, chatml, chatml2) = (embed.Inputs[0].Rows!, embed.Inputs[1].Rows!, embed.Inputs[2].Rows!);
            Assert.All(embed.Inputs, i => Assert.Equal([264L, 16L], i.Shape));
            Assert.Equal(97, base_.OwnRow(97));
            Assert.Equal(260, chatml.OwnRow(260));
            // The base lacks <|im_start|>; two fine-tunes have it: the base's row is their mean, read from their
            // tensors.
            var mean = base_.Composite(260)!;
            Assert.Equal(
                [(embed.Inputs[1].Tensor, 260L, 0.5), (embed.Inputs[2].Tensor, 260L, 0.5)],
                mean.Select(t => (t.Tensor, t.Row, t.Weight))
            );
            Assert.True(base_.IsPadding(262) && base_.IsPadding(263) && !base_.IsPadding(261));
            Assert.Equal(262, base_.TokenRows);
            // The head is laid out over the same vocabulary from the heads.
            var head = plan.Jobs.Single(j => j.Output.Name == "lm_head.weight");
            Assert.Equal("lm_head.weight", head.Inputs[0].Rows!.Composite(261)![0].Tensor.Name);
            Assert.DoesNotContain(diagnostics.Warnings, w => w.Contains("shapes differ"));
        }
    }

    [Fact]
    public void Without_tokenizer_settings_there_is_no_tokenizer_plan_and_inputs_are_read_as_stored()
    {
        var (plan, models, _) = Plan(
            $$"""
            merge_method: linear
            models:
              - {model: {{_models.Base}}, parameters: {weight: 1} }
              - {model: {{_models.ChatMl}}, parameters: {weight: 1} }
            """
        );
        using (models)
        {
            Assert.Null(plan.Tokenizer);
            Assert.All(plan.Jobs.SelectMany(j => j.Inputs), i => Assert.Null(i.Rows));
        }
    }
}
