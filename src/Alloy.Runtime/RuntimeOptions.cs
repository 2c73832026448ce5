using Alloy.LinearAlgebra;

namespace Alloy.Runtime;

/// <summary>How a loaded model computes.</summary>
public sealed record RuntimeOptions
{
    /// <summary>Threads for the runtime's own parallel loops (results do not depend on it).</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>The GEMM backend; null means <see cref="DenseBackend.Current"/> when the model is loaded.</summary>
    public DenseBackend? Backend { get; init; }

    public static RuntimeOptions Default { get; } = new();
}
