namespace Alloy.Runtime.Inference;

/// <summary>
/// Which tokens of a forward pass get logits: every token (training, scoring), the last of each sequence
/// (generation), chosen ones, or none (hidden states only). The LM head, the largest product of a small model, then
/// runs on those rows alone.
/// </summary>
public sealed class LogitSelection
{
    private enum Kind
    {
        All,
        Last,
        None,
        Chosen,
    }

    private readonly Kind _kind;
    private readonly IReadOnlyList<IReadOnlyList<int>>? _chosen;

    private LogitSelection(Kind kind, IReadOnlyList<IReadOnlyList<int>>? chosen = null)
    {
        _kind = kind;
        _chosen = chosen;
    }

    public static LogitSelection All { get; } = new(Kind.All);

    public static LogitSelection Last { get; } = new(Kind.Last);

    public static LogitSelection None { get; } = new(Kind.None);

    /// <summary>For each sequence of the batch, the indices (among its tokens in this batch) that get logits.</summary>
    public static LogitSelection At(IReadOnlyList<IReadOnlyList<int>> indicesPerSequence) =>
        new(Kind.Chosen, indicesPerSequence);

    /// <summary>The selected rows of <paramref name="layout"/>, ascending.</summary>
    internal int[] Rows(BatchLayout layout)
    {
        switch (_kind)
        {
            case Kind.All:
                return Enumerable.Range(0, layout.Rows).ToArray();
            case Kind.None:
                return [];
            case Kind.Last:
                return Enumerable
                    .Range(0, layout.Sequences)
                    .Where(s => layout.Length(s) > 0)
                    .Select(s => layout.Offset(s) + layout.Length(s) - 1)
                    .ToArray();
        }
        if (_chosen!.Count != layout.Sequences)
            throw new AlloyException(
                $"logits were asked for {_chosen.Count} sequences, but the batch has {layout.Sequences}"
            );
        var rows = new SortedSet<int>();
        for (int s = 0; s < layout.Sequences; s++)
        {
            foreach (int index in _chosen[s])
            {
                int row = layout.RowOf(s, index);
                if (row < 0)
                    throw new AlloyException(
                        $"logits were asked for token {index} of sequence {s}, which has {layout.Length(s)} tokens in "
                            + $"this batch"
                    );
                rows.Add(row);
            }
        }
        return [.. rows];
    }
}
