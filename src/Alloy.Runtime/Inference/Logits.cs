using Alloy.Runtime.Compute;

namespace Alloy.Runtime.Inference;

/// <summary>
/// The logits of the selected tokens of one forward pass, one row of VocabSize values per token, in batch order.
/// Logits returned by a forward pass on a caller's <see cref="ForwardState"/> share its buffer and are valid until its
/// next forward pass; <see cref="Copy"/> detaches them.
/// </summary>
public sealed class Logits
{
    private readonly Matrix _values;
    private readonly BatchLayout _layout;
    private readonly int[] _rows;

    internal Logits(Matrix values, BatchLayout layout, int[] rows)
    {
        _values = values;
        _layout = layout;
        _rows = rows;
    }

    public int VocabSize => _values.Columns;

    /// <summary>The number of tokens that have logits.</summary>
    public int Count => _rows.Length;

    /// <summary>The logits of the i-th selected token.</summary>
    public ReadOnlySpan<float> Row(int i) => _values.Row(i);

    /// <summary>
    /// The logits of token <paramref name="index"/> of <paramref name="sequence"/> (an index into its tokens in the
    /// batch).
    /// </summary>
    public ReadOnlySpan<float> Of(int sequence, int index)
    {
        int i = Array.BinarySearch(_rows, _layout.RowOf(sequence, index));
        if (i < 0)
            throw new ArgumentOutOfRangeException(
                nameof(index),
                $"token {index} of sequence {sequence} has no logits in this pass"
            );
        return Row(i);
    }

    /// <summary>A copy that later forward passes do not overwrite.</summary>
    public Logits Copy()
    {
        var values = new Matrix(_values.Columns, _values.Rows);
        _values.Span.CopyTo(values.Span);
        return new Logits(values, _layout, _rows);
    }
}
