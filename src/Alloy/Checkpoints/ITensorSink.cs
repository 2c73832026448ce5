namespace Alloy.Checkpoints;

/// <summary>
/// Where a merge's output tensors go, in plan order: each tensor's bytes in its output dtype (little-endian), in one
/// or more appends of whole elements. A model folder's shards (<see cref="ShardedWriter"/>) are one sink; a model held
/// in memory (Alloy.Runtime's model sink) is another.
/// </summary>
public interface ITensorSink
{
    void Append(TensorInfo tensor, ReadOnlySpan<byte> bytes);
}
