using Alloy.Checkpoints;

namespace Alloy.Tokenizers;

/// <summary>
/// One term of a composed embedding row: <see cref="Weight"/> × row <see cref="Row"/> of <see cref="Tensor"/>.
/// </summary>
public readonly record struct RowTerm(StoredTensor Tensor, long Row, double Weight);

/// <summary>
/// How one model's vocabulary-indexed matrix (embed_tokens, lm_head) is re-laid-out to the output vocabulary, as a
/// description, not a copy: for each output row either a row of the model's own stored tensor (the common case, one
/// int per row), a composed row shared by every model that lacks the token (a short weighted list of stored rows:
/// another model's row, the mean of the holders' rows, or nothing for zeros), or a padding row (the mean of this
/// layout's token rows). The executor materialises rows from the memory-mapped inputs as it reads them.
/// </summary>
public sealed class RowLayout
{
    /// <summary>Code of a row past the vocabulary (or a hole in its ids): the mean of the token rows.</summary>
    public const int PaddingCode = int.MinValue;

    private readonly int[] _codes;
    private float[]? _paddingRow;

    /// <param name="own">The model's stored tensor; codes ≥ 0 are its rows.</param>
    /// <param name="codes">Per output row: own row (≥ 0), composite k as −1 − k, or <see cref="PaddingCode"/>.</param>
    /// <param name="composites">Composed rows, shared between the layouts of one output tensor.</param>
    /// <param name="columns">Row width (hidden size) of every tensor involved.</param>
    public RowLayout(StoredTensor own, int[] codes, IReadOnlyList<RowTerm[]> composites, long columns)
    {
        Own = own;
        _codes = codes;
        Composites = composites;
        Columns = columns;
        TokenRows = codes.Count(c => c != PaddingCode);
    }

    public StoredTensor Own { get; }

    public IReadOnlyList<RowTerm[]> Composites { get; }

    public long Columns { get; }

    /// <summary>Output rows (the vocabulary, padded).</summary>
    public int Rows => _codes.Length;

    /// <summary>Rows that hold a token (the ones averaged for padding rows).</summary>
    public int TokenRows { get; }

    public int Code(int row) => _codes[row];

    /// <summary>The row of the model's own tensor that output row <paramref name="row"/> copies, or null.</summary>
    public int? OwnRow(int row) => _codes[row] >= 0 ? _codes[row] : null;

    /// <summary>The composed row at <paramref name="row"/> (empty = zeros), or null for own and padding rows.</summary>
    public RowTerm[]? Composite(int row) =>
        _codes[row] is < 0 and not PaddingCode ? Composites[-1 - _codes[row]] : null;

    public bool IsPadding(int row) => _codes[row] == PaddingCode;

    /// <summary>
    /// The padding row, computed once (by <paramref name="compute"/>) the first time a reader needs it.
    /// </summary>
    public float[] PaddingRow(Func<RowLayout, float[]> compute) =>
        LazyInitializer.EnsureInitialized(ref _paddingRow, () => compute(this));
}
