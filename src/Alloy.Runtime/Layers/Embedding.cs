using Alloy.Runtime.Compute;
using Alloy.Runtime.Models;

namespace Alloy.Runtime.Layers;

/// <summary>Token embedding: row t of the [vocab, hidden] weight for token t.</summary>
public sealed class Embedding(Parameter weight)
{
    public Parameter Weight { get; } = weight;

    /// <summary>output (tokens × hidden) = the weight rows of <paramref name="tokens"/> (ids checked by the caller).</summary>
    public void Forward(ReadOnlySpan<int> tokens, Matrix output)
    {
        output.Resize(tokens.Length);
        int hidden = Weight.Columns;
        for (int i = 0; i < tokens.Length; i++)
            Weight.Data.AsSpan(tokens[i] * hidden, hidden).CopyTo(output.Row(i));
    }
}
