using Alloy.Checkpoints;

namespace Alloy.Tests.Checkpoints;

/// <summary>Cases checked against mergekit's parse_kmb (mergekit/common.py) run under Python 3.11.</summary>
public sealed class ByteSizeTests
{
    [Theory]
    [InlineData("0", 0L)]
    [InlineData("5", 5L)]
    [InlineData("1000", 1000L)]
    [InlineData("5B", 5_000_000_000L)]
    [InlineData("5b", 5_000_000_000L)]
    [InlineData("500M", 500_000_000L)]
    [InlineData("500m", 500_000_000L)]
    [InlineData("1K", 1000L)]
    [InlineData("1k", 1000L)]
    [InlineData("0K", 0L)]
    [InlineData("-1K", -1000L)] // int("-1") accepts the sign
    [InlineData("+2M", 2_000_000L)]
    [InlineData(" 3K", 3000L)] // int(" 3") strips whitespace
    [InlineData("3 K", 3000L)]
    [InlineData("1_000K", 1_000_000L)] // int("1_000") accepts digit separators
    [InlineData("\u0663K", 3000L)] // Arabic-Indic digit three
    [InlineData("\u0663", 3L)]
    [InlineData("9223372036854775807", long.MaxValue)]
    public void Accepts_what_mergekit_accepts(string text, long expected) =>
        Assert.Equal(expected, ByteSize.Parse(text));

    [Theory]
    [InlineData("")]
    [InlineData("1.5B")]
    [InlineData("5KB")]
    [InlineData("5G")]
    [InlineData("B")]
    [InlineData("-5")] // a plain number must be all digits
    [InlineData("+5")]
    [InlineData(" 5")]
    [InlineData("5 ")]
    [InlineData("1_000")]
    [InlineData("5e9")]
    [InlineData("K5")]
    [InlineData("1__0K")]
    [InlineData("_1K")]
    [InlineData("1_K")]
    [InlineData("\u00bd")] // numeric but not a decimal digit
    [InlineData("\u2003 7k ")]
    [InlineData("\u001c4K")]
    public void Rejects_what_mergekit_rejects(string text)
    {
        var e = Assert.Throws<AlloyException>(() => ByteSize.Parse(text));
        Assert.Equal(
            $"--out-shard-size: '{text}' is not a size; use an integer with an optional K, M or B suffix (e.g. 5B)",
            e.Message
        );
    }

    [Theory]
    [InlineData("9223372036854775808")]
    [InlineData("99999999999B")]
    [InlineData("-99999999999B")]
    public void Too_large_for_a_long(string text)
    {
        var e = Assert.Throws<AlloyException>(() => ByteSize.Parse(text));
        Assert.Equal($"--out-shard-size: '{text}' is too large", e.Message);
    }
}
