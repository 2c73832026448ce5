using System.CommandLine;
using System.Diagnostics;
using Alloy.Output;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;
using Alloy.Tensors;

namespace Alloy.Cli;

/// <summary>
/// <c>alloy train MODEL --data FILE --out DIR</c>: trains a Llama-family model with AdamW and saves it.
/// </summary>
public static class TrainCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var defaults = new TrainingOptions();
        var inputs = new RuntimeInputs();
        var output = new Option<string>("--out", "-o")
        {
            Description = "Folder for the trained model (created; must be empty unless --overwrite).",
            Required = true,
        };
        var steps = new Option<int?>("--steps")
        {
            Description = "Optimizer steps (default: --epochs passes over the data).",
        };
        var epochs = new Option<double?>("--epochs")
        {
            Description = "Passes over the data when --steps is not given (default 1; fractions allowed).",
        };
        var batch = new Option<int>("--batch-size")
        {
            Description = "Examples per optimizer step.",
            DefaultValueFactory = _ => defaults.BatchSize,
        };
        var micro = new Option<int?>("--micro-batch")
        {
            Description =
                "Examples per forward/backward pass; gradients accumulate over the batch (default: the whole batch).",
        };
        var lr = new Option<double>("--lr")
        {
            Description = "Peak learning rate.",
            DefaultValueFactory = _ => defaults.LearningRate,
        };
        var minLr = new Option<double>("--min-lr")
        {
            Description = "Learning rate the cosine decay ends at.",
            DefaultValueFactory = _ => defaults.MinLearningRate,
        };
        var warmup = new Option<int>("--warmup")
        {
            Description = "Steps of linear warmup.",
            DefaultValueFactory = _ => defaults.WarmupSteps,
        };
        var decay = new Option<double>("--weight-decay")
        {
            Description = "AdamW's decoupled weight decay (matrices only unless --decay-norms).",
            DefaultValueFactory = _ => defaults.WeightDecay,
        };
        var decayNorms = new Option<bool>("--decay-norms") { Description = "Also decay norm weights and biases." };
        var clip = new Option<double>("--clip")
        {
            Description = "Clip the gradient's global L2 norm to this; 0 turns clipping off.",
            DefaultValueFactory = _ => defaults.ClipNorm ?? 0,
        };
        var seed = new Option<ulong>("--seed")
        {
            Description = "Seed of the data order (and of a LoRA adapter's initialisation).",
            DefaultValueFactory = _ => defaults.Seed,
        };
        var dtype = new Option<string?>("--dtype")
        {
            Description =
                "Saved dtype: float32, bfloat16 or float16 (default: the input's config.json dtype, else float32).",
        };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace a non-empty output folder." };
        var loraDefaults = new LoraOptions();
        var loraRank = new Option<int?>("--lora-rank")
        {
            Description =
                "Train a LoRA adapter of this rank instead of the model (the model stays frozen; only A and B learn) "
                + "and save it as a PEFT adapter folder.",
            HelpName = "R",
        };
        var loraAlpha = new Option<double?>("--lora-alpha")
        {
            Description = $"With --lora-rank: α, the update being (α / r)·B·A (default {loraDefaults.Alpha}, PEFT's).",
            HelpName = "A",
        };
        var loraTargets = new Option<string?>("--lora-targets")
        {
            Description =
                $"With --lora-rank: the adapted layers, comma-separated (default "
                + $"{string.Join(",", loraDefaults.Targets)}, PEFT's for Llama; '{LoraOptions.AllLinear}' adapts "
                + "every linear layer of the blocks).",
            HelpName = "LIST",
        };
        var only = new Option<string?>("--only")
        {
            Description =
                "Train only these parameters, the rest frozen bit for bit: comma-separated patterns over Hugging Face "
                + "names (* matches any characters, a pattern matches whole names, as 'model.layers.*.self_attn.*'), "
                + $"or '{ParameterSelection.Router}' for every router of a mixture of experts (gate weights, "
                + "Qwen2-MoE's shared_expert_gate too).",
            HelpName = "PATTERNS",
        };
        var validation = new Option<string?>("--validation")
        {
            Description =
                "Held-out examples (the format of --data) whose loss is measured before training, every "
                + "--eval-every steps and at the end.",
            HelpName = "FILE",
        };
        var evalEvery = new Option<int?>("--eval-every")
        {
            Description = "Steps between validation losses (default: a tenth of the run).",
            HelpName = "N",
        };
        var logEvery = new Option<int?>("--log-every")
        {
            Description =
                "Without a terminal: a progress line every N steps, besides the first and last (default: about 20 "
                + "lines).",
            HelpName = "N",
        };

        var command = new Command(
            "train",
            "Train a Llama, Mistral or Qwen2 model on a text or JSONL data set (next-token cross-entropy, AdamW, "
                + "warmup + cosine schedule, gradient clipping) and save it as a Hugging Face folder, with "
                + "metrics.jsonl (loss, learning rate, gradient norm, tokens/s and validation loss per step) and "
                + "loss.png. Start from a fresh model with 'alloy synth DIR --fine-tunes 0' and train DIR/base."
        )
        {
            output,
            steps,
            epochs,
            batch,
            micro,
            lr,
            minLr,
            warmup,
            decay,
            decayNorms,
            clip,
            seed,
            dtype,
            overwrite,
            validation,
            evalEvery,
            logEvery,
            loraRank,
            loraAlpha,
            loraTargets,
            only,
        };
        inputs.AddTo(command);
        command.SetAction(parse => ErrorPolicy.Run(stderr, parse.GetValue(inputs.Verbose), cancellation =>
            {
                var model = parse.GetValue(inputs.Model)!;
                // MODEL+ADAPTER trains the adapted model; its config and tokenizer are the model folder's.
                var source = RuntimeInputs.AdaptedBase(model) ?? model;
                var lora = LoraSettings(
                    parse.GetValue(loraRank),
                    parse.GetValue(loraAlpha),
                    parse.GetValue(loraTargets),
                    parse.GetValue(seed)
                );
                // An adapter is small: float32 unless asked, whatever the base is stored in.
                var saveType = ParseDType(parse.GetValue(dtype))
                    ?? (lora is null ? ModelSaver.StatedDType(source) : null)
                    ?? DType.F32;
                if (parse.GetValue(steps) is not null && parse.GetValue(epochs) is not null)
                    throw new AlloyException("give --steps or --epochs, not both");
                foreach (
                    var (option, value) in new[]
                    {
                        (evalEvery, parse.GetValue(evalEvery)),
                        (logEvery, parse.GetValue(logEvery)),
                    }
                )
                    if (value is < 1)
                        throw new AlloyException($"{option.Name} must be at least 1 (got {value})");
                if (parse.GetValue(evalEvery) is not null && parse.GetValue(validation) is null)
                    throw new AlloyException("--eval-every needs --validation FILE");
                if (lora is not null && source != model)
                    throw new AlloyException(
                        $"--lora-rank trains an adapter of a model folder; merge '{model}' first (alloy merge) to "
                            + "train a new adapter on the adapted model"
                    );
                using var target = OutputFolder.Prepare(
                    parse.GetValue(output)!,
                    parse.GetValue(overwrite),
                    source == model ? [source] : [source, model[(source.Length + 1)..]],
                    new Diagnostics { OnWarning = w => stderr.WriteLine($"warning: {w}") }
                );
                var watch = Stopwatch.StartNew();
                bool quiet = parse.GetValue(inputs.Quiet);
                var results = Progress.Run(!quiet, "loading", bar =>
                {
                    var (llama, examples, held) = inputs.Load(parse, parse.GetValue(validation));
                    int batchSize = parse.GetValue(batch);
                    if (batchSize < 1)
                        throw new AlloyException($"--batch-size must be at least 1 (got {batchSize})");
                    double passes = parse.GetValue(epochs) ?? 1;
                    if (!(passes > 0))
                        throw new AlloyException($"--epochs must be positive (got {passes})");
                    int stepCount = parse.GetValue(steps)
                        ?? Math.Max(1, (int)Math.Ceiling(passes * Trainer.StepsPerEpoch(examples.Count, batchSize)));
                    var options = new TrainingOptions
                    {
                        Steps = stepCount,
                        BatchSize = batchSize,
                        MicroBatchSize = parse.GetValue(micro),
                        LearningRate = parse.GetValue(lr),
                        MinLearningRate = parse.GetValue(minLr),
                        WarmupSteps = parse.GetValue(warmup),
                        WeightDecay = parse.GetValue(decay),
                        DecayNormsAndBiases = parse.GetValue(decayNorms),
                        ClipNorm = parse.GetValue(clip),
                        Seed = parse.GetValue(seed),
                        Only = parse.GetValue(only) is { } patterns
                            ? patterns.Split(
                                ',',
                                StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries
                            )
                            : null,
                    };
                    var adapter = lora is null ? null : new TrainableLora(llama, lora);
                    var trainer = new Trainer(llama, options, adapter);
                    string trained = adapter is null
                        ? options.Only is null
                            ? $"{llama.Parameters.ElementCount / 1e6:F2}M parameters"
                            : $"{trainer.Trained.ElementCount / 1e6:F3}M parameters in {trainer.Trained.Count} "
                                + $"tensors selected by --only (the other {llama.Parameters.ElementCount / 1e6:F2}M "
                                + "frozen)"
                        : $"a rank-{lora!.Rank} adapter on {adapter.Modules.Count()} layers "
                            + $"({adapter.Parameters.ElementCount / 1e6:F3}M parameters; the model's "
                            + $"{llama.Parameters.ElementCount / 1e6:F2}M frozen)";
                    string start =
                        $"training on {examples.Count} examples ({examples.Sum(e => e.TargetCount)} scored tokens), "
                        + $"{stepCount} steps of {batchSize}, {trained}"
                        + (held is null ? "" : $"; validation: {held.Count} examples");
                    if (bar is not null)
                        bar.Note(start);
                    else if (!quiet)
                        stderr.WriteLine(start);

                    using var log = new TrainingLog(target.Temporary);
                    int validateEvery = parse.GetValue(evalEvery) ?? Math.Max(1, stepCount / 10);
                    if (held is not null)
                    {
                        bar?.Update(new ProgressUpdate("validation"));
                        log.Start(trainer.Loss(held, cancellation));
                    }
                    int lineEvery = parse.GetValue(logEvery) ?? Math.Max(1, stepCount / 20);
                    var stepClock = Stopwatch.StartNew();
                    double? lastValidation = null;
                    var done = trainer.Run(
                        examples,
                        step =>
                        {
                            double seconds = stepClock.Elapsed.TotalSeconds;
                            double? validationLoss =
                                held is not null && (step.Step % validateEvery == 0 || step.Step == stepCount)
                                    ? trainer.Loss(held, cancellation)
                                    : null;
                            lastValidation = validationLoss ?? lastValidation;
                            log.Step(
                                step,
                                step.Tokens / Math.Max(seconds, 1e-9),
                                watch.Elapsed.TotalSeconds,
                                validationLoss
                            );
                            string detail =
                                $"loss {step.Loss:F4}"
                                + (lastValidation is { } v ? $"  val {v:F4}" : "")
                                + $"  lr {step.LearningRate:G3}";
                            if (bar is not null)
                                bar.Update(new ProgressUpdate("training", step.Step, stepCount, "steps", detail));
                            else if (!quiet && (step.Step % lineEvery == 0 || step.Step == 1 || step.Step == stepCount))
                                stderr.WriteLine(
                                    $"step {step.Step}/{stepCount}  epoch {step.Epoch + 1}  {detail}  grad norm "
                                        + $"{step.GradientNorm:G3}"
                                );
                            stepClock.Restart();
                        },
                        cancellation
                    );
                    cancellation.ThrowIfCancellationRequested();
                    bar?.Update(new ProgressUpdate("writing"));
                    log.DrawChart(Path.Combine(target.Temporary, TrainingLog.ChartFile));
                    log.Dispose();
                    if (adapter is null)
                        ModelSaver.Save(llama, source, target, saveType);
                    else
                    {
                        adapter.Save(
                            target.Temporary,
                            source,
                            saveType,
                            $"# LoRA adapter trained by Alloy\n\nRank {lora!.Rank}, α {lora.Alpha}, on "
                                + $"{string.Join(", ", lora.Targets)} of `{source}` (`alloy train --lora-rank`), "
                                + $"{done.Count} steps on `{Path.GetFileName(parse.GetValue(inputs.Data))}`.\n"
                        );
                        target.Commit();
                    }
                    return (
                        done,
                        Epochs: (double)done.Count / Trainer.StepsPerEpoch(examples.Count, batchSize),
                        lastValidation
                    );
                });
                var (trained, epochsDone, finalValidation) = results;
                stdout.WriteLine(
                    $"trained {trained.Count} steps ({epochsDone:F2} epochs) in {watch.Elapsed.TotalSeconds:F1} s: "
                        + $"loss {trained[0].Loss:F4} → {trained[^1].Loss:F4}"
                        + (finalValidation is { } f ? $", validation loss {f:F4}" : "")
                        + $"; wrote {(lora is null ? "" : "the adapter ")}{target.Target} ({saveType.TorchName()})"
                );
                return ExitCodes.Success;
            }));
        return command;
    }

    private static LoraOptions? LoraSettings(int? rank, double? alpha, string? targets, ulong seed)
    {
        if (rank is null)
            return alpha is null && targets is null
                ? null
                : throw new AlloyException("--lora-alpha and --lora-targets need --lora-rank");
        var defaults = new LoraOptions();
        var options = new LoraOptions
        {
            Rank = rank.Value,
            Alpha = alpha ?? defaults.Alpha,
            Targets = targets is null
                ? defaults.Targets
                : [.. targets.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)],
            Seed = seed,
        };
        options.Validate();
        return options;
    }

    private static DType? ParseDType(string? name)
    {
        if (name is null)
            return null;
        if (!DTypes.TryParseTorch(name, out var dtype) || dtype is not (DType.F32 or DType.BF16 or DType.F16))
            throw new AlloyException($"--dtype: '{name}' is not one of float32, bfloat16, float16");
        return dtype;
    }
}
