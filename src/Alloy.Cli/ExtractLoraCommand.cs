using System.CommandLine;
using System.Globalization;
using Alloy.Adapters;

namespace Alloy.Cli;

/// <summary>
/// <c>alloy extract-lora</c>: mergekit-extract-lora's command and defaults — a fine-tune as a PEFT LoRA adapter of its
/// base — and a report of each module's rank, kept energy and error.
/// </summary>
public static class ExtractLoraCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = new Option<string>("--model") { Description = "The fine-tuned model folder.", Required = true };
        var baseModel = new Option<string>("--base-model")
        {
            Description = "The model it was fine-tuned from.",
            Required = true,
        };
        var output = new Option<string>("--out-path") { Description = "The adapter folder to write.", Required = true };
        var maxRank = new Option<int>("--max-rank")
        {
            Description = "Largest rank of a module's update.",
            DefaultValueFactory = _ => 128,
        };
        var noDistribute = new Option<bool>("--no-distribute-scale")
        {
            Description = "Put the singular values on lora_A only (A = S·Vᵀ, B = U) instead of √S on both.",
        };
        var distribute = new Option<bool>("--distribute-scale") { Description = "√S on both factors (the default)." };
        var saveModule = new Option<string[]>("--save-module")
        {
            Description = "A module (last name component, e.g. lm_head) to save whole; repeatable.",
        };
        var include = new Option<string[]>("--include-regex", "-i")
        {
            Description = "Only modules whose name matches; repeatable.",
        };
        var exclude = new Option<string[]>("--exclude-regex", "-e")
        {
            Description = "Leave out modules whose name matches; repeatable.",
        };
        var epsilon = new Option<double>("--sv-epsilon") { Description = "Drop singular values at or below this." };
        var skip = new Option<bool>("--skip-undecomposable")
        {
            Description = "Leave out modules that cannot be decomposed (norms) instead of saving them whole.",
        };
        var embedLora = new Option<bool>("--embed-lora")
        {
            Description = "Decompose the embedding too (lora_embedding_A/B) instead of saving it whole.",
        };
        var rankBy = new Option<string?>("--rank-by")
        {
            Description =
                "energy:F — each module's rank is the smallest keeping the share F of its update's energy Σ S² "
                + "(at most --max-rank).",
            HelpName = "energy:F",
        };
        var svd = new Option<string>("--svd")
        {
            Description =
                "exact, randomized (Halko–Martinsson–Tropp: a sketch of max-rank + 10 columns, 2 power iterations) or "
                + "auto: randomized where the sketch is at most a quarter of the module's smaller side and the rank "
                + "rules can be settled from it, exact elsewhere.",
            DefaultValueFactory = _ => "auto",
        };
        svd.AcceptOnlyFromAmong("auto", "exact", "randomized");
        var threads = new Option<int>("--threads", "-j")
        {
            Description = "Modules decomposed at once (the output does not depend on it).",
            DefaultValueFactory = _ => Environment.ProcessorCount,
        };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace a non-empty output folder." };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "No progress bar." };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Stack traces with errors." };
        var command = new Command(
            "extract-lora",
            "Extract a fine-tune as a PEFT LoRA adapter of its base (mergekit-extract-lora): per linear module the "
                + "truncated SVD of its update (and its bias update as lora_B.bias); embeddings and norms saved whole. "
                + "Modules are written as they are done, so memory does not grow with the model."
        )
        {
            model,
            baseModel,
            output,
            maxRank,
            distribute,
            noDistribute,
            saveModule,
            include,
            exclude,
            epsilon,
            skip,
            embedLora,
            rankBy,
            svd,
            threads,
            overwrite,
            quiet,
            verbose,
        };
        command.SetAction(parse => ErrorPolicy.Run(stderr, parse.GetValue(verbose), _ =>
            {
                var modules = Progress.Run(!parse.GetValue(quiet), "modules", bar => LoraExtractor.Extract(
                        parse.GetValue(model)!,
                        parse.GetValue(baseModel)!,
                        parse.GetValue(output)!,
                        new LoraExtractionOptions
                        {
                            MaxRank = parse.GetValue(maxRank),
                            DistributeScale = !parse.GetValue(noDistribute),
                            SvEpsilon = parse.GetValue(epsilon),
                            SaveModules = parse.GetValue(saveModule) ?? [],
                            Include = parse.GetValue(include) ?? [],
                            Exclude = parse.GetValue(exclude) ?? [],
                            SkipUndecomposable = parse.GetValue(skip),
                            EmbedLora = parse.GetValue(embedLora),
                            Energy = parse.GetValue(rankBy) is { } rule ? EnergyShare(rule) : null,
                            Threads = parse.GetValue(threads),
                            Svd = parse.GetValue(svd) switch
                            {
                                "exact" => SvdChoice.Exact,
                                "randomized" => SvdChoice.Randomized,
                                _ => SvdChoice.Auto,
                            },
                        },
                        parse.GetValue(overwrite),
                        new Diagnostics { OnWarning = w => stderr.WriteLine($"warning: {w}") },
                        bar is null
                            ? null
                            : (done, total) => bar.Update(new ProgressUpdate("modules", done, total, "modules"))
                    ));
                foreach (var m in modules)
                    stdout.WriteLine(
                        string.Create(
                            CultureInfo.InvariantCulture,
                            $"{m.Module}  rank {m.Rank}  svd {m.Svd}  energy kept {m.KeptEnergy:P2}  error {m.Error:G4}"
                        )
                    );
                stdout.WriteLine(
                    $"wrote a rank-{modules.Max(m => m.Rank)} adapter of {modules.Count} modules to "
                        + parse.GetValue(output)
                );
                return ExitCodes.Success;
            }));
        return command;
    }

    private static double EnergyShare(string rule) =>
        rule.StartsWith("energy:", StringComparison.Ordinal)
        && double.TryParse(rule["energy:".Length..], NumberStyles.Float, CultureInfo.InvariantCulture, out double share)
            ? share
            : throw new AlloyException($"--rank-by: '{rule}' is not energy:F (e.g. energy:0.9)");
}
