using System.Buffers;
using System.Numerics.Tensors;
using Alloy.Runtime.Compute;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;
using Alloy.Tensors;

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
    /// <summary>
    /// Query rows per parallel work item: (sequence, head, block of queries) items balance long prompts.
    /// </summary>
    private const int QueryBlock = 64;

    /// <summary>
    /// Windowed key ranges start on multiples of this: the managed GEMM sums k in blocks of 256, so aligned ranges
    /// make a query's partial sums identical whichever block of queries it is computed in.
    /// </summary>
    private const int KeyAlignment = 256;

    public SelfAttention(
        ModelConfig config,
        int layer,
        Linear query,
        Linear key,
        Linear value,
        Linear output,
        RotaryEmbedding rope
    )
    {
        Layer = layer;
        Heads = config.Heads;
        KeyValueHeads = config.KeyValueHeads;
        GroupSize = config.GroupSize;
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

    /// <summary>Query heads per key/value head (grouped-query attention).</summary>
    public int GroupSize { get; }
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
    public void Forward(
        ComputeContext context,
        Matrix normed,
        BatchLayout layout,
        KvCache? cache,
        BlockActivations a,
        Matrix residual,
        bool keep
    )
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
                int rows = layout.Length(s) * kvDim,
                    from = layout.Offset(s) * kvDim,
                    to = layout.Start(s) * kvDim;
                a.Key.Data.AsSpan(from, rows).CopyTo(cache.Keys(Layer, s).AsSpan(to));
                a.Value.Data.AsSpan(from, rows).CopyTo(cache.Values(Layer, s).AsSpan(to));
            }
        }

        a.Context.Resize(layout.Rows);
        if (keep)
            a.AttentionLogSumExp.Resize(layout.Rows);
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
            Attend(
                context,
                a,
                layout,
                s,
                h,
                first,
                end,
                cache?.Keys(Layer, s) ?? a.Key.Data,
                cache?.Values(Layer, s) ?? a.Value.Data,
                offset,
                keep
            );
        });

        Output.Forward(context, a.Context, residual, accumulate: true);
    }

    /// <summary>
    /// Queries [first, end) of one sequence and head, as two products: S = Q·Kᵀ/√d over the keys the block can see,
    /// then context = softmax(S)·V, with masked keys at probability exactly 0 (adding nothing). The key range starts on
    /// a multiple of <see cref="KeyAlignment"/>, so a query's sums over keys split at the same keys however the
    /// queries are grouped.
    /// </summary>
    private void Attend(
        ComputeContext context,
        BlockActivations a,
        BatchLayout layout,
        int sequence,
        int head,
        int first,
        int end,
        float[] keys,
        float[] values,
        int offset,
        bool keep
    )
    {
        int kvDim = KeyValueHeads * HeadDim,
            qDim = Heads * HeadDim,
            column = head / GroupSize * HeadDim;
        int start = layout.Start(sequence),
            rowBase = layout.Offset(sequence) + first,
            count = end - first;
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
            backend.Gemm(
                false,
                true,
                count,
                keyCount,
                HeadDim,
                Scale,
                a.Query.Data.AsSpan(rowBase * qDim + head * HeadDim),
                qDim,
                keySpan,
                kvDim,
                0,
                scores,
                keyCount
            );
            Span<float> inverseSums = stackalloc float[count];
            for (int r = 0; r < count; r++)
            {
                int position = start + first + r;
                int from = (Window is int window ? Math.Max(0, position - window + 1) : 0) - lowest,
                    to = position - lowest + 1;
                var row = scores.Slice(r * keyCount, keyCount);
                var seen = row[from..to];
                // Softmax with the maximum subtracted; the normaliser is summed in double.
                float max = TensorPrimitives.Max(seen);
                TensorPrimitives.Subtract(seen, max, seen);
                TensorPrimitives.Exp(seen, seen);
                double sum = 0;
                foreach (float e in seen)
                    sum += e;
                row[..from].Clear();
                row[to..].Clear();
                inverseSums[r] = (float)(1 / sum);
                if (keep)
                    a.AttentionLogSumExp.Row(rowBase + r)[head] = (float)(max + Math.Log(sum));
            }
            var output = a.Context.Data.AsSpan(rowBase * qDim + head * HeadDim);
            backend.Gemm(
                false,
                false,
                count,
                HeadDim,
                keyCount,
                1,
                scores,
                keyCount,
                valueSpan,
                kvDim,
                0,
                output,
                qDim
            );
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

    /// <summary>
    /// Backward of a kept <see cref="Forward"/> without a cache: from ∂loss/∂residual
    /// (<paramref name="outputGradient"/>) to ∂loss/∂normed (<see cref="BackwardState.Normed"/>), adding the gradients
    /// of q, k, v and o_proj. Work items are (sequence, query head), each walking its query blocks in order and
    /// recomputing the probabilities from the kept queries, keys and log-sum-exps; a head's key and value gradients go
    /// to its own columns, and the heads of a group are summed afterwards in head order, so no two threads ever add
    /// into the same element.
    /// </summary>
    public void Backward(
        ComputeContext context,
        BlockActivations a,
        BatchLayout layout,
        Matrix outputGradient,
        BackwardState b,
        GradientSet gradients
    )
    {
        for (int s = 0; s < layout.Sequences; s++)
            if (layout.Start(s) != 0)
                throw new InvalidOperationException("backward needs a forward pass without a KV cache");
        int rows = layout.Rows;
        Output.Backward(context, a.Context, outputGradient, b.Context, false, gradients);
        b.Query.Resize(rows);
        b.KeyPerHead.Resize(rows).Span.Clear();
        b.ValuePerHead.Resize(rows).Span.Clear();
        var items = new List<(int Sequence, int Head)>();
        for (int s = 0; s < layout.Sequences; s++)
            if (layout.Length(s) > 0)
                for (int h = 0; h < Heads; h++)
                    items.Add((s, h));
        context.For(items.Count, n => AttendBackward(context, a, b, layout, items[n].Sequence, items[n].Head));

        b.Key.Resize(rows);
        b.Value.Resize(rows);
        context.ForBlocks(rows, 64, (start, end) =>
        {
            for (int r = start; r < end; r++)
            {
                for (int kv = 0; kv < KeyValueHeads; kv++)
                {
                    SumGroup(b.KeyPerHead.Row(r), b.Key.Row(r).Slice(kv * HeadDim, HeadDim), kv * GroupSize);
                    SumGroup(b.ValuePerHead.Row(r), b.Value.Row(r).Slice(kv * HeadDim, HeadDim), kv * GroupSize);
                }
            }
        });
        Rope.Apply(context, b.Query, Heads, layout.Positions, inverse: true);
        Rope.Apply(context, b.Key, KeyValueHeads, layout.Positions, inverse: true);
        Query.Backward(context, a.AttentionNormed, b.Query, b.Normed, false, gradients);
        Key.Backward(context, a.AttentionNormed, b.Key, b.Normed, true, gradients);
        Value.Backward(context, a.AttentionNormed, b.Value, b.Normed, true, gradients);
    }

    private void SumGroup(ReadOnlySpan<float> perHead, Span<float> target, int firstHead)
    {
        perHead.Slice(firstHead * HeadDim, HeadDim).CopyTo(target);
        for (int h = firstHead + 1; h < firstHead + GroupSize; h++)
            TensorPrimitives.Add(target, perHead.Slice(h * HeadDim, HeadDim), target);
    }

    /// <summary>
    /// One (sequence, head), query block by query block, over the keys the forward pass used for the block:
    /// P = exp(S − lse), dP = dO·Vᵀ, dS = P∘(dP − rowsum(dO∘O)); then dQ = dS·K/√d, dK += dSᵀ·Q/√d, dV += Pᵀ·dO.
    /// </summary>
    private void AttendBackward(
        ComputeContext context,
        BlockActivations a,
        BackwardState b,
        BatchLayout layout,
        int sequence,
        int head
    )
    {
        int kvDim = KeyValueHeads * HeadDim,
            qDim = Heads * HeadDim;
        int kvColumn = head / GroupSize * HeadDim,
            qColumn = head * HeadDim;
        int offset = layout.Offset(sequence),
            length = layout.Length(sequence);
        var backend = context.Backend;
        int largest = Math.Min(QueryBlock, length) * length;
        var probabilities = ArrayPool<float>.Shared.Rent(largest);
        var gradient = ArrayPool<float>.Shared.Rent(largest);
        try
        {
            for (int first = 0; first < length; first += QueryBlock)
            {
                int end = Math.Min(length, first + QueryBlock),
                    count = end - first,
                    rowBase = offset + first;
                int lowest = Window is int w ? Math.Max(0, first - w + 1) / KeyAlignment * KeyAlignment : 0;
                int keyCount = end - lowest;
                var p = probabilities.AsSpan(0, count * keyCount);
                var dp = gradient.AsSpan(0, count * keyCount);
                int keyBase = (offset + lowest) * kvDim + kvColumn,
                    queryBase = rowBase * qDim + qColumn;
                backend.Gemm(
                    false,
                    true,
                    count,
                    keyCount,
                    HeadDim,
                    Scale,
                    a.Query.Data.AsSpan(queryBase),
                    qDim,
                    a.Key.Data.AsSpan(keyBase),
                    kvDim,
                    0,
                    p,
                    keyCount
                );
                backend.Gemm(
                    false,
                    true,
                    count,
                    keyCount,
                    HeadDim,
                    1,
                    b.Context.Data.AsSpan(queryBase),
                    qDim,
                    a.Value.Data.AsSpan(keyBase),
                    kvDim,
                    0,
                    dp,
                    keyCount
                );
                for (int r = 0; r < count; r++)
                {
                    int position = first + r;
                    int from = (Window is int window ? Math.Max(0, position - window + 1) : 0) - lowest,
                        to = position - lowest + 1;
                    var row = p.Slice(r * keyCount, keyCount);
                    var dRow = dp.Slice(r * keyCount, keyCount);
                    var seen = row[from..to];
                    var dSeen = dRow[from..to];
                    TensorPrimitives.Subtract(seen, a.AttentionLogSumExp.Row(rowBase + r)[head], seen);
                    TensorPrimitives.Exp(seen, seen);
                    float centre = (float)
                        SpanMath.Dot(
                            b.Context.Data.AsSpan(queryBase + r * qDim, HeadDim),
                            a.Context.Data.AsSpan(queryBase + r * qDim, HeadDim)
                        );
                    TensorPrimitives.Subtract(dSeen, centre, dSeen);
                    TensorPrimitives.Multiply(dSeen, seen, dSeen);
                    row[..from].Clear();
                    row[to..].Clear();
                    dRow[..from].Clear();
                    dRow[to..].Clear();
                }
                backend.Gemm(
                    false,
                    false,
                    count,
                    HeadDim,
                    keyCount,
                    Scale,
                    dp,
                    keyCount,
                    a.Key.Data.AsSpan(keyBase),
                    kvDim,
                    0,
                    b.Query.Data.AsSpan(queryBase),
                    qDim
                );
                int perHeadBase = (offset + lowest) * qDim + qColumn;
                backend.Gemm(
                    true,
                    false,
                    keyCount,
                    HeadDim,
                    count,
                    Scale,
                    dp,
                    keyCount,
                    a.Query.Data.AsSpan(queryBase),
                    qDim,
                    1,
                    b.KeyPerHead.Data.AsSpan(perHeadBase),
                    qDim
                );
                backend.Gemm(
                    true,
                    false,
                    keyCount,
                    HeadDim,
                    count,
                    1,
                    p,
                    keyCount,
                    b.Context.Data.AsSpan(queryBase),
                    qDim,
                    1,
                    b.ValuePerHead.Data.AsSpan(perHeadBase),
                    qDim
                );
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(probabilities);
            ArrayPool<float>.Shared.Return(gradient);
        }
    }
}
