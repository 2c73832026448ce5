using System.CommandLine;
using System.Globalization;
using Alloy.Adapters;

namespace Alloy.Cli;

/// <summary>
/// <c>alloy merge-adapters</c>: PEFT LoRA adapters of one base merged into one adapter with PEFT's combination types
/// (<c>add_weighted_adapter</c>), KnOTS or LoRA-LEGO.
/// </summary>
public static class MergeAdaptersCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var adapters = new Option<string[]>("--adapter")
        {
            Description = "An adapter folder, with its weight after a colon (default 1): DIR or DIR:0.5; repeatable.",
            Required = true,
            HelpName = "DIR[:WEIGHT]",
        };
        var type = new Option<string>("--combination-type")
        {
            Description =
                $"One of {string.Join(", ", Enum.GetValues<CombinationType>().Select(AdapterMerger.Name))} (PEFT's "
                + "meanings, and KnOTS and LoRA-LEGO: docs/adapters.md).",
            DefaultValueFactory = _ => "svd",
        };
        var density = new Option<double?>("--density")
        {
            Description =
                "With ties, dare_*, magnitude_prune and knots_ties / knots_dare_ties types: the fraction of each "
                + "tensor's entries kept.",
        };
        var signMethod = new Option<string>("--majority-sign-method")
        {
            Description = "With ties types: total (the sign of the sum) or frequency (of the sign count).",
            DefaultValueFactory = _ => "total",
        };
        var seed = new Option<ulong>("--seed") { Description = "Keys DARE's random drops and lora_lego's k-means++." };
        var output = new Option<string>("--out-path") { Description = "The adapter folder to write.", Required = true };
        var svdRank = new Option<int?>("--svd-rank")
        {
            Description =
                "The merged rank: with svd types the truncation (default: the largest input rank); with knots types "
                + "a truncation of the merged update (default: the joint basis's rank); with lora_lego the number of "
                + "clusters (default: the largest input rank).",
        };
        var svdClamp = new Option<double?>("--svd-clamp")
        {
            Description = "With svd: clamp the factors to this quantile of their values.",
        };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace a non-empty output folder." };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "No progress bar." };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Stack traces with errors." };
        var command = new Command(
            "merge-adapters",
            "Merge LoRA adapters of one base into one adapter with PEFT's combination types (add_weighted_adapter), "
                + "KnOTS (knots_*) or LoRA-LEGO (lora_lego)."
        )
        {
            adapters,
            type,
            output,
            svdRank,
            svdClamp,
            density,
            signMethod,
            seed,
            overwrite,
            quiet,
            verbose,
        };
        command.SetAction(parse => ErrorPolicy.Run(stderr, parse.GetValue(verbose), _ =>
            {
                string name = parse.GetValue(type)!;
                var types = Enum.GetValues<CombinationType>();
                var combination = types.FirstOrDefault(t => AdapterMerger.Name(t) == name);
                if (AdapterMerger.Name(combination) != name)
                    throw new AlloyException(
                        $"--combination-type: '{name}' is not one of "
                            + string.Join(", ", types.Select(AdapterMerger.Name))
                    );
                bool byCount = parse.GetValue(signMethod) switch
                {
                    "total" => false,
                    "frequency" => true,
                    var other => throw new AlloyException(
                        $"--majority-sign-method: '{other}' is not total or frequency"
                    ),
                };
                var modules = Progress.Run(!parse.GetValue(quiet), "modules", bar => AdapterMerger.Merge(
                        [.. (parse.GetValue(adapters) ?? []).Select(Input)],
                        parse.GetValue(output)!,
                        new AdapterMergeOptions
                        {
                            Type = combination,
                            SvdRank = parse.GetValue(svdRank),
                            SvdClamp = parse.GetValue(svdClamp),
                            Density = parse.GetValue(density),
                            SignByCount = byCount,
                            Seed = parse.GetValue(seed),
                        },
                        parse.GetValue(overwrite),
                        new Diagnostics { OnWarning = w => stderr.WriteLine($"warning: {w}") },
                        bar is null
                            ? null
                            : (done, total) => bar.Update(new ProgressUpdate("modules", done, total, "modules"))
                    ));
                stdout.WriteLine(
                    $"wrote a rank-{modules.Max(m => m.Rank)} adapter of {modules.Count} modules to "
                        + parse.GetValue(output)
                );
                return ExitCodes.Success;
            }));
        return command;
    }

    /// <summary>DIR or DIR:WEIGHT (a colon followed by a number; any other colon belongs to the path).</summary>
    private static (string Path, double Weight) Input(string text)
    {
        int colon = text.LastIndexOf(':');
        return
            colon > 0
            && double.TryParse(text[(colon + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out double weight)
            ? (text[..colon], weight)
            : (text, 1.0);
    }
}
