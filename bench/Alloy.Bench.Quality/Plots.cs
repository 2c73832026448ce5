using ScottPlot;

namespace Alloy.Bench.Quality;

/// <summary>The figures of docs/quality.md, drawn with ScottPlot.</summary>
public static class Plots
{
    /// <param name="Color">An index into the palette (default: the series' own index).</param>
    /// <param name="Pattern">The line's pattern (default solid), to tell variants of one color apart.</param>
    public sealed record Series(
        string Label,
        IReadOnlyList<double> X,
        IReadOnlyList<double> Y,
        int? Color = null,
        LinePattern? Pattern = null
    );

    /// <summary>
    /// Lines with markers, one per series, y times <paramref name="yScale"/> (100: shares shown as percentages), from 0
    /// to <paramref name="yMax"/>.
    /// </summary>
    public static void Lines(
        string path,
        string title,
        string xLabel,
        string yLabel,
        IReadOnlyList<Series> series,
        IReadOnlyList<(string Label, double Y)>? references = null,
        double yMax = 110,
        double yScale = 100,
        ScottPlot.Alignment legend = ScottPlot.Alignment.LowerLeft
    )
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        for (int s = 0; s < series.Count; s++)
        {
            var line = plot.Add.Scatter(series[s].X.ToArray(), series[s].Y.Select(y => yScale * y).ToArray());
            line.LegendText = series[s].Label;
            line.Color = palette.GetColor(series[s].Color ?? s);
            line.LinePattern = series[s].Pattern ?? LinePattern.Solid;
            line.LineWidth = 2;
            line.MarkerSize = 6;
        }
        foreach (var (label, y) in references ?? [])
        {
            var reference = plot.Add.HorizontalLine(yScale * y);
            reference.LegendText = label;
            reference.LinePattern = LinePattern.Dashed;
            reference.Color = Colors.Gray;
        }
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        plot.Axes.SetLimitsY(0, yMax);
        plot.ShowLegend(legend);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        plot.SavePng(path, 720, 440);
    }

    /// <summary>Grouped bars: one group per category, one bar per series, y as a percentage.</summary>
    public static void Bars(
        string path,
        string title,
        string yLabel,
        IReadOnlyList<string> categories,
        IReadOnlyList<(string Label, IReadOnlyList<double> Values)> series
    )
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        double width = 0.8 / series.Count;
        for (int s = 0; s < series.Count; s++)
        {
            var bars = series[s]
                .Values.Select(
                    (v, c) =>
                        new Bar
                        {
                            Position = c + (s - (series.Count - 1) / 2.0) * width,
                            Value = 100 * (double.IsNaN(v) ? 0 : v),
                            Size = width * 0.95,
                            FillColor = palette.GetColor(s),
                        }
                )
                .ToList();
            plot.Add.Bars(bars).LegendText = series[s].Label;
        }
        plot.Axes.Bottom.SetTicks([.. Enumerable.Range(0, categories.Count).Select(c => (double)c)], [.. categories]);
        plot.Axes.Bottom.TickLabelStyle.Rotation = -35;
        plot.Axes.Bottom.TickLabelStyle.Alignment = ScottPlot.Alignment.MiddleRight;
        plot.Axes.Bottom.MinimumSize = 110;
        plot.Title(title);
        plot.YLabel(yLabel);
        plot.Axes.SetLimitsY(0, 110);
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        plot.SavePng(path, 900, 460);
    }
}
