using System.Collections;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Alloy.Bench;

/// <summary>What a finished child process cost: wall time, CPU time and peak memory, all of the child alone.</summary>
public sealed record ChildResult(
    int ExitCode,
    double WallSeconds,
    double UserSeconds,
    double SystemSeconds,
    long PeakRss,
    long PeakAnon,
    long PeakFile,
    double OtherCpuSeconds,
    string Stdout,
    string Stderr,
    bool Stopped = false
)
{
    public bool Succeeded => ExitCode == 0;

    /// <summary>The first line of stderr that says something, for a "failed:" cell.</summary>
    public string FirstError =>
        Stderr
            .Split('\n')
            .Select(l => l.Trim())
            .FirstOrDefault(l => l.StartsWith("error", StringComparison.OrdinalIgnoreCase))
        ?? Stderr.Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.Length > 0)
        ?? $"exit code {ExitCode}";
}

/// <summary>
/// Runs a program with posix_spawn and reaps it with wait4, whose rusage gives the peak RSS (ru_maxrss) and CPU time of
/// that one child. System.Diagnostics.Process is deliberately not used anywhere in the benchmark: it reaps children
/// itself, which would race wait4 and lose the rusage. While the child runs, /proc/PID/status is sampled so the peak
/// can be split into anonymous memory (buffers) and file pages (memory-mapped inputs), which ru_maxrss lumps together.
/// </summary>
public static unsafe class ChildProcess
{
    private const int SampleMilliseconds = 10;

