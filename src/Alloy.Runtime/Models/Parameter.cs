namespace Alloy.Runtime.Models;

/// <summary>
/// One weight tensor of a model, under its Hugging Face name, as a contiguous row-major float32 array. Layers hold
/// references to these objects, so an update to <see cref="Data"/> (a training step) is seen by the next forward pass.
/// </summary>
public sealed class Parameter
{
    public Parameter(string name, int[] shape, float[]? data = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        long count = shape.Aggregate(1L, (a, b) => a * b);
        if (shape.Length is < 1 or > 3 || shape.Any(d => d <= 0) || count > Array.MaxLength)
            throw new ArgumentException(
                $"parameter '{name}': shape [{string.Join(", ", shape)}] is not a vector, matrix or stack of matrices "
                    + "the runtime can hold"
            );
        if (data is not null && data.Length != count)
            throw new ArgumentException(
                $"parameter '{name}': {data.Length} values for shape [{string.Join(", ", shape)}]"
            );
        Name = name;
        Shape = shape;
        Data = data ?? new float[count];
    }

    public string Name { get; }

    /// <summary>
    /// [rows, columns] for a matrix (Hugging Face's [out, in] for a linear weight), [length] for a vector,
    /// [count, rows, columns] for a stack of matrices (fused MoE experts).
    /// </summary>
    public int[] Shape { get; }

    public float[] Data { get; }

    /// <summary>Rows of the parameter seen as one matrix (a stack's matrices one under the other).</summary>
    public int Rows => Shape.Length == 1 ? Shape[0] : Data.Length / Columns;

    public int Columns => Shape.Length >= 2 ? Shape[^1] : 1;

    public override string ToString() => $"{Name} [{string.Join(", ", Shape)}]";
}
