using Alloy.Execution;
using Spectre.Console;

namespace Alloy.Cli;

/// <summary>A progress bar on the terminal; nothing when stderr is redirected or with --quiet.</summary>
public static class Progress
{
    /// <summary>A merge's bar: tensors, bytes, rate, ETA.</summary>
    public static T Run<T>(bool show, Func<Action<MergeProgress>?, T> work) =>
        Track(show, "planning", bytes: true, update => work(update is null ? null
            : p => update(p.BytesDone, p.BytesTotal, $"tensors {p.TensorsDone}/{p.TensorsTotal}")));

    /// <summary>
    /// A bar that <paramref name="work"/> moves with update(done, total, description); with <paramref name="bytes"/>
    /// the counts are shown as bytes with a transfer rate. The update is null when nothing is shown.
    /// </summary>
    public static T Track<T>(bool show, string description, bool bytes, Func<Action<long, long, string>?, T> work)
    {
        if (!show || Console.IsErrorRedirected) return work(null);
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        ProgressColumn[] columns = bytes
            ? [new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn()]
            : [new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn()];
        T result = default!;
        console.Progress()
            .AutoClear(true)
            .Columns(columns)
            .Start(context =>
            {
                var task = context.AddTask(description, maxValue: 1);
                result = work((done, total, text) =>
                {
                    task.MaxValue = Math.Max(1, total);
                    task.Value = done;
                    task.Description = text;
                });
                task.Value = task.MaxValue;
            });
        return result;
    }

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
