using Alloy.Checkpoints;
using Alloy.Output;
using Alloy.Runtime.Compute;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Tensors;

namespace Alloy.Runtime.Training;

/// <summary>Which labels a diagonal Fisher's gradients use.</summary>
public enum FisherEstimate
{
    /// <summary>Labels drawn from the model's own predictions: an unbiased estimate of the true Fisher.</summary>
    Sampled,

    /// <summary>The data's own next tokens as labels.</summary>
    Empirical,
}

/// <summary>One statistic tensor, named after the parameter it belongs to.</summary>
public sealed record StatisticTensor(string Name, int[] Shape, float[] Values);

/// <summary>
/// Statistics of a model over a data set, one tensor per parameter, for data-aware merging: the diagonal Fisher
/// (Fisher merging) or the input Gram matrices of the linear layers (RegMean). <see cref="Count"/> is what they
/// average or sum over (examples or tokens); <see cref="Kind"/> says which.
/// </summary>
public sealed record ParameterStatistics(string Kind, long Count, IReadOnlyList<StatisticTensor> Tensors)
{
    /// <summary>What <see cref="Count"/> counts: "examples" or "tokens".</summary>
    public string CountName => StatisticsFile.CountName(Kind);

    /// <summary>
    /// The diagonal Fisher: for each example separately, the gradient g of −log p(y | the tokens before) summed over
    /// its scored positions, then the mean of g² over the examples — per-example squares, as the definition
    /// E[(∂ log p/∂θ)²] asks, not the square of a batch's mean gradient. <see cref="FisherEstimate.Sampled"/> draws
    /// each y from the model's own prediction (a one-sample estimate of the true Fisher, which the reference computes
    /// exactly by summing over classes — a vocabulary is too large for that); <see cref="FisherEstimate.Empirical"/>
    /// takes y from the data. One forward and backward pass per example either way; squares accumulate in double.
    /// Every parameter gets a tensor of its shape.
    /// </summary>
    public static ParameterStatistics Fisher(
        LlamaModel model,
        IReadOnlyList<TrainingExample> examples,
        Action<int>? progress = null,
        CancellationToken cancellation = default,
        FisherEstimate estimate = FisherEstimate.Empirical,
        ulong seed = 0
    )
    {
        var loss = new LossGradients(model);
        var parameters = model.Parameters;
        var sums = parameters.Select(p => new double[p.Data.Length]).ToArray();
        int counted = 0;
        foreach (var example in examples)
        {
            cancellation.ThrowIfCancellationRequested();
            if (example.TargetCount == 0)
                continue;
            loss.Gradients.Clear(model.Compute);
            if (estimate == FisherEstimate.Sampled)
                loss.AccumulateSampled([example], 1.0, Alloy.Tensors.RandomStream.For(seed, "fisher", counted), 0);
            else
                loss.Accumulate([example], 1.0);
            model.Compute.For(parameters.Count, i =>
            {
                var (g, sum) = (loss.Gradients[parameters[i]], sums[i]);
                for (int j = 0; j < g.Length; j++)
                    sum[j] += (double)g[j] * g[j];
            });
            counted++;
            progress?.Invoke(counted);
        }
        if (counted == 0)
            throw new AlloyException("no example has tokens to predict; the Fisher needs at least one");
        var tensors = parameters
            .Select((p, i) => new StatisticTensor(p.Name, p.Shape, [.. sums[i].Select(s => (float)(s / counted))]))
            .ToList();
        return new ParameterStatistics(StatisticsFile.DiagonalFisher, counted, tensors);
    }