    /// <param name="limitSeconds">Kill the child (SIGKILL) once it has run this long; the result says it was
    /// <see cref="ChildResult.Stopped"/>.</param>
    public static ChildResult Run(
        string program,
        IReadOnlyList<string> arguments,
        IReadOnlyDictionary<string, string>? environment = null,
        string? workingFolder = null,
        double? limitSeconds = null
    )
    {
        string logs = Directory.CreateTempSubdirectory("alloy-bench-child-").FullName;
        string stdoutPath = Path.Combine(logs, "stdout"),
            stderrPath = Path.Combine(logs, "stderr");
        var allocations = new List<nint>();
        nint Utf8(string s)
        {
            nint p = Marshal.StringToCoTaskMemUTF8(s);
            allocations.Add(p);
            return p;
        }

        var argv = new nint[arguments.Count + 2];
        argv[0] = Utf8(program);
        for (int i = 0; i < arguments.Count; i++)
            argv[i + 1] = Utf8(arguments[i]);

        var variables = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (DictionaryEntry entry in Environment.GetEnvironmentVariables())
            variables[(string)entry.Key] = (string?)entry.Value ?? "";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
            variables[key] = value;
        var envp = new nint[variables.Count + 1];
        int e = 0;
        foreach (var (key, value) in variables)
            envp[e++] = Utf8($"{key}={value}");

        // posix_spawn_file_actions_t is 80 bytes in glibc; leave room for other C libraries.
        nint actions = Marshal.AllocHGlobal(512);
        try
        {
            Check(Native.posix_spawn_file_actions_init(actions), "posix_spawn_file_actions_init");
            const int WriteCreateTruncate = 0x1 | 0x40 | 0x200; // O_WRONLY | O_CREAT | O_TRUNC
            Check(Native.posix_spawn_file_actions_addopen(actions, 0, Utf8("/dev/null"), 0, 0), "addopen stdin");
            Check(
                Native.posix_spawn_file_actions_addopen(actions, 1, Utf8(stdoutPath), WriteCreateTruncate, 0x1a4),
                "addopen stdout"
            );
            Check(
                Native.posix_spawn_file_actions_addopen(actions, 2, Utf8(stderrPath), WriteCreateTruncate, 0x1a4),
                "addopen stderr"
            );
            if (workingFolder is not null)
                Check(Native.posix_spawn_file_actions_addchdir_np(actions, Utf8(workingFolder)), "addchdir");

            long parentPeak = ReadStatus("/proc/self/status", "VmHWM:");
            double busyBefore = MachineBusySeconds();
            var clock = Stopwatch.StartNew();
            int pid;
            fixed (nint* argvPointer = argv)
            fixed (nint* envpPointer = envp)
            {
                int error = Native.posix_spawnp(&pid, argv[0], actions, 0, argvPointer, envpPointer);
                if (error != 0)
                    throw new IOException($"cannot start {program}: {Marshal.GetPInvokeErrorMessage(error)}");
            }

            var sampler = new StatusSampler(pid);
            var sampling = new Thread(sampler.Run) { IsBackground = true, Name = "rss-sampler" };
            sampling.Start();
            // Disposed as soon as wait4 reaps the child; Linux hands out pids in sequence, so none is reused in
            // between.
            var stopped = new StrongBox<bool>();
            int child = pid;
            using var limit = limitSeconds is { } seconds
                ? new Timer(
                    _ =>
                    {
                        Volatile.Write(ref stopped.Value, true);
                        Native.kill(child, 9);
                    },
                    null,
                    TimeSpan.FromSeconds(seconds),
                    Timeout.InfiniteTimeSpan
                )
                : null;

            int status;
            Native.RUsage usage;
            while (true)
            {
                int reaped = Native.wait4(pid, &status, 0, &usage);
                if (reaped == pid)
                    break;
                int errno = Marshal.GetLastPInvokeError();
                if (reaped == -1 && errno == 4)
                    continue; // EINTR
                throw new IOException($"wait4({pid}) failed: {Marshal.GetPInvokeErrorMessage(errno)}");
            }
            clock.Stop();
            limit?.Dispose();
            double busy = MachineBusySeconds() - busyBefore;
            sampler.Stop();
            sampling.Join();

            int exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f);
            // glibc's posix_spawn is a vfork, and exec records the old (parent's) memory high-water mark into the
            // child's ru_maxrss. A ru_maxrss above the parent's own peak is the child's exact peak; otherwise fall back
            // to the VmHWM sampled from /proc (it can miss only the last few milliseconds).
            long rusagePeak = usage.MaxRssKilobytes * 1024;
            long peak = rusagePeak > parentPeak ? rusagePeak : sampler.PeakHwm;
            return new ChildResult(
                exitCode,
                clock.Elapsed.TotalSeconds,
                usage.UserTime.Seconds,
                usage.SystemTime.Seconds,
                peak,
                sampler.PeakAnon,
                sampler.PeakFile,
                Math.Max(0, busy - usage.UserTime.Seconds - usage.SystemTime.Seconds),
                File.ReadAllText(stdoutPath),
                File.ReadAllText(stderrPath),
                Volatile.Read(ref stopped.Value) && (status & 0x7f) == 9
            );
        }
        finally
        {
            Native.posix_spawn_file_actions_destroy(actions);
            Marshal.FreeHGlobal(actions);
            foreach (var p in allocations)
                Marshal.FreeCoTaskMem(p);
            try
            {
                Directory.Delete(logs, recursive: true);
            }
            catch (IOException) { }
        }
    }

    /// <summary>Runs a short helper command and returns its stdout, or null when it cannot run or fails.</summary>
    public static string? Output(string program, params string[] arguments)
    {
        try
        {
            var result = Run(program, arguments);
            return result.Succeeded ? result.Stdout.Trim() : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static void Check(int error, string what)
    {
        if (error != 0)
            throw new IOException($"{what}: {Marshal.GetPInvokeErrorMessage(error)}");
    }

    /// <summary>Peaks of RssAnon and RssFile from /proc/PID/status, sampled until the child is reaped.</summary>
    private sealed class StatusSampler(int pid)
    {
        private volatile bool _stopped;

        public long PeakAnon { get; private set; }

        public long PeakFile { get; private set; }

        public long PeakHwm { get; private set; }

        public void Stop() => _stopped = true;

        public void Run()
        {
            string path = $"/proc/{pid}/status";
            while (!_stopped)
            {
                try
                {
                    foreach (var line in File.ReadLines(path))
                    {
                        if (line.StartsWith("RssAnon:", StringComparison.Ordinal))
                            PeakAnon = Math.Max(PeakAnon, Kilobytes(line));
                        else if (line.StartsWith("RssFile:", StringComparison.Ordinal))
                            PeakFile = Math.Max(PeakFile, Kilobytes(line));
                        else if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                            PeakHwm = Math.Max(PeakHwm, Kilobytes(line));
                    }
                }
                catch (IOException) { } // the child is gone (or not yet exec'd); wait4 decides when to stop
                Thread.Sleep(SampleMilliseconds);
            }
        }
    }

    /// <summary>A "Key:\t  1234 kB" line of /proc/PID/status in bytes; the kernel pads to 8 digits, so a larger value
    /// follows the tab directly.</summary>
    private static long Kilobytes(string line) =>
        long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture)
        * 1024;

    /// <summary>
    /// CPU seconds every core has spent busy since boot (/proc/stat: user, nice, system, irq, softirq; USER_HZ = 100).
    /// </summary>
    private static double MachineBusySeconds()
    {
        var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        long Jiffies(int i) => long.Parse(fields[i], CultureInfo.InvariantCulture);
        return (Jiffies(1) + Jiffies(2) + Jiffies(3) + Jiffies(6) + Jiffies(7)) / 100.0;
    }

    private static long ReadStatus(string path, string key)
    {
        foreach (var line in File.ReadLines(path))
            if (line.StartsWith(key, StringComparison.Ordinal))
                return Kilobytes(line);
        return 0;
    }

    private static class Native
    {
        [StructLayout(LayoutKind.Sequential)]
        public struct TimeVal
        {
            public long Sec;
            public long MicroSec;

            public readonly double Seconds => Sec + MicroSec / 1e6;
        }

        /// <summary>
        /// struct rusage on 64-bit Linux: two timevals, then 14 longs, of which ru_maxrss (KiB) is the first.
        /// </summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct RUsage
        {
            public TimeVal UserTime;
            public TimeVal SystemTime;
            public long MaxRssKilobytes;
            private fixed long _rest[13];
        }

        [DllImport("libc", SetLastError = true)]
        public static extern int posix_spawnp(
            int* pid,
            nint file,
            nint fileActions,
            nint attributes,
            nint* argv,
            nint* envp
        );

        [DllImport("libc")]
        public static extern int posix_spawn_file_actions_init(nint actions);

        [DllImport("libc")]
        public static extern int kill(int pid, int signal);

        [DllImport("libc")]
        public static extern int posix_spawn_file_actions_destroy(nint actions);

        [DllImport("libc")]
        public static extern int posix_spawn_file_actions_addopen(nint actions, int fd, nint path, int flags, int mode);

        [DllImport("libc")]
        public static extern int posix_spawn_file_actions_addchdir_np(nint actions, nint path);

        [DllImport("libc", SetLastError = true)]
        public static extern int wait4(int pid, int* status, int options, RUsage* usage);
    }
}
