using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace Alloy.Bench.Quality;

/// <summary>
/// docs/quality.md: what the benchmark measured, as tables, figures and the orderings of the literature.
/// </summary>
public static class Report
{
    public const string AnalysisStart = "<!-- analysis: written by hand; the benchmark keeps it -->";
    public const string AnalysisEnd = "<!-- /analysis -->";

    public sealed record Inputs(
        string Command,
        ExpertSet Experts,
        double[] Base,
        IReadOnlyList<double[]> ExpertScores,
        IReadOnlyList<double[]> Norms,
        double[][] Cosines,
        IReadOnlyList<MethodResult> Results,
        double[] EmrTaskModels,
        IReadOnlyList<IReadOnlyList<int>> Pairs,
        IReadOnlyDictionary<string, List<MethodResult>> PairResults,
        IReadOnlyList<(int Size, double TaskArithmetic, double Ties)> BySize,
        IReadOnlyList<double> Drops,
        IReadOnlyList<List<double>> DareCurves,
        IReadOnlyList<double> Scales,
        IReadOnlyList<List<double>> ScaleCurves,
        Scorer Scorer,
        TimeSpan Elapsed,
        bool Quick,
        LoraInputs? Lora
    );

    /// <summary>
    /// The LoRA experts: each alone (base+adapter) on every task, merged as task vectors in the full weight space, and
    /// merged as adapters.
    /// </summary>
    public sealed record LoraInputs(
        IReadOnlyList<double[]> ExpertScores,
        IReadOnlyList<MethodResult> Full,
        IReadOnlyList<MethodResult> Adapters
    );

    private static string P(double value) =>
        double.IsNaN(value) ? "–" : (100 * value).ToString("F1", CultureInfo.InvariantCulture);

