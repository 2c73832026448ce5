namespace Alloy.Alignment;

/// <summary>The shape of a dense Llama-family decoder (Llama, Mistral, Qwen2), on which its symmetries depend.
/// </summary>
public sealed record DecoderShape(
    int Vocab,
    int Hidden,
    int Intermediate,
    int Layers,
    int Heads,
    int KeyValueHeads,
    int HeadDim,
    bool QkvBias = false,
    bool OutputBias = false,
    bool MlpBias = false,
    bool Tied = false
)
{
    /// <summary>Query heads per key/value head.</summary>
    public int GroupSize => Heads / KeyValueHeads;
}

/// <summary>
/// A permuted view of a stored matrix or vector: element (r, c) is the stored element (Rows[r], Columns[c]); a null map
/// is the identity.
/// </summary>
public sealed record TensorGather(int[]? Rows, int[]? Columns);

/// <summary>What a permutation relabels.</summary>
public enum PermutationKind
{
    /// <summary>The residual stream's dimensions, one permutation for the whole stack.</summary>
    Residual,

    /// <summary>A layer's MLP intermediate units.</summary>
    Mlp,

    /// <summary>A layer's key/value heads, each with its group of query heads.</summary>
    KeyValueHeads,

    /// <summary>The query heads inside one group of a layer (applied after the layer's key/value heads).</summary>
    QueryHeads,
}

/// <summary>
/// Where a permutation's units lie in one tensor: unit i is the slab [Offset + i·Block, Offset + (i+1)·Block) along
/// <paramref name="Axis"/> (0 = rows, 1 = columns; vectors have axis 0 only).
/// </summary>
public sealed record AxisSlice(string Tensor, int Axis, int Offset, int Block);

/// <summary>
/// One permutation of the model's symmetries: its <paramref name="Size"/> units and every tensor slab it moves. A
/// permutation p moves unit p[i] of the input to place i of the output (as Git Re-Basin's <c>W[perm]</c>).
/// </summary>
public sealed record PermutationEntry(
    string Name,
    PermutationKind Kind,
    int Layer,
    int Size,
    IReadOnlyList<AxisSlice> Slices
);

/// <summary>
/// The symmetries of a dense Llama-family decoder, written down once: a list of permutations, each with every
/// (tensor, axis) it acts on, in the order they are applied. Applying any set of them leaves the logits unchanged:
/// the residual permutation is undone by every reader of the stream (RMSNorm is permutation-equivariant with its
/// weight permuted alike), an MLP permutation by down_proj's columns, a head permutation by o_proj's columns. Heads
/// move whole (RoPE rotates pairs of dimensions inside a head), and a query head only within its key/value group.
/// </summary>
public sealed class PermutationSpec
{
    private readonly Dictionary<string, List<(int Entry, AxisSlice Slice)>> _byTensor = new(StringComparer.Ordinal);

    private PermutationSpec(DecoderShape shape, Dictionary<string, int[]> shapes, List<PermutationEntry> entries)
    {
        Shape = shape;
        TensorShapes = shapes;
        Permutations = entries;
        for (int e = 0; e < entries.Count; e++)
            foreach (var slice in entries[e].Slices)
            {
                if (!_byTensor.TryGetValue(slice.Tensor, out var list))
                    _byTensor[slice.Tensor] = list = [];
                list.Add((e, slice));
            }
    }

    public DecoderShape Shape { get; }

    /// <summary>Every tensor of the model by Hugging Face name, with its shape.</summary>
    public IReadOnlyDictionary<string, int[]> TensorShapes { get; }

    /// <summary>The permutations in the order they are applied (a layer's key/value heads before its groups).</summary>
    public IReadOnlyList<PermutationEntry> Permutations { get; }

