using Alloy.Runtime.Compute;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Layers;

/// <summary>Token embedding: row t of the [vocab, hidden] weight for token t.</summary>
public sealed class Embedding(Parameter weight)
{
    public Parameter Weight { get; } = weight;

    /// <summary>
    /// output (tokens × hidden) = the weight rows of <paramref name="tokens"/> (ids checked by the caller).
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, Matrix output)
    {
        output.Resize(tokens.Length);
        int hidden = Weight.Columns;
        for (int i = 0; i < tokens.Length; i++)
            Weight.Data.AsSpan(tokens[i] * hidden, hidden).CopyTo(output.Row(i));
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>: adds row i of <paramref name="outputGradient"/> to the gradient row of
    /// tokens[i]. Parallel over blocks of columns with the rows in order, so repeated tokens sum the same way on any
    /// number of threads.
    /// </summary>
    public void Backward(ComputeContext context, int[] tokens, Matrix outputGradient, GradientSet gradients)
    {
        var gradient = gradients[Weight];
        int hidden = Weight.Columns;
        context.ForBlocks(hidden, 64, (start, end) =>
        {
            for (int i = 0; i < tokens.Length; i++)
            {
                var from = outputGradient.Data.AsSpan(i * hidden + start, end - start);
                var to = gradient.AsSpan(tokens[i] * hidden + start, end - start);
                System.Numerics.Tensors.TensorPrimitives.Add(to, from, to);
            }
        });
    }
}
