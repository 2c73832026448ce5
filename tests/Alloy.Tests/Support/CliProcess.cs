using System.Diagnostics;

namespace Alloy.Tests.Support;

/// <summary>
/// The alloy command as a process of its own (the built Alloy.Cli.dll under dotnet), for what an in-process run cannot
/// show: signals, kill -9, limits of the file system. Output is collected as it comes.
/// </summary>
public sealed class CliProcess : IDisposable
{
    private readonly Process _process;
    private readonly System.Text.StringBuilder _stdout = new(),
        _stderr = new();

    private CliProcess(Process process)
    {
        _process = process;
        _process.OutputDataReceived += (_, e) => Append(_stdout, e.Data);
        _process.ErrorDataReceived += (_, e) => Append(_stderr, e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>What runs alloy: the dotnet host and the CLI assembly built beside the tests.</summary>
    public static string[] Command =>
        [
            Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet",
            System.IO.Path.Combine(AppContext.BaseDirectory, "Alloy.Cli.dll"),
        ];

    /// <summary>Starts <c>alloy ARGS</c>, or <paramref name="wrapper"/> followed by it (e.g. a shell).</summary>
    public static CliProcess Start(IEnumerable<string> args, IEnumerable<string>? wrapper = null)
    {
        var line = (wrapper ?? []).Concat(Command).Concat(args).ToList();
        var start = new ProcessStartInfo(line[0], line.Skip(1))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        return new CliProcess(Process.Start(start)!);
    }

    public int Id => _process.Id;

    public string Stdout
    {
        get
        {
            lock (_stdout)
                return _stdout.ToString();
        }
    }

    public string Stderr
    {
        get
        {
            lock (_stderr)
                return _stderr.ToString();
        }
    }

    /// <summary>Sends a signal (15 for SIGTERM, 2 for SIGINT) with the C library's kill, as kill(1) would.</summary>
    public void Signal(int signal) => Assert.Equal(0, SendSignal(Id, signal));

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int SendSignal(int pid, int signal);

    /// <summary>kill -9: the process ends at once, with no chance to clean up.</summary>
    public void Kill() => _process.Kill();

    /// <summary>Waits for the exit (failing after <paramref name="seconds"/>) and returns the exit code.</summary>
    public int WaitForExit(int seconds = 120)
    {
        if (!_process.WaitForExit(TimeSpan.FromSeconds(seconds)))
        {
            _process.Kill(entireProcessTree: true);
            Assert.Fail($"alloy did not end within {seconds} s; stderr: {Stderr}");
        }
        _process.WaitForExit(); // lets the output handlers finish
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited)
            _process.Kill(entireProcessTree: true);
        _process.Dispose();
    }

    private static void Append(System.Text.StringBuilder text, string? line)
    {
        if (line is null)
            return;
        lock (text)
            text.Append(line).Append('\n');
    }
}
