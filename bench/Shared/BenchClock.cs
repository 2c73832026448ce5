using System.Diagnostics;

namespace Alloy.Bench.Shared;

/// <summary>
/// Timing shared by the benchmark programs (linked into each): wall and CPU seconds of a run, the best of repeats,
/// and the machine's load, since CPU seconds are the steadier figure on a shared machine.
/// </summary>
internal static class BenchClock
{
    /// <summary>Wall seconds and CPU seconds of the process (all threads) spent in <paramref name="action"/>.</summary>
    public static (double Wall, double Cpu) Timed(Action action)
    {
        var process = Process.GetCurrentProcess();
        process.Refresh();
        var cpu = process.TotalProcessorTime;
        var watch = Stopwatch.StartNew();
        action();
        double wall = watch.Elapsed.TotalSeconds;
        process.Refresh();
        return (wall, (process.TotalProcessorTime - cpu).TotalSeconds);
    }

    /// <summary>The run with the best wall time of <paramref name="repeat"/> runs.</summary>
    public static (double Wall, double Cpu) Best(int repeat, Func<(double Wall, double Cpu)> run)
    {
        var best = (Wall: double.MaxValue, Cpu: 0.0);
        for (int i = 0; i < repeat; i++)
        {
            var time = run();
            if (time.Wall < best.Wall)
                best = time;
        }
        return best;
    }

    /// <summary>/proc/loadavg, or "n/a".</summary>
    public static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "n/a";
}
