using System.Diagnostics;
using System.Text;
using Alloy.Bench.Shared;
using Alloy.Recipes;
using Alloy.Runtime;
using Alloy.Runtime.Models;

namespace Alloy.Bench;

/// <summary>
/// <c>alloy-bench remerge</c>: what a merge → evaluate loop (coefficient search, evolution) pays per candidate. The
/// recipe's models are opened and planned once (<see cref="MergeSession"/>); each candidate then gives the plan new
/// parameter values and merges into the same model in memory (<see cref="MergedModel.Refill"/>), against the naive loop
/// of writing every candidate to disk and loading it back. Results go to their own section of docs/performance.md.
/// </summary>
internal static class Remerge
{
    public const string Start = "<!-- remerge: written by `alloy-bench remerge`; the main benchmark keeps it -->";
    public const string End = "<!-- /remerge -->";

    private sealed record Row(
        string Models,
        string Method,
        double Open,
        double First,
        double Remerge,
        double RemergeCpu,
        double Disk,
        long PeakBytes
    );

    public static string Run(
        IReadOnlyList<(string Label, string Base, IReadOnlyList<string> FineTunes)> families,
        int repeat,
        string scratch,
        Action<string> log
    )
    {
        var rows = new List<Row>();
        foreach (var (label, baseModel, fineTunes) in families)
        {
            foreach (var method in new[] { "task_arithmetic", "ties" })
            {
                MergeRecipe Candidate(int k)
                {
                    var builder = new RecipeBuilder(method)
                        .BaseModel(baseModel)
                        .DType(Tensors.DType.BF16)
                        .Parameter("lambda", 0.8 + 0.05 * k);
                    for (int m = 0; m < fineTunes.Count; m++)
                        builder.Model(
                            fineTunes[m],
                            new()
                            {
                                ["weight"] = 0.3 + 0.1 * ((m + k) % 4),
                                ["density"] = method == "ties" ? 0.3 + 0.1 * (k % 3) : 1.0,
                            }
                        );
                    return builder.Build();
                }
                var clock = Stopwatch.StartNew();
                using var session = MergeSession.Open(Candidate(0));
                double open = clock.Elapsed.TotalSeconds;
                clock.Restart();
                var model = MergedModel.Create(session);
                double first = clock.Elapsed.TotalSeconds;
                var remerges = new List<(double Wall, double Cpu)>();
                for (int k = 1; k <= repeat; k++)
                    remerges.Add(
                        BenchClock.Timed(() =>
                        {
                            session.Reparameterize(Candidate(k));
                            MergedModel.Refill(session, model);
                        })
                    );
                var disk = new List<double>();
                for (int k = 1; k <= Math.Min(repeat, 3); k++)
                {
                    string folder = Path.Combine(scratch, "remerge-candidate");
                    if (Directory.Exists(folder))
                        Directory.Delete(folder, recursive: true);
                    disk.Add(
                        BenchClock
                            .Timed(() =>
                            {
                                Merger.Run(
                                    Candidate(k),
                                    folder,
                                    new MergeOptions { WriteModelCard = false },
                                    Diagnostics.Silent()
                                );
                                LlamaModel.Load(folder);
                            })
                            .Wall
                    );
                    Directory.Delete(folder, recursive: true);
                }
                var median = remerges.OrderBy(r => r.Wall).ElementAt(remerges.Count / 2);
                var row = new Row(
                    label,
                    method,
                    open,
                    first,
                    median.Wall,
                    median.Cpu,
                    disk.Order().ElementAt(disk.Count / 2),
                    Process.GetCurrentProcess().PeakWorkingSet64
                );
                log(
                    Format.F($"{label} {method}: open {row.Open:F3} s, first merge {row.First:F3} s, re-merge ")
                        + Format.F($"{row.Remerge:F3} s (CPU {row.RemergeCpu:F2} s), to disk and back {row.Disk:F3} s")
                );
                rows.Add(row);
                model = null;
                GC.Collect();
            }
        }
        return Section(rows, repeat);
    }

    private static string Section(IReadOnlyList<Row> rows, int repeat)
    {
        var md = new StringBuilder();
        md.Append(Start).Append('\n');
        md.Append("## Re-merging in memory\n\n");
        md.Append(
            "What a merge → evaluate loop (a coefficient sweep, evolutionary search, AdaMerging) pays per candidate, "
                + "measured by\n"
        );
        md.Append(
            "`dotnet run -c Release --project bench/Alloy.Bench -- remerge --params 0.25B`. A `MergeSession` opens the "
                + "models\n"
        );
        md.Append(
            "(headers only) and plans once; each candidate then gives the plan new parameter values (`Reparameterize`: "
                + "every\n"
        );
        md.Append(
            "weight, density and λ changes, nothing is read from disk) and merges into the same float32 model in "
                + "memory\n"
        );
        md.Append(
            "(`MergedModel.Refill`, bf16 output as a folder would store it). The last column is the naive loop: write "
                + "the candidate\n"
        );
        md.Append(
            "as a model folder and load it back. 3 fine-tunes and a base, all cores, inputs in the page cache; "
                + "re-merge is the\n"
        );
        md.Append(Format.F($"median of {repeat} candidates, to disk the median of up to 3.\n\n"));
        md.Append(Format.F($"Measured {DateTime.Now:yyyy-MM-dd HH:mm zzz} on {Environment.ProcessorCount} cores.\n\n"));
        md.Append(
            "| models | method | open + plan | first merge into memory | re-merge (wall / CPU) | to disk and back | "
                + "peak working set |\n"
        );
        md.Append("|---|---|---:|---:|---:|---:|---:|\n");
        foreach (var r in rows)
            md.Append(
                Format.F($"| {r.Models} | {r.Method} | {Format.Seconds3(r.Open)} | {Format.Seconds3(r.First)} | ")
                    + Format.F(
                        $"{Format.Seconds3(r.Remerge)} / {Format.Seconds3(r.RemergeCpu)} | {Format.Seconds3(r.Disk)} "
                    )
                    + Format.F($"| {Format.Bytes(r.PeakBytes)} |\n")
            );
        md.Append(End).Append('\n');
        return md.ToString();
    }

    /// <summary>The re-merge section of an existing document, if it has one.</summary>
    public static string? SectionOf(string? document)
    {
        if (document is null)
            return null;
        int start = document.IndexOf(Start, StringComparison.Ordinal),
            end = document.IndexOf(End, StringComparison.Ordinal);
        return start >= 0 && end > start ? document[start..(end + End.Length)] + "\n" : null;
    }

    /// <summary>
    /// <paramref name="document"/> with its re-merge section replaced by <paramref name="section"/> (appended when it
    /// has none).
    /// </summary>
    public static string WithSection(string document, string section)
    {
        if (SectionOf(document) is { } old)
            return document.Replace(old, section);
        return document.TrimEnd() + "\n\n" + section;
    }
}
