using Alloy.Checkpoints;

namespace Alloy.Tests.Checkpoints;

public sealed class MemorySizeTests
{
    [Theory]
    [InlineData("1G", 1L << 30)]
    [InlineData("1.5GiB", 3L << 29)]
    [InlineData("512M", 512L << 20)]
    [InlineData("512mb", 512L << 20)]
    [InlineData("64K", 64L << 10)]
    [InlineData("2T", 2L << 40)]
    [InlineData("1073741824", 1L << 30)]
    [InlineData(" 2G ", 2L << 30)]
    public void Binary_sizes_parse(string text, long expected) =>
        Assert.Equal(expected, ByteSize.ParseMemory(text, "--memory-limit"));

    [Theory]
    [InlineData("")]
    [InlineData("G")]
    [InlineData("0")]
    [InlineData("-1G")]
    [InlineData("1X")]
    [InlineData("two gigabytes")]
    [InlineData("9999999T")]
    public void Other_text_is_refused_with_the_option_name(string text)
    {
        var e = Assert.Throws<AlloyException>(() => ByteSize.ParseMemory(text, "--memory-limit"));
        Assert.StartsWith("--memory-limit: ", e.Message);
    }
}
