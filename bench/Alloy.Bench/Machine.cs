using System.Runtime.InteropServices;

namespace Alloy.Bench;

/// <summary>The machine the figures were measured on, read from /proc and /sys.</summary>
public sealed record Machine(
    string Cpu,
    int Cores,
    long MemoryBytes,
    string Disk,
    string OperatingSystem,
    string DotNet
)
{
    public static Machine Describe(string folder) =>
        new(
            CpuName(),
            Environment.ProcessorCount,
            MemTotal(),
            DiskOf(folder),
            Os(),
            RuntimeInformation.FrameworkDescription
        );

    private static string CpuName()
    {
        var info = Lines("/proc/cpuinfo");
        string Field(string key) =>
            info.FirstOrDefault(l => l.StartsWith(key, StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "?";
        var flags = Field("flags").Split(' ');
        var vector = new[] { "avx512_bf16", "avx512f", "avx2" }.Where(flags.Contains).ToList();
        return $"{Field("model name")} (family {Field("cpu family")}, model {Field("model")}; "
            + $"{string.Join(", ", vector)})";
    }

    private static long MemTotal()
    {
        var line = Lines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemTotal:", StringComparison.Ordinal));
        return line is null
            ? 0
            : long.Parse(
                line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1],
                System.Globalization.CultureInfo.InvariantCulture
            ) * 1024;
    }

    /// <summary>
    /// The block device holding <paramref name="folder"/>: name, size, whether it spins, file system.
    /// </summary>
    private static string DiskOf(string folder)
    {
        var full = Path.GetFullPath(folder);
        var mount = Lines("/proc/mounts")
            .Select(l => l.Split(' '))
            .Where(p => p.Length > 2 && full.StartsWith(p[1], StringComparison.Ordinal))
            .OrderByDescending(p => p[1].Length)
            .FirstOrDefault();
        if (mount is null)
            return "?";
        string device = Path.GetFileName(mount[0]);
        string sys = $"/sys/block/{device}";
        if (!Directory.Exists(sys))
            return $"{mount[0]} ({mount[2]})";
        long sectors = long.TryParse(Read($"{sys}/size"), out var s) ? s : 0;
        string kind = Read($"{sys}/queue/rotational") == "0" ? "non-rotational" : "reported rotational";
        string bus = Read($"{sys}/device/vendor") == "0x1af4" ? "virtio " : "";
        return Format.F($"{bus}block device {device}, {sectors * 512 / 1e9:F0} GB, {kind}, {mount[2]} on {mount[1]}");
    }

    private static string Os()
    {
        var pretty = Lines("/etc/os-release")
            .FirstOrDefault(l => l.StartsWith("PRETTY_NAME=", StringComparison.Ordinal))
            ?.Split('=', 2)[1]
            .Trim('"')
            ?? "Linux";
        return $"{pretty}, kernel {Read("/proc/sys/kernel/osrelease")}";
    }

    private static string[] Lines(string path) => File.Exists(path) ? File.ReadAllLines(path) : [];

    private static string Read(string path) => File.Exists(path) ? File.ReadAllText(path).Trim() : "";
}
