namespace Alloy.Runtime.Inference;

/// <summary>
/// Token ids of several sequences of different lengths, packed back to back (no padding is stored, so padding can
/// never reach the computation). Build it from lists of ids, or from a padded batch and its attention mask (left or
/// right padding). A sequence may be empty: in a decoding step, a finished sequence contributes no token.
/// </summary>
public sealed class TokenBatch
{
    private readonly int[] _tokens;
    private readonly int[] _offsets;
    private readonly int[] _firstColumns;

    private TokenBatch(int[] tokens, int[] offsets, int[] firstColumns)
    {
        _tokens = tokens;
        _offsets = offsets;
        _firstColumns = firstColumns;
    }

    /// <summary>The number of sequences.</summary>
    public int Count => _offsets.Length - 1;

    public int TotalTokens => _tokens.Length;

    /// <summary>All tokens, sequence after sequence.</summary>
    public ReadOnlySpan<int> Tokens => _tokens;

    internal int[] TokenArray => _tokens;

    public int Offset(int sequence) => _offsets[sequence];

    public int Length(int sequence) => _offsets[sequence + 1] - _offsets[sequence];

    public ReadOnlySpan<int> Sequence(int sequence) => _tokens.AsSpan(_offsets[sequence], Length(sequence));

    /// <summary>
    /// For a batch made by <see cref="FromPadded"/>: the column of the sequence's first real token (else 0).
    /// </summary>
    public int FirstColumn(int sequence) => _firstColumns[sequence];

    public static TokenBatch FromSequences(params IReadOnlyList<int>[] sequences) =>
        FromSequences((IEnumerable<IReadOnlyList<int>>)sequences);

    public static TokenBatch FromSequences(IEnumerable<IReadOnlyList<int>> sequences)
    {
        var list = sequences.ToList();
        var offsets = new int[list.Count + 1];
        for (int s = 0; s < list.Count; s++)
            offsets[s + 1] = checked(offsets[s] + list[s].Count);
        var tokens = new int[offsets[^1]];
        for (int s = 0; s < list.Count; s++)
        for (int i = 0; i < list[s].Count; i++)
            tokens[offsets[s] + i] = list[s][i];
        return new TokenBatch(tokens, offsets, new int[list.Count]);
    }

    /// <summary>
    /// A padded batch as Hugging Face passes it: <paramref name="ids"/>[b][t] with
    /// <paramref name="attentionMask"/>[b][t] 1 for real tokens and 0 for padding. Each row's real tokens must be
    /// contiguous (left or right padding); their positions count from the first real token, so padding changes nothing.
    /// </summary>
    public static TokenBatch FromPadded(int[][] ids, int[][] attentionMask)
    {
        if (ids.Length != attentionMask.Length)
            throw new AlloyException(
                $"the batch has {ids.Length} rows of ids but {attentionMask.Length} rows of attention mask"
            );
        var sequences = new List<IReadOnlyList<int>>(ids.Length);
        var firstColumns = new int[ids.Length];
        for (int b = 0; b < ids.Length; b++)
        {
            var row = ids[b];
            var mask = attentionMask[b];
            if (row.Length != mask.Length)
                throw new AlloyException(
                    $"row {b} of the batch has {row.Length} ids but {mask.Length} attention-mask values"
                );
            int first = Array.FindIndex(mask, m => m != 0),
                last = Array.FindLastIndex(mask, m => m != 0);
            for (int t = 0; t < mask.Length; t++)
            {
                if (mask[t] is not (0 or 1))
                    throw new AlloyException(
                        $"attention mask row {b} column {t} is {mask[t]}; use 1 for tokens and 0 for padding"
                    );
                if (mask[t] == 0 && t > first && t < last)
                    throw new AlloyException(
                        $"attention mask row {b} has padding at column {t} between real tokens; pad on the left or the "
                            + $"right only"
                    );
            }
            firstColumns[b] = Math.Max(first, 0);
            sequences.Add(first < 0 ? [] : row[first..(last + 1)]);
        }
        var batch = FromSequences(sequences);
        return new TokenBatch(batch._tokens, batch._offsets, firstColumns);
    }
}
