using System.Globalization;
using Alloy.Recipes;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;
using Alloy.Tensors;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Bench.Quality;

/// <summary>
/// Linear mode connectivity: the held-out loss along the straight line between two models, θ(λ) = (1 − λ)·θ_A + λ·θ_B
/// at 11 points, merged in memory; the barrier is max_λ L(θ(λ)) − ½·(L(θ_A) + L(θ_B)), as Git Re-Basin reports it.
/// </summary>
public static class ModeConnectivity
{
    public static readonly double[] Lambdas = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1];

    /// <summary>The mean completion loss (nats per scored token) at each λ.</summary>
    public static double[] Curve(string a, string b, IReadOnlyList<TrainingExample> heldOut)
    {
        MergeRecipe Recipe(double lambda) =>
            new RecipeBuilder("linear")
                .Model(a, new ParameterSettings { ["weight"] = 1 - lambda })
                .Model(b, new ParameterSettings { ["weight"] = lambda })
                .DType(DType.F32)
                .Build();
        using var session = MergeSession.Open(Recipe(0));
        LlamaModel? model = null;
        LossGradients? loss = null;
        var curve = new double[Lambdas.Length];
        for (int i = 0; i < Lambdas.Length; i++)
        {
            session.Reparameterize(Recipe(Lambdas[i]));
            if (model is null)
            {
                model = MergedModel.Create(session);
                loss = new LossGradients(model);
            }
            else
                MergedModel.Refill(session, model);
            var (sum, targets) = loss!.Loss(heldOut);
            curve[i] = sum / targets;
        }
        return curve;
    }

    public static double Height(IReadOnlyList<double> curve) => curve.Max() - (curve[0] + curve[^1]) / 2;

    /// <summary>The aligned copies compared with the naive line: folder suffix and label.</summary>
    private static readonly (string Suffix, string Label, ScottPlot.LinePattern Pattern)[] Alignments =
    [
        ("s2-weights", "weight matching", ScottPlot.LinePattern.Dashed),
        ("s2-activations", "activation matching", ScottPlot.LinePattern.Dotted),
    ];

    /// <summary>
    /// <c>barrier DIR HELDOUT.jsonl [FIGURE.png]</c>: for every width W with DIR/wW-s1 and wW-s2 (two models from
    /// different seeds) and the second aligned to the first (wW-s2-weights, wW-s2-activations), the loss curves of the
    /// naive and the aligned lines; prints Markdown and draws the figure.
    /// </summary>
    public static int Run(string[] args)
    {
        if (args.Length is < 2 or > 3)
            throw new ArgumentException("usage: barrier DIR HELDOUT.jsonl [FIGURE.png]");
        string folder = args[0];
        var widths = Directory
            .GetDirectories(folder, "w*-s2-weights")
            .Select(d => int.Parse(Path.GetFileName(d)[1..^"-s2-weights".Length], CultureInfo.InvariantCulture))
            .Order()
            .ToList();
        var series = new List<Plots.Series>();
        var table = new List<string>
        {
            "| hidden | parameters | L(A) | L(B) | barrier, naive | after weight matching | after activation "
                + "matching |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        };
        foreach (int width in widths)
        {
            string Model(string suffix) => Path.Combine(folder, $"w{width}-{suffix}");
            var tokenizer = TextTokenizer.Load(Model("s1"));
            var model = LlamaModel.Load(Model("s1"));
            var heldOut = TrainingData.Load(args[1], tokenizer, 256, model.Config.VocabSize);
            var naive = Curve(Model("s1"), Model("s2"), heldOut);
            var aligned = Alignments.Select(a => Curve(Model("s1"), Model(a.Suffix), heldOut)).ToList();
            string Relative(double[] curve) =>
                FormattableString.Invariant($"{Height(curve):F3} ({Height(curve) / Height(naive):P0})");
            table.Add(
                FormattableString.Invariant(
                    $"| {width} | {model.Parameters.ElementCount / 1e6:F2}M | {naive[0]:F3} | {naive[^1]:F3} | "
                )
                    + FormattableString.Invariant($"{Height(naive):F3} | ")
                    + string.Join(" | ", aligned.Select(Relative))
                    + " |"
            );
            static string Points(double[] curve) =>
                string.Join(" ", curve.Select(v => v.ToString("F3", CultureInfo.InvariantCulture)));
            Console.Error.WriteLine($"hidden {width}, naive: {Points(naive)}");
            for (int a = 0; a < Alignments.Length; a++)
                Console.Error.WriteLine($"hidden {width}, {Alignments[a].Label}: {Points(aligned[a])}");
            // One color per width; the naive line solid, the aligned ones dashed (weights) and dotted (activations).
            int index = widths.IndexOf(width);
            series.Add(new($"{width}, naive", Lambdas, naive, index));
            for (int a = 0; a < Alignments.Length; a++)
                series.Add(new($"{width}, {Alignments[a].Label}", Lambdas, aligned[a], index, Alignments[a].Pattern));
        }
        foreach (var line in table)
            Console.WriteLine(line);
        if (args.Length == 3)
            Plots.Lines(
                args[2],
                "Held-out loss between two models trained from different seeds",
                "λ (0: model A, 1: model B)",
                "loss (nats per token)",
                series,
                yMax: series.Max(s => s.Y.Max()) * 1.1,
                yScale: 1,
                legend: ScottPlot.Alignment.UpperRight
            );
        return 0;
    }
}