    public static PermutationSpec ForDecoder(DecoderShape s)
    {
        if (s.KeyValueHeads < 1 || s.Heads % s.KeyValueHeads != 0)
            throw new ArgumentException($"{s.Heads} heads do not split into {s.KeyValueHeads} key/value groups");
        int hd = s.HeadDim,
            g = s.GroupSize;
        var shapes = new Dictionary<string, int[]>(StringComparer.Ordinal)
        {
            ["model.embed_tokens.weight"] = [s.Vocab, s.Hidden],
        };
        var residual = new List<AxisSlice> { new("model.embed_tokens.weight", 1, 0, 1) };
        var entries = new List<PermutationEntry>();
        for (int layer = 0; layer < s.Layers; layer++)
        {
            string p = $"model.layers.{layer}.";
            string Weight(string name, int rows, int columns, bool bias)
            {
                shapes[p + name + ".weight"] = [rows, columns];
                if (bias)
                    shapes[p + name + ".bias"] = [rows];
                return p + name;
            }
            string q = Weight("self_attn.q_proj", s.Heads * hd, s.Hidden, s.QkvBias),
                k = Weight("self_attn.k_proj", s.KeyValueHeads * hd, s.Hidden, s.QkvBias),
                v = Weight("self_attn.v_proj", s.KeyValueHeads * hd, s.Hidden, s.QkvBias),
                o = Weight("self_attn.o_proj", s.Hidden, s.Heads * hd, s.OutputBias),
                gate = Weight("mlp.gate_proj", s.Intermediate, s.Hidden, s.MlpBias),
                up = Weight("mlp.up_proj", s.Intermediate, s.Hidden, s.MlpBias),
                down = Weight("mlp.down_proj", s.Hidden, s.Intermediate, s.MlpBias);
            string inputNorm = p + "input_layernorm.weight",
                postNorm = p + "post_attention_layernorm.weight";
            shapes[inputNorm] = [s.Hidden];
            shapes[postNorm] = [s.Hidden];

            // Rows of a linear map (and its bias) in units of `block`, starting at `offset`.
            IEnumerable<AxisSlice> Rows(string linear, int offset, int block, bool bias) =>
                bias
                    ? [new(linear + ".weight", 0, offset, block), new(linear + ".bias", 0, offset, block)]
                    : [new(linear + ".weight", 0, offset, block)];

            foreach (var reader in new[] { q, k, v, gate, up })
                residual.Add(new(reader + ".weight", 1, 0, 1));
            residual.AddRange(Rows(o, 0, 1, s.OutputBias));
            residual.AddRange(Rows(down, 0, 1, s.MlpBias));
            residual.Add(new(inputNorm, 0, 0, 1));
            residual.Add(new(postNorm, 0, 0, 1));

            entries.Add(
                new(
                    $"{p}mlp",
                    PermutationKind.Mlp,
                    layer,
                    s.Intermediate,
                    [.. Rows(gate, 0, 1, s.MlpBias), .. Rows(up, 0, 1, s.MlpBias), new(down + ".weight", 1, 0, 1)]
                )
            );
            // A key/value head carries its group of query heads: g·hd rows of q_proj, g·hd columns of o_proj.
            entries.Add(
                new(
                    $"{p}self_attn.kv_heads",
                    PermutationKind.KeyValueHeads,
                    layer,
                    s.KeyValueHeads,
                    [
                        .. Rows(k, 0, hd, s.QkvBias),
                        .. Rows(v, 0, hd, s.QkvBias),
                        .. Rows(q, 0, g * hd, s.QkvBias),
                        new(o + ".weight", 1, 0, g * hd),
                    ]
                )
            );
            if (g > 1)
                for (int group = 0; group < s.KeyValueHeads; group++)
                    entries.Add(
                        new(
                            $"{p}self_attn.query_heads.{group}",
                            PermutationKind.QueryHeads,
                            layer,
                            g,
                            [.. Rows(q, group * g * hd, hd, s.QkvBias), new(o + ".weight", 1, group * g * hd, hd)]
                        )
                    );
        }
        shapes["model.norm.weight"] = [s.Hidden];
        residual.Add(new("model.norm.weight", 0, 0, 1));
        if (!s.Tied)
        {
            shapes["lm_head.weight"] = [s.Vocab, s.Hidden];
            residual.Add(new("lm_head.weight", 1, 0, 1));
        }
        entries.Insert(0, new("residual", PermutationKind.Residual, -1, s.Hidden, residual));
        return new PermutationSpec(s, shapes, entries);
    }

    /// <summary>The identity for every permutation.</summary>
    public Dictionary<string, int[]> Identity() =>
        Permutations.ToDictionary(e => e.Name, e => Enumerable.Range(0, e.Size).ToArray(), StringComparer.Ordinal);

    /// <summary>A uniformly random draw of every permutation, from <paramref name="seed"/>.</summary>
    public Dictionary<string, int[]> Random(ulong seed) =>
        Permutations.ToDictionary(
            e => e.Name,
            e => Tensors.RandomStream.For(seed, e.Name, 0).Permutation(e.Size),
            StringComparer.Ordinal
        );