    private static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    public static string Document(Inputs r)
    {
        var tasks = r.Experts.Tasks;
        int n = tasks.Count;
        var all = Enumerable.Range(0, n).ToList();
        var own = Enumerable.Range(0, n).Select(t => r.ExpertScores[t][t]).ToArray();
        double Normalized(double[] scores, IReadOnlyList<int> subset) => subset.Average(t => scores[t] / own[t]);
        double Average(double[] scores, IReadOnlyList<int> subset) => subset.Average(t => scores[t]);
        var md = new StringBuilder();
        md.Append("# Merge quality on the tiny experts\n\n");
        md.Append(
            "This file is written by the benchmark in `bench/Alloy.Bench.Quality`; rerun it to refresh every figure "
                + "(it keeps the\n"
        );
        md.Append("hand-written analysis at the end):\n\n```sh\n").Append(r.Command).Append("\n```\n\n");
        md.Append(
            F($"Measured {DateTime.Now:yyyy-MM-dd HH:mm zzz} on {Machine()}; the whole run took ")
                + F($"{r.Elapsed.TotalMinutes:F1} min, ")
        );
        md.Append(
            F($"{r.Scorer.Evaluations} evaluations ({r.Scorer.Seconds / 60:F1} min of them scoring; merges run in ")
                + F($"memory, see [library.md](library.md#merges-in-memory)).")
        );
        if (r.Quick)
            md.Append(" **Quick run: small grids, for checking the benchmark, not for reading.**");
        md.Append("\n\n");

        md.Append("## The experts\n\n");
        md.Append(
            F($"`examples/experts/` ([its README](../examples/experts/README.md)): one base and {n} experts ")
                + F($"fine-tuned from it, each on one skill. ")
        );
        md.Append(
            "Every score is exact match of greedy generation on the task's test items (validation items choose "
                + "coefficients).\n\n"
        );
        md.Append("| model | ")
            .Append(string.Join(" | ", tasks.Select(t => $"`{t.Name}`")))
            .Append(" | average |\n|---|")
            .Append(string.Concat(Enumerable.Repeat("---:|", n + 1)))
            .Append('\n');
        md.Append("| base | ").Append(string.Join(" | ", r.Base.Select(P))).Append($" | {P(Average(r.Base, all))} |\n");
        for (int e = 0; e < n; e++)
        {
            md.Append($"| expert `{tasks[e].Name}` | ")
                .Append(string.Join(" | ", r.ExpertScores[e].Select((s, t) => t == e ? $"**{P(s)}**" : P(s))));
            md.Append($" | {P(Average(r.ExpertScores[e], all))} |\n");
        }
        md.Append(
            "\nHow far each expert moved from the base, ‖θ_expert − θ_base‖ / ‖θ_base‖ per kind of layer (the "
                + "literature's fine-tunes\n"
        );
        md.Append(
            "move about 1 %; the naive experts first tried here moved 15–33 % in the blocks and 97 % in the head, and "
                + "did not merge):\n\n"
        );
        md.Append("| expert | ")
            .Append(string.Join(" | ", Norms.Kinds))
            .Append(" |\n|---|")
            .Append(string.Concat(Enumerable.Repeat("---:|", Norms.Kinds.Length)))
            .Append('\n');
        for (int e = 0; e < n; e++)
            md.Append($"| `{tasks[e].Name}` | ")
                .Append(string.Join(" | ", r.Norms[e].Select(v => double.IsNaN(v) ? "–" : F($"{100 * v:F2} %"))))
                .Append(" |\n");
        md.Append(
            "\nThe cosine between two experts' whole task vectors (0: orthogonal, so adding them disturbs neither):\n\n"
        );
        md.Append("| | ").Append(string.Join(" | ", tasks.Select(t => $"`{t.Name}`"))).Append(" |\n|---|");
        md.Append(string.Concat(Enumerable.Repeat("---:|", n))).Append('\n');
        for (int a = 0; a < n; a++)
            md.Append($"| `{tasks[a].Name}` | ")
                .Append(
                    string.Join(" | ", Enumerable.Range(0, n).Select(b => a == b ? "" : F($"{r.Cosines[a][b]:F2}")))
                )
                .Append(" |\n");

        md.Append("\n## All experts merged\n\n");
        md.Append(
            F($"Each method merges the base and all {n} experts; its coefficients are chosen on the validation items ")
                + F($"by the grid of the *grid* column ")
        );
        md.Append(
            "(the point with the best mean validation accuracy), then it is scored once on the test items. "
                + "*Normalised* is the mean over tasks of "
        );
        md.Append(
            "(merged accuracy ÷ the task's expert's accuracy): 100 means every skill survived intact. *grid edge* "
                + "marks a choice at "
        );
        md.Append(
            "the smallest or largest value the grid tries, where a wider grid might do better. *seconds* is the cost "
                + "of the whole search: "
        );
        md.Append(
            "every grid point merged in memory and scored on the validation items, then the choice on the test "
                + "items. For the methods that learn from data it includes what they compute first: Fisher and "
                + "RegMean(++) statistics from each expert's first 256 training examples, AdaMerging's coefficients "
                + "and the Concrete mask from the validation prompts without their answers.\n\n"
        );
        md.Append("| method | ")
            .Append(string.Join(" | ", tasks.Select(t => $"`{t.Name}`")))
            .Append(" | average | normalised | chosen on validation | grid | seconds |\n");
        md.Append("|---|").Append(string.Concat(Enumerable.Repeat("---:|", n + 2))).Append("---|---|---:|\n");
        md.Append("| *experts, each on its own task* | ")
            .Append(string.Join(" | ", own.Select(P)))
            .Append($" | {P(own.Average())} | 100.0 | | | |\n");
        md.Append("| *EMR task-specific models (upper line)* | ")
            .Append(string.Join(" | ", r.EmrTaskModels.Select(P)))
            .Append(
                $" | {P(Average(r.EmrTaskModels, all))} | {P(Normalized(r.EmrTaskModels, all))} | masks and rescalers "
                    + $"per task | | |\n"
            );
        foreach (var m in r.Results.OrderByDescending(m => Normalized(m.Test, all)))
        {
            md.Append($"| `{m.Method}` | ").Append(string.Join(" | ", m.Test.Select(P)));
            md.Append(
                $" | {P(Average(m.Test, all))} | {P(Normalized(m.Test, all))} | {m.ChosenShown} | {m.Points}: "
                    + $"{m.Source} | {m.Seconds:F1} |\n"
            );
        }
        md.Append("| *base* | ")
            .Append(string.Join(" | ", r.Base.Select(P)))
            .Append($" | {P(Average(r.Base, all))} | {P(Normalized(r.Base, all))} | | | |\n");
        md.Append("\n![Test accuracy per task of the best methods](quality/methods.png)\n\n");

        if (r.Lora is { } lora)
            LoraSection(md, r, lora);

        md.Append("## Two experts merged\n\n");
        md.Append(
            F($"Every pair of the {n} experts ({r.Pairs.Count} pairs), merged by the main methods and the two-model ")
                + F($"ones (slerp between the two ")
        );
        md.Append(
            "experts, NuSLERP of their task vectors); coefficients chosen on the pair's validation items. Normalised "
                + "accuracy over each pair's two tasks:\n\n"
        );
        md.Append("| method | mean over pairs | worst pair | pairs ≥ 80 % |\n|---|---:|---:|---:|\n");
        foreach (
            var (method, list) in r.PairResults.OrderByDescending(p =>
                p.Value.Select((m, i) => Normalized(m.Test, r.Pairs[i])).Average()
            )
        )
        {
            var values = list.Select((m, i) => Normalized(m.Test, r.Pairs[i])).ToList();
            md.Append(
                $"| `{method}` | {P(values.Average())} | {P(values.Min())} | {values.Count(v => v >= 0.8)} of "
                    + $"{values.Count} |\n"
            );
        }
        md.Append("\nThe best method for each pair:\n\n| pair | best method | normalised | ")
            .Append("per task |\n|---|---|---:|---|\n");
        for (int i = 0; i < r.Pairs.Count; i++)
        {
            var pair = r.Pairs[i];
            var (method, top) = r
                .PairResults.Select(p => (p.Key, p.Value[i]))
                .MaxBy(p => Normalized(p.Item2.Test, pair));
            md.Append(
                $"| `{tasks[pair[0]].Name}` + `{tasks[pair[1]].Name}` | `{method}` ({top.ChosenShown}) | "
                    + $"{P(Normalized(top.Test, pair))} | "
            );
            md.Append(string.Join(", ", pair.Select(t => $"{tasks[t].Name} {P(top.Test[t])} of {P(own[t])}")))
                .Append(" |\n");
        }

        md.Append("\n## Sweeps\n\n");
        md.Append("![Normalised accuracy against λ](quality/lambda.png)\n\n");
        md.Append(
            "Task arithmetic and TIES (at the density chosen above) on all experts, test accuracy at each λ of the "
                + "grid.\n\n"
        );
        md.Append("![DARE drop rate](quality/dare.png)\n\n");
        md.Append(
            "DARE on one expert at a time (`dare_linear` of the base and that expert alone, λ 1, L1 rescale): its "
                + "own-task accuracy as a share of the\n"
        );
        md.Append("expert's, against the share of its task vector dropped. ");
        md.Append(
                string.Join(
                    "; ",
                    Enumerable
                        .Range(0, n)
                        .Select(t => F($"`{tasks[t].Name}` {P(DareAt(r, t, 0.9))} % at {DareDrop(r, 0.9)}"))
                )
            )
            .Append(".\n\n");
        md.Append("![One expert scaled](quality/scale.png)\n\n");
        md.Append(
            "One expert at a time, base + λ·τ (`task_arithmetic` of the base and that expert alone): its own-task "
                + "accuracy as a share of the expert's. Averaging k experts gives each task vector λ = 1/k. "
        );
        md.Append(
            string.Join(
                "; ",
                Enumerable.Range(0, n).Select(t => F($"`{tasks[t].Name}` keeps ≥ 90 % at λ {ScaleRange(r, t)}"))
            )
        );
        double averaged = ScaleAt(r, 1.0 / n, out double at);
        md.Append(
            F($". At λ = 1/2 (a pair averaged) they keep {P(ScaleAt(r, 0.5))} % on average; ")
                + F($"at λ = {at} ({n} averaged), ")
        );
        md.Append(F($"{P(averaged)} %.\n\n"));
        md.Append("![Normalised accuracy against the number of experts](quality/experts.png)\n\n");
        md.Append("| experts merged | task arithmetic | TIES |\n|---:|---:|---:|\n");
        foreach (var s in r.BySize)
            md.Append($"| {s.Size} | {P(s.TaskArithmetic)} | {P(s.Ties)} |\n");
        md.Append("\nFor k experts: every pair at k = 2, all of them at k = ")
            .Append(n)
            .Append(", and otherwise the ")
            .Append(n)
            .Append(
                " runs of k consecutive tasks (in the table's order, wrapping around); coefficients chosen per "
                    + "subset.\n\n"
            );

        md.Append("## The literature's orderings on these experts\n\n");
        md.Append(
            "FusionBench's CLIP ViT-B/32 on eight tasks (average accuracy): individual experts 90.5, TSV-M ≈ 85, "
                + "Iso-CTS ≈ 86, TIES 72.9, task arithmetic\n"
        );
        md.Append(
            "69.1, weight averaging 65.8; EMR-Merging's task-specific models close to the experts. Whether each "
                + "ordering holds here:\n\n"
        );
        double Of(string method) => Normalized(r.Results.Single(m => m.Method == method).Test, all);
        var best = r.Results.MaxBy(m => Normalized(m.Test, all))!;
        void Claim(string claim, bool holds, string numbers) =>
            md.Append($"- {claim}: **{(holds ? "holds" : "does not hold")}** ({numbers}).\n");
        Claim(
            "Merging beats the base",
            Normalized(best.Test, all) > Normalized(r.Base, all),
            F($"best `{best.Method}` {P(Normalized(best.Test, all))} vs base {P(Normalized(r.Base, all))}")
        );
        Claim(
            "Weight averaging keeps most of the experts' accuracy (FusionBench: 65.8 of 90.5, 73 %)",
            Of("linear") >= 0.7,
            F($"{P(Of("linear"))}; one expert scaled to 1/{n}, as averaging scales it, keeps {P(ScaleAt(r, 1.0 / n))}")
        );
        Claim(
            "Task arithmetic beats weight averaging",
            Of("task_arithmetic") > Of("linear"),
            F($"{P(Of("task_arithmetic"))} vs {P(Of("linear"))}")
        );
        Claim(
            "TIES beats task arithmetic",
            Of("ties") > Of("task_arithmetic"),
            F($"{P(Of("ties"))} vs {P(Of("task_arithmetic"))}")
        );
        double svd = new[] { "tsv_m", "iso_c", "iso_cts" }.Max(Of);
        Claim(
            "The SVD methods (TSV-M, Iso-C, Iso-CTS) beat TIES and task arithmetic",
            svd > Math.Max(Of("ties"), Of("task_arithmetic")),
            F($"best of them {P(svd)} vs {P(Math.Max(Of("ties"), Of("task_arithmetic")))}")
        );
        Claim(
            "EMR's task-specific models come close to the experts (≥ 90 %)",
            Normalized(r.EmrTaskModels, all) >= 0.9,
            F($"{P(Normalized(r.EmrTaskModels, all))}")
        );
        Claim(
            "Merged models fall short of the experts",
            Normalized(best.Test, all) < 1,
            F($"best {P(Normalized(best.Test, all))}")
        );
        int dropAt = r.Drops.ToList().IndexOf(0.9);
        if (dropAt >= 0)
        {
            double meanAt90 = r.DareCurves.Average(c => c[dropAt]);
            Claim(
                "DARE: dropping 90 % of a task vector costs little (≥ 90 % kept)",
                meanAt90 >= 0.9,
                F($"{P(meanAt90)} of the experts' accuracy on average")
            );
        }
        md.Append('\n')
            .Append(AnalysisStart)
            .Append("\n## Analysis\n\n(Written by hand after a run.)\n")
            .Append(AnalysisEnd)
            .Append('\n');
        return md.ToString();
    }

