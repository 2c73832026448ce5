using System.Globalization;
using System.Text.Json;
using Alloy.Runtime.Training;
using ScottPlot;

namespace Alloy.Cli;

/// <summary>
/// A training run's record in its output folder: <c>metrics.jsonl</c>, one JSON object per step (and one for the
/// validation loss before the first step), flushed as it goes; and <c>loss.png</c>, the loss curves, drawn at the end.
/// </summary>
public sealed class TrainingLog : IDisposable
{
    public const string MetricsFile = "metrics.jsonl",
        ChartFile = "loss.png";

    private readonly StreamWriter _metrics;
    private readonly List<(int Step, double Loss)> _training = [];
    private readonly List<(int Step, double Loss)> _validation = [];

    public TrainingLog(string folder) =>
        _metrics = new StreamWriter(Path.Combine(folder, MetricsFile)) { AutoFlush = true };

    /// <summary>The validation loss of the model as it is before training (step 0).</summary>
    public void Start(double validationLoss)
    {
        _validation.Add((0, validationLoss));
        Write(new Dictionary<string, object> { ["step"] = 0, ["validation_loss"] = validationLoss });
    }

    public void Step(TrainingStepResult step, double tokensPerSecond, double elapsedSeconds, double? validationLoss)
    {
        _training.Add((step.Step, step.Loss));
        var entry = new Dictionary<string, object>
        {
            ["step"] = step.Step,
            ["epoch"] = step.Epoch + 1,
            ["loss"] = step.Loss,
            ["learning_rate"] = step.LearningRate,
            ["grad_norm"] = step.GradientNorm,
            ["tokens"] = step.Tokens,
            ["tokens_per_second"] = Math.Round(tokensPerSecond, 1),
            ["elapsed_seconds"] = Math.Round(elapsedSeconds, 3),
        };
        if (validationLoss is { } v)
        {
            _validation.Add((step.Step, v));
            entry["validation_loss"] = v;
        }
        Write(entry);
    }

    private void Write(Dictionary<string, object> entry) => _metrics.WriteLine(JsonSerializer.Serialize(entry));

    /// <summary>
    /// Draws training loss per step (faint), its moving average over about a twentieth of the run, and the validation
    /// loss when there is one, into <paramref name="path"/>.
    /// </summary>
    public void DrawChart(string path)
    {
        var plot = new Plot();
        double[] steps = [.. _training.Select(t => (double)t.Step)];
        double[] losses = [.. _training.Select(t => t.Loss)];
        var raw = plot.Add.ScatterLine(steps, losses);
        raw.LegendText = "training loss";
        raw.Color = Colors.SteelBlue.WithAlpha(0.35);
        int window = Math.Max(1, losses.Length / 20);
        if (window > 1)
        {
            var average = plot.Add.ScatterLine(steps, MovingAverage(losses, window));
            average.LegendText = string.Create(CultureInfo.InvariantCulture, $"training loss, mean of {window} steps");
            average.Color = Colors.SteelBlue;
            average.LineWidth = 2;
        }
        if (_validation.Count > 0)
        {
            double[] at = [.. _validation.Select(v => (double)v.Step)],
                values = [.. _validation.Select(v => v.Loss)];
            var validation = plot.Add.Scatter(at, values);
            validation.LegendText = "validation loss";
            validation.Color = Colors.OrangeRed;
            validation.LineWidth = 2;
            validation.MarkerSize = 7;
        }
        plot.Title("Training");
        plot.XLabel("step");
        plot.YLabel("loss (nats per token)");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        plot.SavePng(path, 800, 450);
    }

    /// <summary>The mean of each value and up to <paramref name="window"/> − 1 before it.</summary>
    private static double[] MovingAverage(double[] values, int window)
    {
        var result = new double[values.Length];
        double sum = 0;
        for (int i = 0; i < values.Length; i++)
        {
            sum += values[i];
            if (i >= window)
                sum -= values[i - window];
            result[i] = sum / Math.Min(i + 1, window);
        }
        return result;
    }

    public void Dispose() => _metrics.Dispose();
}
