using Alloy.Runtime.Models;

namespace Alloy.Runtime.Inference;

/// <summary>
/// Keys and values of the tokens seen so far, per layer and sequence, so that decoding step by step costs one token's
/// work instead of the whole prefix's. Each (layer, sequence) holds a [capacity × key/value dim] matrix in the same row
/// layout as a forward pass's key and value activations (keys after RoPE), so attention reads both the same way.
/// Capacity grows (doubling) as sequences get longer.
/// </summary>
public sealed class KvCache
{
    private readonly ModelConfig _config;
    private readonly float[][] _keys;
    private readonly float[][] _values;
    private readonly int[] _lengths;
    private readonly int[] _capacities;

    internal KvCache(ModelConfig config, int sequences, int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sequences);
        _config = config;
        _keys = new float[config.Layers * sequences][];
        _values = new float[config.Layers * sequences][];
        _lengths = new int[sequences];
        _capacities = new int[sequences];
        for (int s = 0; s < sequences; s++)
            Grow(s, Math.Max(1, capacity));
    }

    public int Sequences => _lengths.Length;

    /// <summary>Tokens of <paramref name="sequence"/> held (the position its next token will get).</summary>
    public int Length(int sequence) => _lengths[sequence];

    /// <summary>Forgets a sequence (its storage is kept for reuse).</summary>
    public void Reset(int sequence) => _lengths[sequence] = 0;

    public void Reset() => Array.Clear(_lengths);

    internal bool Fits(ModelConfig config) =>
        config.Layers == _config.Layers && config.KeyValueDim == _config.KeyValueDim;

    internal float[] Keys(int layer, int sequence) => _keys[layer * Sequences + sequence];

    internal float[] Values(int layer, int sequence) => _values[layer * Sequences + sequence];

    /// <summary>Makes room for the layout's new tokens (before the layers write them).</summary>
    internal void Reserve(BatchLayout layout)
    {
        for (int s = 0; s < layout.Sequences; s++)
        {
            int needed = layout.Start(s) + layout.Length(s);
            if (needed > _capacities[s])
                Grow(s, Math.Max(needed, 2 * _capacities[s]));
        }
    }

    /// <summary>Counts the layout's tokens as held, once every layer has written them.</summary>
    internal void Advance(BatchLayout layout)
    {
        for (int s = 0; s < layout.Sequences; s++)
            _lengths[s] = layout.Start(s) + layout.Length(s);
    }

    private void Grow(int sequence, int capacity)
    {
        int dim = _config.KeyValueDim;
        if ((long)capacity * dim > Array.MaxLength)
            throw new AlloyException(
                $"a KV cache of {capacity:N0} tokens exceeds the largest .NET array; use shorter sequences"
            );
        for (int layer = 0; layer < _config.Layers; layer++)
        {
            int slot = layer * Sequences + sequence;
            var keys = new float[capacity * dim];
            var values = new float[capacity * dim];
            int kept = _lengths[sequence] * dim;
            _keys[slot]?.AsSpan(0, kept).CopyTo(keys);
            _values[slot]?.AsSpan(0, kept).CopyTo(values);
            _keys[slot] = keys;
            _values[slot] = values;
        }
        _capacities[sequence] = capacity;
    }
}
