using Alloy.Execution;
using Spectre.Console;

namespace Alloy.Cli;

/// <summary>A progress bar on the terminal; nothing when stderr is redirected or with --quiet.</summary>
public static class Progress
{
    /// <summary>Whether a bar can be drawn: stderr is a terminal.</summary>
    public static bool IsTerminal => !Console.IsErrorRedirected;

    /// <summary>A merge's bar: tensors, bytes, rate, ETA.</summary>
    public static T Run<T>(bool show, Func<Action<MergeProgress>?, T> work) =>
        Track(show, "planning", bytes: true, update => work(update is null ? null
            : p => update(p.BytesDone, p.BytesTotal, $"tensors {p.TensorsDone}/{p.TensorsTotal}")));

    /// <summary>
    /// A bar over <paramref name="total"/> steps (training, statistics) whose description the work updates with each
    /// step (done, description).
    /// </summary>
    public static T RunSteps<T>(bool show, long total, Func<Action<long, string>?, T> work) =>
        Track(show, "starting", bytes: false, update => work(update is null ? null : (done, description) => update(done, total, description)));

    /// <summary>
    /// A bar that <paramref name="work"/> moves with update(done, total, description); with <paramref name="bytes"/>
    /// the counts are shown as bytes with a transfer rate, else with the elapsed time. The update is null when nothing
    /// is shown (<paramref name="show"/> false or stderr redirected).
    /// </summary>
    public static T Track<T>(bool show, string description, bool bytes, Func<Action<long, long, string>?, T> work)
    {
        if (!show || !IsTerminal) return work(null);
        ProgressColumn[] columns = bytes
            ? [new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn()]
            : [new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn()];
        T result = default!;
        CreateConsole().Progress()
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

    private static IAnsiConsole CreateConsole() => AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    public static string FormatBytes(long bytes) => Checkpoints.ByteSize.Format(bytes);
}
