using System.Buffers;
using System.Numerics.Tensors;
using Alloy.Runtime.Compute;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;

namespace Alloy.Runtime.Layers;

/// <summary>
/// Causal multi-head self-attention with grouped-query heads (query head h reads key/value head h / group size),
/// RoPE on queries and keys, scores scaled by 1/√head_dim, an optional sliding window, and a KV cache. Work items are
/// (sequence, head, block of queries); each computes its scores and context with two GEMMs on the model's backend, so
/// a query never sees another sequence's keys, and on the managed backend (whose sums do not depend on the other
/// rows of a product) its result is the same bits however the batch is composed or cached.
/// </summary>
public sealed class SelfAttention
{
    /// <summary>Query rows per parallel work item: (sequence, head, block of queries) items balance long prompts.</summary>
    private const int QueryBlock = 64;

    /// <summary>
    /// Windowed key ranges start on multiples of this: the managed GEMM sums k in blocks of 256, so aligned ranges
    /// make a query's partial sums identical whichever block of queries it is computed in.
    /// </summary>
    private const int KeyAlignment = 256;

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
            // Without a cache, a sequence's keys are its own rows of this pass (its positions start at 0).
            int offset = cache is null ? layout.Offset(s) * kvDim : 0;
            Attend(context, a, layout, s, h, first, end, cache?.Keys(Layer, s) ?? a.Key.Data, cache?.Values(Layer, s) ?? a.Value.Data, offset, keep);
        });

        Output.Forward(context, a.Context, residual, accumulate: true);
    }

    /// <summary>
    /// Queries [first, end) of one sequence and head, as two products: S = Q·Kᵀ/√d over the keys the block can see,
    /// then context = softmax(S)·V, with masked keys at probability exactly 0 (adding nothing). The key range starts on
    /// a multiple of <see cref="KeyAlignment"/>, so a query's sums over keys split at the same keys however the
    /// queries are grouped.
    /// </summary>
    private void Attend(ComputeContext context, BlockActivations a, BatchLayout layout, int sequence, int head, int first, int end,
        float[] keys, float[] values, int offset, bool keep)
    {
        int kvDim = KeyValueHeads * HeadDim, qDim = Heads * HeadDim, column = head / (Heads / KeyValueHeads) * HeadDim;
        int start = layout.Start(sequence), rowBase = layout.Offset(sequence) + first, count = end - first;
        int lastPosition = start + end - 1;
        int lowest = Window is int w ? Math.Max(0, start + first - w + 1) / KeyAlignment * KeyAlignment : 0;
        int keyCount = lastPosition - lowest + 1;
        var buffer = ArrayPool<float>.Shared.Rent(count * keyCount);
        try
        {
            var backend = context.Backend;
            var keySpan = keys.AsSpan(offset + lowest * kvDim + column);
            var valueSpan = values.AsSpan(offset + lowest * kvDim + column);
            var scores = buffer.AsSpan(0, count * keyCount);
            backend.Gemm(false, true, count, keyCount, HeadDim, Scale, a.Query.Data.AsSpan(rowBase * qDim + head * HeadDim), qDim,
                keySpan, kvDim, 0, scores, keyCount);
            Span<float> inverseSums = stackalloc float[count];
            for (int r = 0; r < count; r++)
            {
                int position = start + first + r;
                int from = (Window is int window ? Math.Max(0, position - window + 1) : 0) - lowest, to = position - lowest + 1;
                var row = scores.Slice(r * keyCount, keyCount);
                var seen = row[from..to];
                // Softmax with the maximum subtracted; the normaliser is summed in double.
                float max = TensorPrimitives.Max(seen);
                TensorPrimitives.Subtract(seen, max, seen);
                TensorPrimitives.Exp(seen, seen);
                double sum = 0;
                foreach (float e in seen) sum += e;
                row[..from].Clear();
                row[to..].Clear();
                inverseSums[r] = (float)(1 / sum);
                if (keep) a.AttentionLogSumExp.Row(rowBase + r)[head] = (float)(max + Math.Log(sum));
            }
            var output = a.Context.Data.AsSpan(rowBase * qDim + head * HeadDim);
            backend.Gemm(false, false, count, HeadDim, keyCount, 1, scores, keyCount, valueSpan, kvDim, 0, output, qDim);
            for (int r = 0; r < count; r++)
            {
                var row = output.Slice(r * qDim, HeadDim);
                TensorPrimitives.Multiply(row, inverseSums[r], row);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
    }
}
