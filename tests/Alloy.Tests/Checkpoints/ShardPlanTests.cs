using Alloy.Checkpoints;
using Alloy.Tensors;

namespace Alloy.Tests.Checkpoints;

public sealed class ShardPlanTests
{
    private static TensorInfo Bytes(string name, long count) => new(name, DType.U8, [count]);

    private static string[][] Layout(ShardPlan plan) =>
        plan.Shards.Select(s => s.Tensors.Select(t => t.Name).ToArray()).ToArray();

    [Fact]
    public void Exactly_at_the_limit_stays_in_the_shard()
    {
        var plan = ShardPlan.Create([Bytes("a", 400), Bytes("b", 600)], maxShardBytes: 1000);
        Assert.Equal(
            [
                ["a", "b"],
            ],
            Layout(plan)
        );
        Assert.Equal("model.safetensors", plan.Shards.Single().FileName);
        Assert.Equal(1000, plan.TotalBytes);
    }

    [Fact]
    public void One_byte_over_starts_a_new_shard()
    {
        var plan = ShardPlan.Create([Bytes("a", 400), Bytes("b", 601)], maxShardBytes: 1000);
        Assert.Equal(
            [
                ["a"],
                ["b"],
            ],
            Layout(plan)
        );
        Assert.Equal(
            ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
            plan.Shards.Select(s => s.FileName)
        );
        Assert.Equal(1001, plan.TotalBytes);
    }

    [Fact]
    public void Tensor_bigger_than_the_limit_gets_its_own_shard()
    {
        var plan = ShardPlan.Create(
            [Bytes("a", 100), Bytes("big", 2000), Bytes("c", 100), Bytes("d", 100)],
            maxShardBytes: 1000
        );
        Assert.Equal(
            [
                ["a"],
                ["big"],
                ["c", "d"],
            ],
            Layout(plan)
        );
        Assert.Equal("model-00003-of-00003.safetensors", plan.Shards[2].FileName);
        Assert.Equal(2000, plan.Shards[1].DataBytes);
    }

    [Fact]
    public void Byte_length_counts_the_element_size()
    {
        // 2 × 250 F16 elements = 1000 bytes: fits; one more F32 element does not.
        var plan = ShardPlan.Create(
            [
                new TensorInfo("h", DType.F16, [250]),
                new TensorInfo("h2", DType.F16, [250]),
                new TensorInfo("f", DType.F32, []),
            ],
            maxShardBytes: 1000
        );
        Assert.Equal(
            [
                ["h", "h2"],
                ["f"],
            ],
            Layout(plan)
        );
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(long.MinValue)]
    public void Zero_or_negative_limit_disables_sharding(long max)
    {
        var plan = ShardPlan.Create([Bytes("a", 10), Bytes("b", 20), Bytes("c", 30)], max);
        Assert.Equal(
            [
                ["a", "b", "c"],
            ],
            Layout(plan)
        );
        Assert.Equal("model.safetensors", plan.Shards[0].FileName);
    }

    [Fact]
    public void Names_use_five_digits()
    {
        var tensors = Enumerable.Range(0, 12).Select(i => Bytes($"t{i}", 1)).ToArray();
        var plan = ShardPlan.Create(tensors, maxShardBytes: 1);
        Assert.Equal(12, plan.Shards.Count);
        Assert.Equal("model-00012-of-00012.safetensors", plan.Shards[11].FileName);
        Assert.Same(plan.Shards[4], plan.ShardOf("t4"));
        Assert.Null(plan.ShardOf("t99"));
    }

    [Fact]
    public void Duplicate_names_are_rejected()
    {
        var e = Assert.Throws<ArgumentException>(() =>
            ShardPlan.Create([Bytes("a", 1), Bytes("b", 1), Bytes("a", 1)], 0)
        );
        Assert.Contains("'a' appears twice", e.Message);
    }

    [Fact]
    public void No_tensors_no_shards()
    {
        var plan = ShardPlan.Create([], 1000);
        Assert.Empty(plan.Shards);
        Assert.Equal(0, plan.TotalBytes);
    }

    [Fact]
    public void Tensor_info_counts_elements_and_bytes()
    {
        Assert.Equal(1, new TensorInfo("s", DType.F64, []).ElementCount);
        Assert.Equal(8, new TensorInfo("s", DType.F64, []).ByteLength);
        Assert.Equal(0, new TensorInfo("z", DType.BF16, [3, 0, 2]).ByteLength);
        Assert.Equal(24, new TensorInfo("m", DType.BF16, [3, 2, 2]).ByteLength);
        Assert.Equal(new TensorInfo("m", DType.BF16, [3, 2]), new TensorInfo("m", DType.BF16, [3, 2]));
        Assert.NotEqual(new TensorInfo("m", DType.BF16, [3, 2]), new TensorInfo("m", DType.BF16, [2, 3]));
        Assert.Throws<ArgumentException>(() => new TensorInfo("n", DType.F32, [2, -1]));
        Assert.Throws<ArgumentException>(() => new TensorInfo("o", DType.F32, [1L << 40, 1L << 40]));
    }
}
