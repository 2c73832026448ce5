using System.Globalization;

namespace Alloy.Bench;

/// <summary>
/// Numbers as the report prints them: invariant culture, binary units for memory, decimal GB/s for throughput.
/// </summary>
public static class Format
{
    public static string Bytes(long bytes) =>
        bytes switch
        {
            >= 1L << 30 => F($"{bytes / (double)(1L << 30):F2} GiB"),
            >= 1L << 20 => F($"{bytes / (double)(1L << 20):F0} MiB"),
            _ => F($"{bytes / 1024.0:F0} KiB"),
        };

    public static string Seconds(double s) => s >= 100 ? F($"{s:F0} s") : F($"{s:F1} s");

    /// <summary>Seconds with the digits a short time needs (milliseconds below 0.1 s).</summary>
    public static string Seconds3(double s) =>
        s >= 10 ? F($"{s:F1} s")
        : s >= 0.1 ? F($"{s:F2} s")
        : F($"{s * 1000:F1} ms");

    public static string Ratio(double r) => F($"{r:F2}×");

    public static string Rate(double gbPerSecond) => F($"{gbPerSecond:F2}");

    public static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
