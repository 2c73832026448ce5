using Alloy.Moe;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Merging;

/// <summary>What <see cref="MoeCompression.Compress"/> did in one layer.</summary>
/// <param name="Frequencies">How often the router chose each original expert on the data (shares).</param>
/// <param name="Labels">The merged expert each original expert went into.</param>
/// <param name="Leaders">The original expert that leads each merged one (its router row is kept).</param>
public sealed record CompressedLayer(double[] Frequencies, int[] Labels, int[] Leaders);

/// <summary>
/// MC-SMoE's merging stage on a runnable mixture of experts: the model routes the data, and in every layer the experts
/// are grouped around the K most used by the similarity of their router logits, aligned to their leader and averaged
/// by usage (<see cref="ExpertMerging"/>). The result has K experts per layer. MC-SMoE keeps all E router rows and
/// points a group's members at one shared expert; a K-expert checkpoint has K router rows, so each merged expert keeps
/// its leader's row (a token that went to a member now scores the merged expert by the leader's row).
/// </summary>
public static class MoeCompression
{
    public static (LlamaModel Model, IReadOnlyList<CompressedLayer> Layers) Compress(
        LlamaModel model,
        IReadOnlyList<TrainingExample> examples,
        int experts,
        int batchSize = 8,
        CancellationToken cancellation = default
    )
    {
        var config = model.Config;
        var moe = config.Moe ?? throw new AlloyException("the model is not a mixture of experts; nothing to compress");
        if (experts < 1 || experts > moe.Experts)
            throw new AlloyException($"--experts must be from 1 to the model's {moe.Experts} experts (got {experts})");
        if (examples.Count == 0)
            throw new AlloyException("the calibration data has no examples");
        var (logits, tokens, selections) = Route(model, examples, batchSize, cancellation);

        var compressed = config with { Moe = moe with { Experts = experts, TopK = Math.Min(moe.TopK, experts) } };
        var parameters = ParameterSet.Zeros(compressed);
        foreach (var p in parameters)
            if (model.Parameters.Find(p.Name) is { } same && same.Data.Length == p.Data.Length)
                same.Data.CopyTo(p.Data, 0);
        var layers = new List<CompressedLayer>();
        for (int layer = 0; layer < config.Layers; layer++)
        {
            string prefix = $"model.layers.{layer}.";
            var frequencies = ExpertMerging.Frequencies(selections[layer]);
            var similarity = ExpertMerging.RouterLogitSimilarity(logits[layer].ToArray(), tokens, moe.Experts);
            var (labels, leaders) = ExpertMerging.Group(frequencies, similarity, experts);
            var router = model.Parameters[moe.RouterName(config.Family, prefix)];
            var newRouter = parameters[compressed.Moe!.RouterName(config.Family, prefix)];
            for (int g = 0; g < experts; g++)
            {
                var members = Enumerable.Range(0, moe.Experts).Where(e => labels[e] == g).ToList();
                var merged = ExpertMerging.Merge(
                    [.. members.Select(e => Expert(model, layer, e))],
                    [.. members.Select(e => frequencies[e])],
                    members.IndexOf(leaders[g])
                );
                Write(parameters, compressed.Moe!, config, prefix, g, merged);
                router
                    .Data.AsSpan(leaders[g] * config.HiddenSize, config.HiddenSize)
                    .CopyTo(newRouter.Data.AsSpan(g * config.HiddenSize, config.HiddenSize));
            }
            layers.Add(new CompressedLayer(frequencies, labels, leaders));
        }
        var options = new RuntimeOptions { Threads = model.Compute.Threads, Backend = model.Compute.Backend };
        return (new LlamaModel(compressed, parameters, options), layers);
    }

    /// <summary>
    /// The data through the model in batches: each layer's router logits [tokens, experts] and how many times the
    /// router chose each expert.
    /// </summary>
    private static (List<float>[] Logits, int Tokens, long[][] Selections) Route(
        LlamaModel model,
        IReadOnlyList<TrainingExample> examples,
        int batchSize,
        CancellationToken cancellation
    )
    {
        var config = model.Config;
        int experts = config.Moe!.Experts;
        var logits = Enumerable.Range(0, config.Layers).Select(_ => new List<float>()).ToArray();
        var selections = Enumerable.Range(0, config.Layers).Select(_ => new long[experts]).ToArray();
        var state = model.CreateState(keepActivations: true);
        int tokens = 0;
        for (int start = 0; start < examples.Count; start += batchSize)
        {
            cancellation.ThrowIfCancellationRequested();
            var batch = examples.Skip(start).Take(batchSize).Select(e => (IReadOnlyList<int>)e.Tokens);
            var tokenBatch = TokenBatch.FromSequences(batch);
            model.Forward(tokenBatch, state, LogitSelection.None);
            for (int layer = 0; layer < config.Layers; layer++)
            {
                var activations = state.Blocks[layer].Moe!;
                var matrix = activations.RouterLogits;
                logits[layer].AddRange(matrix.Data.AsSpan(0, matrix.Rows * experts));
                for (int e = 0; e < experts; e++)
                    selections[layer][e] += activations.Counts[e];
            }
            tokens += state.Blocks[0].Moe!.RouterLogits.Rows;
        }
        return (logits, tokens, selections);
    }

    /// <summary>Expert <paramref name="expert"/> of layer <paramref name="layer"/>, copied out of its parameters.
    /// </summary>
    public static ExpertWeights Expert(LlamaModel model, int layer, int expert)
    {
        var (config, moe) = (model.Config, model.Config.Moe!);
        int i = moe.IntermediateSize,
            h = config.HiddenSize;
        var (gate, up, down) = moe.ExpertWeights(config.Family, $"model.layers.{layer}.", expert, h);
        float[] Rows((string Name, int Row) at, int rows, int columns) =>
            model.Parameters[at.Name].Data.AsSpan(at.Row * columns, rows * columns).ToArray();
        return new ExpertWeights(Rows(gate, i, h), Rows(up, i, h), Rows(down, h, i), i, h);
    }

    private static void Write(
        ParameterSet parameters,
        MoeConfig moe,
        ModelConfig config,
        string prefix,
        int expert,
        ExpertWeights weights
    )
    {
        int h = config.HiddenSize;
        var (gate, up, down) = moe.ExpertWeights(config.Family, prefix, expert, h);
        void Rows((string Name, int Row) at, float[] values, int columns) =>
            values.CopyTo(parameters[at.Name].Data, at.Row * columns);
        Rows(gate, weights.Gate, h);
        Rows(up, weights.Up, h);
        Rows(down, weights.Down, moe.IntermediateSize);
    }
}
