using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Alloy.Alignment;
using Alloy.Output;
using Alloy.Runtime.Alignment;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;
using Alloy.Tensors;

namespace Alloy.Cli;

/// <summary>
/// <c>alloy align MODEL --to REFERENCE --out DIR</c>: Git Re-Basin's permutation alignment of a model to a reference
/// of the same architecture — weight matching, or activation matching with <c>--data</c> — written as a normal model
/// folder that computes exactly what MODEL computes.
/// </summary>
public static class AlignCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = new Argument<string>("model")
        {
            Description = "The model folder to permute (Llama, Mistral, Qwen2).",
        };
        var reference = new Option<string>("--to")
        {
            Description = "The reference model folder to align to (same architecture and shape).",
            HelpName = "REFERENCE",
            Required = true,
        };
        var output = new Option<string>("--out")
        {
            Description = "Folder for the aligned model (created; must be empty unless --overwrite).",
            HelpName = "DIR",
            Required = true,
        };
        var data = new Option<string?>("--data")
        {
            Description =
                "Activation matching on these examples (.txt, one per line, or .jsonl with \"text\") instead of "
                + "weight matching.",
            HelpName = "FILE",
        };
        var seed = new Option<ulong>("--seed")
        {
            Description = "Seed of weight matching's order of permutations.",
            DefaultValueFactory = _ => 0,
        };
        var sequenceLength = new Option<int>("--seq-length")
        {
            Description = "Longest sequence in tokens with --data.",
            DefaultValueFactory = _ => 256,
        };
        var batch = new Option<int>("--batch-size")
        {
            Description = "Examples per forward pass with --data.",
            DefaultValueFactory = _ => 8,
        };
        var threads = new Option<int>("--threads", "-j")
        {
            Description = "Threads (results do not depend on it).",
            DefaultValueFactory = _ => Environment.ProcessorCount,
        };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace a non-empty output folder." };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "No progress output." };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Stack traces with errors." };
        var command = new Command(
            "align",
            "Permute MODEL's residual stream, MLP units and attention heads (whole heads, within their key/value "
                + "groups) to match REFERENCE, without changing what it computes: Git Re-Basin's weight matching "
                + "(Ainsworth et al. 2023), or its activation matching with --data. The output, in MODEL's dtype, can "
                + "then be merged with REFERENCE by any method. Prints how close each kind of unit came."
        )
        {
            model,
            reference,
            output,
            data,
            seed,
            sequenceLength,
            batch,
            threads,
            overwrite,
            quiet,
            verbose,
        };
        command.SetAction(parse => ErrorPolicy.Run(stderr, parse.GetValue(verbose), cancellation =>
            {
                string source = parse.GetValue(model)!,
                    referenceFolder = parse.GetValue(reference)!;
                int threadCount = parse.GetValue(threads);
                if (parse.GetValue(batch) < 1)
                    throw new AlloyException($"--batch-size must be at least 1 (got {parse.GetValue(batch)})");
                using var target = OutputFolder.Prepare(
                    parse.GetValue(output)!,
                    parse.GetValue(overwrite),
                    [source, referenceFolder],
                    new Diagnostics { OnWarning = w => stderr.WriteLine($"warning: {w}") }
                );
                var watch = Stopwatch.StartNew();
                var (subject, tokenizer) = RuntimeInputs.LoadModel(source, threadCount);
                var (anchor, _) = RuntimeInputs.LoadModel(referenceFolder, threadCount);
                ModelAlignment.CheckCompatible(anchor.Config, subject.Config);
                var spec = ModelAlignment.Spec(subject.Config);
                string method = parse.GetValue(data) is null ? "weight matching" : "activation matching";
                var (perms, gains, detail) = Progress.Run(!parse.GetValue(quiet), method, bar =>
                {
                    if (parse.GetValue(data) is not { } file)
                    {
                        var (a, b) = (ModelAlignment.Tensors(anchor), ModelAlignment.Tensors(subject));
                        var (found, sweeps) = WeightMatching.Match(
                            spec,
                            a,
                            b,
                            parse.GetValue(seed),
                            bar is null
                                ? null
                                : (sweep, done, total) =>
                                    bar.Update(new ProgressUpdate(method, done, total, "steps", $"sweep {sweep + 1}")),
                            cancellation
                        );
                        return (found, WeightMatching.Gains(spec, a, b, found), $"{sweeps} sweeps");
                    }
                    var examples = TrainingData.Load(
                        file,
                        tokenizer,
                        parse.GetValue(sequenceLength),
                        subject.Config.VocabSize
                    );
                    var correlations = ModelAlignment.Correlate(
                        anchor,
                        subject,
                        examples,
                        parse.GetValue(batch),
                        bar is null
                            ? null
                            : (done, total) => bar.Update(new ProgressUpdate(method, done, total, "examples")),
                        cancellation
                    );
                    var matched = ActivationMatching.Match(spec, correlations);
                    return (
                        matched,
                        ActivationMatching.Gains(spec, correlations, matched),
                        $"{examples.Count} examples"
                    );
                });
                string measure = parse.GetValue(data) is null ? "cosine" : "mean correlation";
                foreach (var gain in gains)
                    stdout.WriteLine(
                        string.Create(
                            CultureInfo.InvariantCulture,
                            $"{Name(gain.Kind), -10} {measure} {gain.Before:F4} -> {gain.After:F4}"
                        )
                    );
                var dtype = ModelSaver.StatedDType(source) ?? DType.F32;
                ModelSaver.Save(ModelAlignment.Permute(subject, perms), source, target, dtype);
                stdout.WriteLine(
                    $"aligned {source} to {referenceFolder} by {method} ({detail}, "
                        + $"{watch.Elapsed.TotalSeconds:F1} s); wrote {target.Target}"
                );
                return ExitCodes.Success;
            }));
        return command;
    }

    private static string Name(PermutationKind kind) =>
        kind switch
        {
            PermutationKind.Residual => "residual",
            PermutationKind.Mlp => "mlp",
            _ => "heads",
        };
}
