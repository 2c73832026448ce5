namespace Alloy.Checkpoints;

/// <summary>One output file and the tensors it holds, in write order.</summary>
public sealed record Shard(string FileName, IReadOnlyList<TensorInfo> Tensors)
{
    /// <summary>The sum of the tensors' byte lengths (the data section's size).</summary>
    public long DataBytes => Tensors.Sum(t => t.ByteLength);
}

/// <summary>
/// Decides up front which output tensor goes to which shard, so each shard's header can be written before its data.
/// mergekit's rule: tensors are taken in the given order; before adding one, if the current shard is non-empty and
/// its bytes plus the tensor's would exceed the limit, a new shard begins (so an oversized tensor gets its own).
/// </summary>
public sealed class ShardPlan
{
    private readonly Dictionary<string, int> _shardOf;

    private ShardPlan(IReadOnlyList<Shard> shards, Dictionary<string, int> shardOf, long totalBytes)
    {
        Shards = shards;
        _shardOf = shardOf;
        TotalBytes = totalBytes;
    }

    /// <param name="tensors">The output tensors in the order they will be written.</param>
    /// <param name="maxShardBytes">The shard size limit in bytes; zero or negative disables sharding (as in
    /// mergekit).</param>
    public static ShardPlan Create(IReadOnlyList<TensorInfo> tensors, long maxShardBytes)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var groups = new List<List<TensorInfo>>();
        var shardOf = new Dictionary<string, int>(tensors.Count, StringComparer.Ordinal);
        List<TensorInfo>? current = null;
        long currentBytes = 0,
            totalBytes = 0;
        foreach (var tensor in tensors)
        {
            if (shardOf.ContainsKey(tensor.Name))
            {
                throw new ArgumentException($"tensor '{tensor.Name}' appears twice in the output", nameof(tensors));
            }
            long bytes = tensor.ByteLength;
            if (current is null || (maxShardBytes > 0 && current.Count > 0 && currentBytes + bytes > maxShardBytes))
            {
                current = [];
                groups.Add(current);
                currentBytes = 0;
            }
            current.Add(tensor);
            currentBytes += bytes;
            totalBytes += bytes;
            shardOf.Add(tensor.Name, groups.Count - 1);
        }

        var shards = groups.Select((group, i) => new Shard(FileName(i, groups.Count), group.ToArray())).ToArray();
        return new ShardPlan(shards, shardOf, totalBytes);
    }

    /// <summary>
    /// Every tensor in one file named <paramref name="fileName"/> (a path relative to the writer's folder).
    /// </summary>
    public static ShardPlan SingleFile(IReadOnlyList<TensorInfo> tensors, string fileName)
    {
        var plan = Create(tensors, 0);
        return new ShardPlan(
            plan.Shards.Select(s => s with { FileName = fileName }).ToArray(),
            plan._shardOf,
            plan.TotalBytes
        );
    }

    /// <summary>Shards in write order. Empty when there are no tensors (as mergekit writes no file then).</summary>
    public IReadOnlyList<Shard> Shards { get; }

    /// <summary>The sum of all tensors' byte lengths (the index's total_size).</summary>
    public long TotalBytes { get; }

    /// <summary>The shard that holds the named tensor, or null when it is not in the plan.</summary>
    public Shard? ShardOf(string tensorName) => _shardOf.TryGetValue(tensorName, out int i) ? Shards[i] : null;

    /// <summary>Hugging Face naming: model.safetensors alone, else model-00001-of-00003.safetensors.</summary>
    public static string FileName(int index, int count) =>
        count == 1 ? Checkpoint.SingleFileName : $"model-{index + 1:D5}-of-{count:D5}.safetensors";
}
