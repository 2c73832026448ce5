using System.Buffers;
using System.Numerics.Tensors;
using Alloy.Runtime.Compute;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;

namespace Alloy.Runtime.Layers;

/// <summary>
/// Causal multi-head self-attention with grouped-query heads (query head h reads key/value head h / group size),
/// RoPE on queries and keys, scores scaled by 1/√head_dim, an optional sliding window, and a KV cache.
/// Each query row is computed on its own, over its sequence's keys in position order, so a row's result does not
/// depend on the other rows of the batch: padding, batch composition and cached decoding leave it unchanged.
/// </summary>
public sealed class SelfAttention
{
    /// <summary>Query rows per parallel work item: (sequence, head, block of queries) items balance long prompts.</summary>
    private const int QueryBlock = 64;

    public SelfAttention(ModelConfig config, int layer, Linear query, Linear key, Linear value, Linear output, RotaryEmbedding rope)
    {
        Layer = layer;
        Heads = config.Heads;
        KeyValueHeads = config.KeyValueHeads;
        HeadDim = config.HeadDim;
        Window = config.SlidingWindow;
        Scale = (float)(1 / Math.Sqrt(HeadDim));
        Query = query;
        Key = key;
        Value = value;
        Output = output;
        Rope = rope;
    }

    public int Layer { get; }
    public int Heads { get; }
    public int KeyValueHeads { get; }
    public int HeadDim { get; }
    public int? Window { get; }
    public float Scale { get; }
    public Linear Query { get; }
    public Linear Key { get; }
    public Linear Value { get; }
    public Linear Output { get; }
    public RotaryEmbedding Rope { get; }

    /// <summary>
    /// residual += o_proj(attention(normed)), with q, k, v, the per-head context and (when <paramref name="keep"/>)
    /// each query's log-sum-exp left in <paramref name="a"/>. With a cache, this pass's keys and values are appended
    /// to it (room reserved by the caller) and attention reads all of the sequence's keys from there.
    /// </summary>
    public void Forward(ComputeContext context, Matrix normed, BatchLayout layout, KvCache? cache, BlockActivations a,
        Matrix residual, bool keep)
    {
        Query.Forward(context, normed, a.Query);
        Key.Forward(context, normed, a.Key);
        Value.Forward(context, normed, a.Value);
        Rope.Apply(context, a.Query, Heads, layout.Positions);
        Rope.Apply(context, a.Key, KeyValueHeads, layout.Positions);

        int kvDim = KeyValueHeads * HeadDim;
        if (cache is not null)
        {
            for (int s = 0; s < layout.Sequences; s++)
            {
                int rows = layout.Length(s) * kvDim, from = layout.Offset(s) * kvDim, to = layout.Start(s) * kvDim;
                a.Key.Data.AsSpan(from, rows).CopyTo(cache.Keys(Layer, s).AsSpan(to));
                a.Value.Data.AsSpan(from, rows).CopyTo(cache.Values(Layer, s).AsSpan(to));
            }
        }

        a.Context.Resize(layout.Rows);
        if (keep) a.AttentionLogSumExp.Resize(layout.Rows);
        var items = new List<(int Sequence, int Head, int First, int End)>();
        for (int s = 0; s < layout.Sequences; s++)
            for (int h = 0; h < Heads; h++)
                for (int i = 0; i < layout.Length(s); i += QueryBlock)
                    items.Add((s, h, i, Math.Min(layout.Length(s), i + QueryBlock)));
        context.For(items.Count, n =>
        {
            var (s, h, first, end) = items[n];
            // Without a cache, a sequence's keys are its own rows of this pass (positions start at 0).
            var keys = cache is null ? a.Key.Data.AsSpan(layout.Offset(s) * kvDim) : cache.Keys(Layer, s);
            var values = cache is null ? a.Value.Data.AsSpan(layout.Offset(s) * kvDim) : cache.Values(Layer, s);
            Attend(a, layout, s, h, first, end, keys, values, keep);
        });

        Output.Forward(context, a.Context, residual, accumulate: true);
    }

    private void Attend(BlockActivations a, BatchLayout layout, int sequence, int head, int first, int end,
        ReadOnlySpan<float> keys, ReadOnlySpan<float> values, bool keep)
    {
        int kvDim = KeyValueHeads * HeadDim, group = head / (Heads / KeyValueHeads);
        int keyColumn = group * HeadDim;
        int lastPosition = layout.Start(sequence) + end - 1;
        var buffer = ArrayPool<float>.Shared.Rent(lastPosition + 1);
        try
        {
            for (int i = first; i < end; i++)
            {
                int row = layout.Offset(sequence) + i, position = layout.Start(sequence) + i;
                int lowest = Window is int w ? Math.Max(0, position - w + 1) : 0;
                var query = a.Query.Row(row).Slice(head * HeadDim, HeadDim);
                var scores = buffer.AsSpan(0, position - lowest + 1);
                for (int j = lowest; j <= position; j++)
                    scores[j - lowest] = VectorMath.Dot(query, keys.Slice(j * kvDim + keyColumn, HeadDim)) * Scale;

                // Softmax with the maximum subtracted; the normaliser is summed in double.
                float max = TensorPrimitives.Max(scores);
                TensorPrimitives.Subtract(scores, max, scores);
                TensorPrimitives.Exp(scores, scores);
                double sum = 0;
                foreach (float e in scores) sum += e;

                var output = a.Context.Row(row).Slice(head * HeadDim, HeadDim);
                output.Clear();
                for (int j = lowest; j <= position; j++)
                    VectorMath.AddScaled(output, values.Slice(j * kvDim + keyColumn, HeadDim), scores[j - lowest]);
                TensorPrimitives.Multiply(output, (float)(1 / sum), output);
                if (keep) a.AttentionLogSumExp.Row(row)[head] = (float)(max + Math.Log(sum));
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
    }
}
