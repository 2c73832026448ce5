using Alloy.Alignment;
using Alloy.Runtime.Compute;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Alignment;

/// <summary>
/// Permutation alignment of runtime models: their symmetries (<see cref="PermutationSpec"/>), permuted copies, and the
/// activation correlations activation matching solves on.
/// </summary>
public static class ModelAlignment
{
    /// <summary>The symmetries of a dense model; a mixture of experts is refused with one line.</summary>
    public static PermutationSpec Spec(ModelConfig c)
    {
        if (c.Moe is not null)
            throw new AlloyException(
                $"align takes dense models (Llama, Mistral, Qwen2); this one is a {c.Family} mixture of experts"
            );
        return PermutationSpec.ForDecoder(
            new DecoderShape(
                c.VocabSize,
                c.HiddenSize,
                c.IntermediateSize,
                c.Layers,
                c.Heads,
                c.KeyValueHeads,
                c.HeadDim,
                c.QkvBias,
                c.OutputBias,
                c.MlpBias,
                c.TieWordEmbeddings
            )
        );
    }

    /// <summary>
    /// Refuses, with one line naming the first difference, a model whose tensors do not line up with the reference's.
    /// </summary>
    public static void CheckCompatible(ModelConfig reference, ModelConfig model)
    {
        var differences = new (string Key, object Reference, object Model)[]
        {
            ("family", reference.Family, model.Family),
            ("vocab_size", reference.VocabSize, model.VocabSize),
            ("hidden_size", reference.HiddenSize, model.HiddenSize),
            ("intermediate_size", reference.IntermediateSize, model.IntermediateSize),
            ("num_hidden_layers", reference.Layers, model.Layers),
            ("num_attention_heads", reference.Heads, model.Heads),
            ("num_key_value_heads", reference.KeyValueHeads, model.KeyValueHeads),
            ("head_dim", reference.HeadDim, model.HeadDim),
            ("attention_bias", reference.QkvBias || reference.OutputBias, model.QkvBias || model.OutputBias),
            ("mlp_bias", reference.MlpBias, model.MlpBias),
            ("tie_word_embeddings", reference.TieWordEmbeddings, model.TieWordEmbeddings),
        };
        foreach (var (key, r, m) in differences)
            if (!Equals(r, m))
                throw new AlloyException(
                    $"the model and the reference differ in {key} ({m} against {r}); alignment permutes the units of "
                        + "models of one architecture and shape"
                );
    }

    /// <summary>The model's parameters by name (the arrays themselves, not copies).</summary>
    public static IReadOnlyDictionary<string, float[]> Tensors(LlamaModel model) =>
        model.Parameters.ToDictionary(p => p.Name, p => p.Data, StringComparer.Ordinal);

    /// <summary>A new model: <paramref name="model"/> with <paramref name="perms"/> applied.</summary>
    public static LlamaModel Permute(LlamaModel model, IReadOnlyDictionary<string, int[]> perms)
    {
        var permuted = Spec(model.Config).Apply(Tensors(model), perms);
        var parameters = new ParameterSet(
            model.Parameters.Select(p => new Parameter(p.Name, p.Shape, (float[])permuted[p.Name].Clone()))
        );
        return new LlamaModel(
            model.Config,
            parameters,
            new RuntimeOptions { Threads = model.Compute.Threads, Backend = model.Compute.Backend }
        );
    }

    /// <summary>
    /// Correlations of the two models' activations on <paramref name="examples"/>, run in batches of
    /// <paramref name="batchSize"/> sequences; <paramref name="progress"/> hears (examples done, total).
    /// </summary>
    public static ActivationCorrelations Correlate(
        LlamaModel reference,
        LlamaModel model,
        IReadOnlyList<TrainingExample> examples,
        int batchSize = 8,
        Action<int, int>? progress = null,
        CancellationToken cancellation = default
    )
    {
        var c = reference.Config;
        var residual = new CrossCorrelation(c.HiddenSize);
        var mlp = Enumerable.Range(0, c.Layers).Select(_ => new CrossCorrelation(c.IntermediateSize)).ToArray();
        var context = Enumerable.Range(0, c.Layers).Select(_ => new CrossCorrelation(c.QueryDim)).ToArray();
        var (a, b) = (reference.CreateState(keepActivations: true), model.CreateState(keepActivations: true));
        for (int start = 0; start < examples.Count; start += batchSize)
        {
            cancellation.ThrowIfCancellationRequested();
            var batch = TokenBatch.FromSequences(
                examples.Skip(start).Take(batchSize).Select(e => (IReadOnlyList<int>)e.Tokens)
            );
            reference.Forward(batch, a, LogitSelection.None);
            model.Forward(batch, b, LogitSelection.None);
            static void Add(CrossCorrelation into, Matrix x, Matrix y) => into.Add(x.Span, y.Span, x.Rows);
            for (int layer = 0; layer < c.Layers; layer++)
            {
                var (x, y) = (a.Blocks[layer], b.Blocks[layer]);
                Add(residual, x.Input, y.Input);
                Add(mlp[layer], x.Mlp.Hidden, y.Mlp.Hidden);
                Add(context[layer], x.Context, y.Context);
            }
            Add(residual, a.FinalHidden, b.FinalHidden);
            progress?.Invoke(Math.Min(examples.Count, start + batchSize), examples.Count);
        }
        return new ActivationCorrelations(
            residual.Result(),
            [.. mlp.Select(m => m.Result())],
            [.. context.Select(m => m.Result())]
        );
    }
}