    /// <summary>
    /// The tensors with every permutation in <paramref name="permutations"/> applied (missing ones are the identity);
    /// untouched tensors are shared, touched ones copied.
    /// </summary>
    public Dictionary<string, float[]> Apply(
        IReadOnlyDictionary<string, float[]> tensors,
        IReadOnlyDictionary<string, int[]> permutations
    ) =>
        tensors.ToDictionary(
            t => t.Key,
            t => ApplyTo(t.Key, t.Value, permutations, _ => false),
            StringComparer.Ordinal
        );

    /// <summary>
    /// One tensor with the permutations that act on it applied in order, except those <paramref name="skip"/> names.
    /// </summary>
    public float[] ApplyTo(
        string tensor,
        float[] data,
        IReadOnlyDictionary<string, int[]> permutations,
        Func<PermutationEntry, bool> skip
    )
    {
        if (!_byTensor.TryGetValue(tensor, out var slices))
            return data;
        var shape = TensorShapes[tensor];
        foreach (var (e, slice) in slices)
        {
            var entry = Permutations[e];
            if (!skip(entry) && permutations.TryGetValue(entry.Name, out var perm))
                data = Permute(data, shape, slice, perm);
        }
        return data;
    }

    /// <summary>
    /// Where each element of a tensor comes from once <paramref name="permutations"/> are applied (the same result as
    /// <see cref="Apply"/>, as index maps a reader can follow lazily); null when none of them moves the tensor.
    /// </summary>
    public TensorGather? Gather(string tensor, IReadOnlyDictionary<string, int[]> permutations)
    {
        if (!_byTensor.TryGetValue(tensor, out var slices))
            return null;
        var shape = TensorShapes[tensor];
        int[] rows = [.. Enumerable.Range(0, shape[0])],
            columns = [.. Enumerable.Range(0, shape.Length > 1 ? shape[1] : 1)];
        foreach (var (e, slice) in slices)
        {
            if (!permutations.TryGetValue(Permutations[e].Name, out var perm))
                continue;
            var map = slice.Axis == 0 ? rows : columns;
            var moved = (int[])map.Clone();
            for (int i = 0; i < perm.Length; i++)
                Array.Copy(
                    map,
                    slice.Offset + perm[i] * slice.Block,
                    moved,
                    slice.Offset + i * slice.Block,
                    slice.Block
                );
            if (slice.Axis == 0)
                rows = moved;
            else
                columns = moved;
        }
        static bool Identity(int[] map) => map.Select((v, i) => v == i).All(x => x);
        return Identity(rows) && Identity(columns)
            ? null
            : new TensorGather(Identity(rows) ? null : rows, Identity(columns) ? null : columns);
    }

    /// <summary>The tensors <paramref name="kinds"/> of permutation act on.</summary>
    public IReadOnlySet<string> TensorsOf(params PermutationKind[] kinds) =>
        Permutations
            .Where(e => kinds.Contains(e.Kind))
            .SelectMany(e => e.Slices.Select(s => s.Tensor))
            .ToHashSet(StringComparer.Ordinal);

    /// <summary>A copy of <paramref name="data"/> with unit i of the slice taken from unit perm[i].</summary>
    private static float[] Permute(float[] data, int[] shape, AxisSlice slice, int[] perm)
    {
        var result = (float[])data.Clone();
        int rows = shape[0],
            columns = shape.Length > 1 ? shape[1] : 1,
            b = slice.Block;
        for (int i = 0; i < perm.Length; i++)
        {
            int to = slice.Offset + i * b,
                from = slice.Offset + perm[i] * b;
            if (slice.Axis == 0)
                data.AsSpan(from * columns, b * columns).CopyTo(result.AsSpan(to * columns));
            else
                for (int r = 0; r < rows; r++)
                    data.AsSpan(r * columns + from, b).CopyTo(result.AsSpan(r * columns + to));
        }
        return result;
    }

    /// <summary>
    /// The n units of a slab (starting at <paramref name="offset"/>, <paramref name="block"/> wide along
    /// <paramref name="axis"/>) as the rows of an n × (block·rest) matrix, in the same element order for every unit.
    /// </summary>
    internal static float[] Units(float[] data, int[] shape, int axis, int offset, int block, int n)
    {
        int rows = shape[0],
            columns = shape.Length > 1 ? shape[1] : 1;
        if (axis == 0)
            return data.AsSpan(offset * columns, n * block * columns).ToArray();
        var units = new float[n * block * rows];
        for (int i = 0; i < n; i++)
        for (int r = 0; r < rows; r++)
            data.AsSpan(r * columns + offset + i * block, block).CopyTo(units.AsSpan((i * rows + r) * block));
        return units;
    }
}