    /// <summary>The new document with the hand-written analysis of the old one, if it had one.</summary>
    private static void LoraSection(StringBuilder md, Inputs r, LoraInputs lora)
    {
        var tasks = r.Experts.Tasks;
        int n = tasks.Count;
        var all = Enumerable.Range(0, n).ToList();
        var own = Enumerable.Range(0, n).Select(t => lora.ExpertScores[t][t]).ToArray();
        var fullOwn = Enumerable.Range(0, n).Select(t => r.ExpertScores[t][t]).ToArray();
        double Normalized(double[] scores, double[] by) => all.Average(t => scores[t] / by[t]);
        md.Append("## LoRA experts merged\n\n");
        md.Append(
            F($"The same {n} skills learnt as LoRA adapters of the same base (`examples/experts/models/lora-TASK`: ")
                + "rank 16, α 32, on every linear layer of the blocks, the base frozen; `alloy train --lora-rank`, "
                + "same data and steps as the experts). Each adapter applied to the base:\n\n"
        );
        md.Append("| model | ")
            .Append(string.Join(" | ", tasks.Select(t => $"`{t.Name}`")))
            .Append(" | average |\n|---|")
            .Append(string.Concat(Enumerable.Repeat("---:|", n + 1)))
            .Append('\n');
        for (int e = 0; e < n; e++)
        {
            md.Append($"| base + LoRA `{tasks[e].Name}` | ")
                .Append(string.Join(" | ", lora.ExpertScores[e].Select((s, t) => t == e ? $"**{P(s)}**" : P(s))));
            md.Append($" | {P(lora.ExpertScores[e].Average())} |\n");
        }
        md.Append(
            "\nAll five merged, coefficients chosen on the validation items as above. *Adapter* rows merge the "
                + "adapters into one adapter with `alloy merge-adapters` (PEFT's combination types, every adapter "
                + "weighted alike; the merged adapter's rank is in the *chosen* column) and score base + that "
                + "adapter; *full* rows merge the task vectors s·B·A of `base+adapter` references with the full-weight "
                + "methods. *Normalised* is against the LoRA experts; *full experts* is the same method's normalised "
                + "score on the fully fine-tuned experts (the table above), for comparison.\n\n"
        );
        md.Append("| method | space | ")
            .Append(string.Join(" | ", tasks.Select(t => $"`{t.Name}`")))
            .Append(" | average | normalised | full experts | chosen on validation | grid | seconds |\n");
        md.Append("|---|---|").Append(string.Concat(Enumerable.Repeat("---:|", n + 3))).Append("---|---|---:|\n");
        md.Append("| *LoRA experts, each on its own task* | | ")
            .Append(string.Join(" | ", own.Select(P)))
            .Append($" | {P(own.Average())} | 100.0 | | | | |\n");
        var rows = lora
            .Full.Select(m => (Space: "full", Result: m))
            .Concat(lora.Adapters.Select(m => (Space: "adapter", Result: m)))
            .OrderByDescending(x => Normalized(x.Result.Test, own));
        foreach (var (space, m) in rows)
        {
            var onFull = r.Results.FirstOrDefault(x => x.Method == m.Method && space == "full");
            md.Append($"| `{m.Method}` | {space} | ").Append(string.Join(" | ", m.Test.Select(P)));
            md.Append(
                $" | {P(m.Test.Average())} | {P(Normalized(m.Test, own))} | "
                    + $"{(onFull is null ? "" : P(Normalized(onFull.Test, fullOwn)))} | {m.ChosenShown} | "
                    + $"{m.Points}: {m.Source} | {m.Seconds:F1} |\n"
            );
        }
        md.Append('\n');
    }

