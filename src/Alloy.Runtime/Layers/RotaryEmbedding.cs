using Alloy.Runtime.Compute;
using Alloy.Runtime.Models;

namespace Alloy.Runtime.Layers;

/// <summary>
/// Rotary position embedding in Hugging Face's "rotate half" layout: within each head, element i and element
/// i + head_dim/2 are the two coordinates of pair i, rotated by position × frequency i. Frequencies and angles are
/// float32 products exactly as transformers computes them (the angle of a late position is rounded as the model saw it
/// in training); cos and sin are tabulated per position, the table growing as positions grow.
/// </summary>
public sealed class RotaryEmbedding
{
    private readonly object _grow = new();
    private volatile Table _table = new(0, [], []);

    public RotaryEmbedding(RopeConfig rope, int headDim)
    {
        HeadDim = headDim;
        InverseFrequencies = Frequencies(rope, headDim);
    }

    public int HeadDim { get; }

    /// <summary>The rotation frequency of each pair (head_dim / 2 of them), after rope_scaling.</summary>
    public float[] InverseFrequencies { get; }

    /// <summary>θ^(−2i/d), then scaled: linear divides every frequency by the factor; llama3 divides the low
    /// frequencies (wavelength above original_max_position_embeddings / low_freq_factor), keeps the high ones (below …
    /// / high_freq_factor), and blends linearly in 1/wavelength between the two.</summary>
    public static float[] Frequencies(RopeConfig rope, int headDim)
    {
        var frequencies = new float[headDim / 2];
        for (int i = 0; i < frequencies.Length; i++)
        {
            float exponent = (float)(2 * i) / headDim;
            float frequency = 1f / (float)Math.Pow(rope.Theta, exponent);
            frequencies[i] = rope.Type switch
            {
                "linear" => (float)(frequency / rope.Factor),
                "llama3" => Llama3(frequency, rope),
                _ => frequency,
            };
        }
        return frequencies;
    }

    private static float Llama3(float frequency, RopeConfig rope)
    {
        double wavelength = 2 * Math.PI / frequency;
        double context = rope.OriginalMaxPositions;
        if (wavelength > context / rope.LowFreqFactor)
            return (float)(frequency / rope.Factor);
        if (wavelength < context / rope.HighFreqFactor)
            return frequency;
        double blend = (context / wavelength - rope.LowFreqFactor) / (rope.HighFreqFactor - rope.LowFreqFactor);
        return (float)((1 - blend) * frequency / rope.Factor + blend * frequency);
    }

    /// <summary>
    /// Rotates every head of every row of <paramref name="x"/> (rows × heads·head_dim) in place, row r at positions[r].
    /// With <paramref name="inverse"/>, rotates by −angle: the rotation is orthogonal, so this is also its backward
    /// (it carries a gradient with respect to the rotated vectors back to the unrotated ones).
    /// </summary>
    public void Apply(ComputeContext context, Matrix x, int heads, int[] positions, bool inverse = false)
    {
        if (x.Rows == 0)
            return;
        var table = TableFor(positions.Max() + 1);
        int half = HeadDim / 2;
        context.ForBlocks(x.Rows, 64, (start, end) =>
        {
            for (int r = start; r < end; r++)
            {
                var row = x.Row(r);
                var cos = table.Cos.AsSpan(positions[r] * half, half);
                var sin = table.Sin.AsSpan(positions[r] * half, half);
                float direction = inverse ? -1f : 1f;
                for (int h = 0; h < heads; h++)
                {
                    var first = row.Slice(h * HeadDim, half);
                    var second = row.Slice(h * HeadDim + half, half);
                    for (int i = 0; i < half; i++)
                    {
                        float a = first[i],
                            b = second[i];
                        float s = direction * sin[i];
                        first[i] = a * cos[i] - b * s;
                        second[i] = b * cos[i] + a * s;
                    }
                }
            }
        });
    }

    private Table TableFor(int positions)
    {
        var table = _table;
        if (table.Positions >= positions)
            return table;
        lock (_grow)
        {
            if (_table.Positions >= positions)
                return _table;
            int size = Math.Max(256, (int)Math.Min(int.MaxValue / HeadDim, 2L * positions));
            int half = HeadDim / 2;
            var cos = new float[size * half];
            var sin = new float[size * half];
            for (int p = 0; p < size; p++)
            {
                for (int i = 0; i < half; i++)
                {
                    float angle = (float)p * InverseFrequencies[i]; // float32, as transformers
                    cos[p * half + i] = (float)Math.Cos(angle);
                    sin[p * half + i] = (float)Math.Sin(angle);
                }
            }
            _table = new Table(size, cos, sin);
            return _table;
        }
    }

    private sealed record Table(int Positions, float[] Cos, float[] Sin);
}
