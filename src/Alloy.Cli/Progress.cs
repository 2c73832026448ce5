using System.Globalization;
using Alloy.Checkpoints;
using Alloy.Execution;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace Alloy.Cli;

/// <summary>
/// Where a long-running command is: its phase ("merging", "perplexity", "statistics pass 2/3"), how far into it
/// (<see cref="Done"/> of <see cref="Total"/> <see cref="Unit"/>; no total: a phase of unknown length), and a detail
/// ("12/39 tensors", "loss 2.31").
/// </summary>
public readonly record struct ProgressUpdate(
    string Phase,
    double Done = 0,
    double Total = 0,
    string Unit = "",
    string Detail = ""
)
{
    /// <summary>The unit of byte counts, shown as KiB/MiB/GiB.</summary>
    public const string Bytes = "bytes";
}

/// <summary>
/// One progress line on stderr, redrawn in place and never wider than the terminal: phase, bar, percentage, counts,
/// rate, detail and time left, dropping the least useful parts first when the terminal is narrow. Each phase gets its
/// own rate and time estimate. Nothing is drawn when stderr is not a terminal or with --quiet.
/// </summary>
public static class Progress
{
    /// <summary>Whether a bar can be drawn: stderr is a terminal.</summary>
    public static bool IsTerminal => !Console.IsErrorRedirected;

    /// <summary>
    /// Runs <paramref name="work"/> under a bar that starts in <paramref name="firstPhase"/>; the bar is null when
    /// nothing is shown, so callers can skip composing details.
    /// </summary>
    public static T Run<T>(bool show, string firstPhase, Func<ProgressBar?, T> work)
    {
        if (!show || !IsTerminal)
            return work(null);
        T result = default!;
        // Interactive: Spectre judges by stdout, but the bar is on stderr, which is a terminal here.
        var console = AnsiConsole.Create(
            new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error), Interactive = InteractionSupport.Yes }
        );
        console
            .Progress()
            .AutoClear(true)
            .HideCompleted(true)
            .ExcludeVerticalPadding(true)
            .Columns(new LineColumn())
            .Start(context =>
            {
                var bar = new ProgressBar(console, context, firstPhase);
                result = work(bar);
                bar.Stop();
            });
        return result;
    }

    /// <summary>A merge's bar: statistics passes, then bytes written with the tensors done as the detail.</summary>
    public static Action<MergeProgress>? ForMerge(ProgressBar? bar, string prefix = "") =>
        bar is null
            ? null
            : p =>
                bar.Update(
                    new ProgressUpdate(
                        prefix + p.Phase,
                        p.BytesDone,
                        p.BytesTotal,
                        ProgressUpdate.Bytes,
                        $"{p.TensorsDone}/{p.TensorsTotal} tensors"
                    )
                );

    public static string FormatBytes(long bytes) => ByteSize.Format(bytes);

    /// <summary>
    /// The line for <paramref name="update"/> in at most <paramref name="width"/> columns. Parts are dropped in this
    /// order until it fits: rate, the detail's parts (separated by two spaces) from the last, bar; then the rest is
    /// cut.
    /// </summary>
    public static string Line(
        ProgressUpdate update,
        double? perSecond,
        TimeSpan? remaining,
        TimeSpan elapsed,
        int width,
        bool unicode = true
    )
    {
        const int MinBar = 10,
            MaxBar = 30;
        bool known = update.Total > 0;
        string percent = known ? $"{Math.Min(100, 100 * update.Done / update.Total), 3:F0}%" : "";
        string counts = known ? Counts(update) : "";
        // Rates and estimates from the first moments of a phase are noise.
        bool settled = elapsed >= TimeSpan.FromSeconds(1);
        string rate = perSecond is > 0 && known && settled ? Rate(perSecond.Value, update.Unit) : "";
        string time = known && settled && remaining is { } left ? $"{Clock(left)} left" : Clock(elapsed);
        var detail = update
            .Detail.Split("  ", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .ToList();
        while (true)
        {
            string text = string.Join(
                "  ",
                new[] { percent, counts }.Concat(detail).Append(rate).Append(time).Where(p => p.Length > 0)
            );
            int room = width - update.Phase.Length - text.Length - 4;
            if (room >= MinBar)
            {
                string bar = known
                    ? Bar(update.Done / update.Total, Math.Min(room, MaxBar), unicode)
                    : Spinner(elapsed, unicode).PadRight(Math.Min(room, MaxBar));
                return $"{update.Phase}  {bar}  {text}";
            }
            if (rate.Length > 0)
                rate = "";
            else if (detail.Count > 0)
                detail.RemoveAt(detail.Count - 1);
            else
                return Fit($"{update.Phase}  {text}", width);
        }
    }

    private static string Counts(ProgressUpdate u) =>
        u.Unit == ProgressUpdate.Bytes
            ? $"{ByteSize.Format((long)u.Done)}/{ByteSize.Format((long)u.Total)}"
            : string.Create(CultureInfo.InvariantCulture, $"{u.Done:N0}/{u.Total:N0} {u.Unit}").TrimEnd();

    private static string Rate(double perSecond, string unit) =>
        unit == ProgressUpdate.Bytes
            ? $"{ByteSize.Format((long)perSecond)}/s"
            : $"{perSecond.ToString(perSecond >= 100 ? "N0" : "G3", CultureInfo.InvariantCulture)} {unit}/s";

    private static string Clock(TimeSpan t) =>
        t.TotalHours >= 1 ? $"{(int)t.TotalHours}:{t.Minutes:00}:{t.Seconds:00}" : $"{t.Minutes}:{t.Seconds:00}";

    private static string Bar(double fraction, int width, bool unicode)
    {
        int filled = (int)Math.Round(Math.Clamp(fraction, 0, 1) * width);
        return new string(unicode ? '━' : '#', filled) + new string(unicode ? '─' : '-', width - filled);
    }

    private static string Spinner(TimeSpan elapsed, bool unicode)
    {
        string frames = unicode ? "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏" : @"|/-\";
        return frames[(int)(elapsed.TotalMilliseconds / 100) % frames.Length].ToString();
    }

    private static string Fit(string text, int width) =>
        text.Length <= width ? text : text[..Math.Max(0, width - 1)] + "…";

    /// <summary>Spectre draws the task list; this column is the whole line, so its width is the terminal's, minus one
    /// column, which some terminals wrap on.</summary>
    private sealed class LineColumn : ProgressColumn
    {
        protected override bool NoWrap => true;

        public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime)
        {
            var update = (ProgressUpdate)task.Tag!;
            var line = Line(
                update,
                task.Speed,
                task.RemainingTime,
                task.ElapsedTime ?? TimeSpan.Zero,
                options.ConsoleSize.Width - 1,
                options.Unicode
            );
            return new Text(line);
        }
    }
}