    public static string KeepAnalysis(string? old, string document)
    {
        string? Section(string text)
        {
            int start = text.IndexOf(AnalysisStart, StringComparison.Ordinal),
                end = text.IndexOf(AnalysisEnd, StringComparison.Ordinal);
            return start >= 0 && end > start ? text[start..(end + AnalysisEnd.Length)] : null;
        }
        return old is not null && Section(old) is { } kept && Section(document) is { } fresh
            ? document.Replace(fresh, kept)
            : document;
    }

    private static string Machine()
    {
        string cpu = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo")
                .FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))
                ?.Split(':', 2)[1]
                .Trim()
                ?? "?"
            : "?";
        string runtime = RuntimeInformation.FrameworkDescription,
            backend = Alloy.LinearAlgebra.DenseBackend.Current.Name;
        return F($"{Environment.ProcessorCount} cores ({cpu}), {runtime}, GEMM backend {backend}");
    }

    /// <summary>The drop rate <paramref name="drop"/> if the sweep has it, else its last.</summary>
    private static double DareDrop(Inputs r, double drop) => r.Drops.Contains(drop) ? drop : r.Drops[^1];

    /// <summary>Task <paramref name="t"/>'s DARE curve at <see cref="DareDrop"/>.</summary>
    private static double DareAt(Inputs r, int t, double drop) =>
        r.DareCurves[t][r.Drops.ToList().IndexOf(DareDrop(r, drop))];

    /// <summary>The mean over experts of the scale sweep at the swept λ nearest <paramref name="lambda"/>.</summary>
    private static double ScaleAt(Inputs r, double lambda) => ScaleAt(r, lambda, out _);

    private static double ScaleAt(Inputs r, double lambda, out double nearest)
    {
        int i = r.Scales.Select((l, k) => (Distance: Math.Abs(l - lambda), k)).Min().k;
        nearest = r.Scales[i];
        return r.ScaleCurves.Average(c => c[i]);
    }

    /// <summary>The swept λ where expert <paramref name="t"/> keeps at least 90 % of its accuracy, as "a–b".</summary>
    private static string ScaleRange(Inputs r, int t)
    {
        var kept = r.Scales.Where((_, k) => r.ScaleCurves[t][k] >= 0.9).ToList();
        return kept.Count == 0 ? "none" : F($"{kept.Min()}–{kept.Max()}");
    }
}
