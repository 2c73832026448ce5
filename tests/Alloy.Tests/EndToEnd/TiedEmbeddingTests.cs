using System.Text.Json.Nodes;
using Alloy.Synthetic;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>Models that tie lm_head to their input embedding, alone and mixed with models that store a head.</summary>
public sealed class TiedEmbeddingTests : IDisposable
{
    private static readonly TinyLlamaSpec Spec = new()
    {
        DType = DType.F32,
        Layers = 2,
        HiddenSize = 16,
        IntermediateSize = 32,
        Heads = 2,
        KeyValueHeads = 1,
    };
    private readonly TempFolder _work = new();

    public TiedEmbeddingTests()
    {
        TinyLlama.Write(_work["tied-1"], Spec with { TieEmbeddings = true }, 1);
        TinyLlama.Write(_work["tied-2"], Spec with { TieEmbeddings = true }, 2);
        TinyLlama.Write(_work["untied"], Spec, 3);
    }

    public void Dispose() => _work.Dispose();

    private string Linear(string a, string b) =>
        _work.Write(
            "config.yml",
            $"""
            merge_method: linear
            models:
              - model: {_work[a]}
                parameters:
                  weight: 1
              - model: {_work[b]}
                parameters:
                  weight: 1
            """
        );

    [Fact]
    public void Tied_models_merge_into_a_tied_model_without_lm_head()
    {
        AlloyCli.Merge(Linear("tied-1", "tied-2"), _work["out"]);
        Assert.DoesNotContain("lm_head.weight", TestCheckpoints.ReadAll(_work["out"]).Keys);
        Assert.True((bool)JsonNode.Parse(File.ReadAllText(_work["out/config.json"]))!["tie_word_embeddings"]!);
    }

    [Fact]
    public void A_tied_model_contributes_its_embedding_as_lm_head_when_another_model_stores_one()
    {
        AlloyCli.Merge(Linear("tied-1", "untied"), _work["out"]);
        var output = TestCheckpoints.ReadAll(_work["out"]);
        var tiedEmbedding = TestCheckpoints.Read(_work["tied-1"], "model.embed_tokens.weight");
        var head = TestCheckpoints.Read(_work["untied"], "lm_head.weight");
        var expected = tiedEmbedding.Zip(head, (a, b) => (a + (double)b) / 2).ToArray();
        Expect.Close("lm_head.weight", expected, output["lm_head.weight"], DType.F32, 1);
        // The donor (first model) was tied; the output stores a head of its own, so it must not be tied any more.
        Assert.False((bool)JsonNode.Parse(File.ReadAllText(_work["out/config.json"]))!["tie_word_embeddings"]!);
    }
}