/// <summary>The bar of a running command; updates and notes may come from any thread.</summary>
public sealed class ProgressBar
{
    private readonly IAnsiConsole _console;
    private readonly ProgressContext _context;
    private readonly object _gate = new();
    private ProgressTask _task;

    internal ProgressBar(IAnsiConsole console, ProgressContext context, string firstPhase)
    {
        _console = console;
        _context = context;
        _task = Begin(new ProgressUpdate(firstPhase));
    }

    /// <summary>Moves the bar; a new phase starts a new bar, with its own rate and time estimate.</summary>
    public void Update(ProgressUpdate update)
    {
        lock (_gate)
        {
            if (((ProgressUpdate)_task.Tag!).Phase != update.Phase)
            {
                _task.StopTask();
                _task = Begin(update);
            }
            _task.Tag = update;
            _task.MaxValue = Math.Max(update.Total, 1);
            _task.IsIndeterminate = update.Total <= 0;
            _task.Value = Math.Min(update.Done, _task.MaxValue);
        }
    }

    /// <summary>A line printed above the bar, which is redrawn below it.</summary>
    public void Note(string line)
    {
        lock (_gate)
            _console.Write(new Text(line + "\n"));
    }

    internal void Stop()
    {
        lock (_gate)
            _task.StopTask();
    }

    private ProgressTask Begin(ProgressUpdate update)
    {
        var task = _context.AddTask(update.Phase, maxValue: Math.Max(update.Total, 1));
        task.Tag = update;
        task.IsIndeterminate = update.Total <= 0;
        return task;
    }
}