    /// <summary>
    /// RegMean's statistics: for every linear layer with weight W [out, in], the Gram matrix XᵀX [in, in] of its
    /// inputs X over every token of the examples (not averaged: divide by <see cref="Count"/> tokens for the mean),
    /// stored under W's name. q/k/v_proj share one input, as do gate_proj and up_proj, so they get equal matrices.
    /// lm_head is included when untied (a tied head's weight is the embedding, which RegMean does not merge as a
    /// linear layer). Each batch's product is a float32 GEMM; batches accumulate in double. <paramref name="layers"/>
    /// limits them to some blocks (and the head, as block index Layers), as RegMean++ gathers one block at a time.
    /// </summary>
    public static ParameterStatistics Grams(
        LlamaModel model,
        IReadOnlyList<TrainingExample> examples,
        int batchSize,
        Action<int>? progress = null,
        CancellationToken cancellation = default,
        IReadOnlySet<int>? layers = null
    )
    {
        if (batchSize < 1)
            throw new AlloyException($"batch size must be at least 1 (got {batchSize})");
        if (model.Config.Moe is not null)
            throw new AlloyException(
                "RegMean statistics of a mixture of experts are not supported (its experts see different tokens)"
            );
        var state = model.CreateState(keepActivations: true);
        // Each distinct layer input: how to find it in a kept state, and the weights that read it.
        var inputs = new List<(Func<Matrix> Input, int Size, string[] Weights)>();
        for (int layer = 0; layer < model.Blocks.Count; layer++)
        {
            if (layers is not null && !layers.Contains(layer))
                continue;
            var block = model.Blocks[layer];
            var a = state.Blocks[layer];
            var attention = block.Attention;
            inputs.Add(
                (
                    () => a.AttentionNormed,
                    model.Config.HiddenSize,
                    [attention.Query.Weight.Name, attention.Key.Weight.Name, attention.Value.Weight.Name]
                )
            );
            inputs.Add((() => a.Context, model.Config.QueryDim, [attention.Output.Weight.Name]));
            inputs.Add(
                (() => a.MlpNormed, model.Config.HiddenSize, [block.Mlp!.Gate.Weight.Name, block.Mlp.Up.Weight.Name])
            );
            inputs.Add((() => a.Hidden, model.Config.IntermediateSize, [block.Mlp!.Down.Weight.Name]));
        }
        bool head = !model.Config.TieWordEmbeddings && (layers is null || layers.Contains(model.Config.Layers));
        if (head)
            inputs.Add((() => state.FinalNormed, model.Config.HiddenSize, [model.Head.Weight.Name]));
        if (inputs.Count == 0)
            throw new ArgumentException("no linear layer is among the layers asked for", nameof(layers));

        var sums = inputs.Select(i => new double[(long)i.Size * i.Size]).ToArray();
        var product = new float[inputs.Max(i => i.Size * i.Size)];
        long tokens = 0;
        for (int start = 0; start < examples.Count; start += batchSize)
        {
            cancellation.ThrowIfCancellationRequested();
            var batch = TokenBatch.FromSequences(
                examples.Skip(start).Take(batchSize).Select(e => (IReadOnlyList<int>)e.Tokens)
            );
            model.Forward(batch, state, head ? LogitSelection.All : LogitSelection.None);
            for (int n = 0; n < inputs.Count; n++)
            {
                var (input, size, _) = inputs[n];
                var x = input();
                MatMul.Multiply(
                    model.Compute,
                    true,
                    false,
                    size,
                    size,
                    x.Rows,
                    x.Data,
                    size,
                    x.Data,
                    size,
                    product,
                    size
                );
                var sum = sums[n];
                model.Compute.ForBlocks(size * size, 1 << 14, (from, to) =>
                {
                    for (int j = from; j < to; j++)
                        sum[j] += product[j];
                });
            }
            tokens += batch.TotalTokens;
            progress?.Invoke(Math.Min(examples.Count, start + batchSize));
        }
        if (tokens == 0)
            throw new AlloyException("the examples have no tokens; RegMean's Gram matrices need at least one");
        var tensors = new List<StatisticTensor>();
        for (int n = 0; n < inputs.Count; n++)
        {
            var (_, size, weights) = inputs[n];
            var values = sums[n].Select(v => (float)v).ToArray();
            tensors.AddRange(weights.Select(name => new StatisticTensor(name, [size, size], values)));
        }
        // In the model's parameter order, as a checkpoint lists its tensors.
        var order = model.Parameters.Select((p, i) => (p.Name, i)).ToDictionary(x => x.Name, x => x.i);
        return new ParameterStatistics(StatisticsFile.RegMeanGram, tokens, [.. tensors.OrderBy(t => order[t.Name])]);
    }

    /// <summary>
    /// Writes the tensors (float32) to one safetensors file whose "__metadata__" records the kind
    /// (<see cref="StatisticsFile.KindKey"/>) and the count (under <see cref="CountName"/>), as
    /// <see cref="StatisticsFile"/> reads it. The file is written beside the target and renamed when complete.
    /// </summary>
    public void Save(string path)
    {
        var full = Path.GetFullPath(path);
        if (Directory.Exists(full))
            throw new AlloyException($"output '{path}' is a folder; give a .safetensors file name");
        var folder = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(folder);
        OutputLease.RemoveAbandoned(folder);
        using var lease = OutputLease.Take(folder);
        var temporary = Path.GetFileName(lease.Path);
        var infos = Tensors.Select(t => new TensorInfo(t.Name, DType.F32, [.. t.Shape.Select(d => (long)d)])).ToList();
        var metadata = new Dictionary<string, string>
        {
            [StatisticsFile.KindKey] = Kind,
            [CountName] = Count.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        try
        {
            using (
                var writer = new ShardedWriter(folder, ShardPlan.SingleFile(infos, temporary), fileMetadata: metadata)
            )
            {
                foreach (var t in Tensors)
                    writer.Append(t.Name, System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.Values.AsSpan()));
                writer.Complete();
            }
            File.Move(lease.Path, full, overwrite: true);
        }
        finally
        {
            File.Delete(lease.Path);
        }
    }
}
