namespace Alloy.Runtime.Inference;

/// <summary>
/// Where a forward pass's rows come from: sequence s owns rows [Offset(s), Offset(s) + Length(s)) of every activation
/// matrix, and its tokens sit at positions Start(s), Start(s) + 1, … (Start is what the KV cache already holds).
/// </summary>
public sealed class BatchLayout
{
    private readonly int[] _offsets;
    private readonly int[] _starts;

    private BatchLayout(int[] offsets, int[] starts, int[] positions)
    {
        _offsets = offsets;
        _starts = starts;
        Positions = positions;
    }

    public int Sequences => _starts.Length;

    public int Rows => _offsets[^1];

    public int Offset(int sequence) => _offsets[sequence];

    public int Length(int sequence) => _offsets[sequence + 1] - _offsets[sequence];

    /// <summary>The position of the sequence's first row.</summary>
    public int Start(int sequence) => _starts[sequence];

    /// <summary>The position of every row.</summary>
    public int[] Positions { get; }

    /// <summary>The row of a sequence's token, or −1 when the batch has no such token.</summary>
    public int RowOf(int sequence, int index) =>
        (uint)sequence < (uint)Sequences && (uint)index < (uint)Length(sequence) ? _offsets[sequence] + index : -1;

    public static BatchLayout For(TokenBatch batch, KvCache? cache)
    {
        var offsets = new int[batch.Count + 1];
        var starts = new int[batch.Count];
        for (int s = 0; s < batch.Count; s++)
        {
            offsets[s + 1] = offsets[s] + batch.Length(s);
            starts[s] = cache?.Length(s) ?? 0;
        }
        var positions = new int[offsets[^1]];
        for (int s = 0; s < batch.Count; s++)
        for (int i = 0; i < batch.Length(s); i++)
            positions[offsets[s] + i] = checked(starts[s] + i);
        return new BatchLayout(offsets, starts, positions);
    }
}
