using Alloy.Execution;
using Spectre.Console;

namespace Alloy.Cli;

/// <summary>A progress bar on the terminal (tensors, bytes, rate, ETA); nothing when stderr is redirected or with --quiet.</summary>
public static class Progress
{
    /// <summary>Whether a bar can be drawn: stderr is a terminal.</summary>
    public static bool IsTerminal => !Console.IsErrorRedirected;

    public static T Run<T>(bool show, Func<Action<MergeProgress>?, T> work)
    {
        if (!show || !IsTerminal) return work(null);
        T result = default!;
        CreateConsole().Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(),
                new TransferSpeedColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask("planning", maxValue: 1);
                result = work(p =>
                {
                    task.MaxValue = Math.Max(1, p.BytesTotal);
                    task.Value = p.BytesDone;
                    task.Description = $"tensors {p.TensorsDone}/{p.TensorsTotal}";
                });
                task.Value = task.MaxValue;
            });
        return result;
    }

    /// <summary>
    /// A bar over <paramref name="total"/> steps (training, statistics) whose description the work updates with each
    /// step (done, description); nothing when stderr is redirected or <paramref name="show"/> is false.
    /// </summary>
    public static T RunSteps<T>(bool show, long total, Func<Action<long, string>?, T> work)
    {
        if (!show || !IsTerminal) return work(null);
        T result = default!;
        CreateConsole().Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask("starting", maxValue: Math.Max(1, total));
                result = work((done, description) =>
                {
                    task.Value = done;
                    task.Description = description;
                });
                task.Value = task.MaxValue;
            });
        return result;
    }

    private static IAnsiConsole CreateConsole() => AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    public static string FormatBytes(long bytes)
    {
        // Binary units, as the progress bar shows them.
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double value = bytes;
        int unit = 0;
        while (value >= 1024 && unit < units.Length - 1) { value /= 1024; unit++; }
        return unit == 0 ? $"{bytes} B" : $"{value:F1} {units[unit]}";
    }
}
