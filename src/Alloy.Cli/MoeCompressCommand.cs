using System.CommandLine;
using System.Diagnostics;
using Alloy.Output;
using Alloy.Runtime.Merging;
using Alloy.Runtime.Models;
using Alloy.Tensors;

namespace Alloy.Cli;

/// <summary>
/// <c>alloy moe-compress MOE --experts K --data FILE OUT</c>: MC-SMoE's merging stage, a mixture of experts with K
/// experts per layer made by merging the experts its router treats alike.
/// </summary>
public static class MoeCompressCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var inputs = new RuntimeInputs();
        var output = new Argument<string>("out")
        {
            Description = "Folder for the compressed model (created; must be empty unless --overwrite).",
        };
        var experts = new Option<int>("--experts", "-k")
        {
            Description = "Experts per layer in the output.",
            Required = true,
        };
        var batch = new Option<int>("--batch-size")
        {
            Description = "Examples per forward pass while routing the data.",
            DefaultValueFactory = _ => 8,
        };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace a non-empty output folder." };
        var command = new Command(
            "moe-compress",
            "Merge a Mixtral or Qwen2-MoE model's experts down to --experts per layer (MC-SMoE, Li et al. 2023): "
                + "route the data, group the experts around the most used ones by the similarity of their router "
                + "logits, align each group's neurons to its leader by weight matching, and average each group "
                + "weighted by usage. Prints each layer's groups."
        );
        inputs.AddTo(command); // the model argument first
        command.Add(output);
        command.Add(experts);
        command.Add(batch);
        command.Add(overwrite);
        command.SetAction(parse => ErrorPolicy.Run(stderr, parse.GetValue(inputs.Verbose), cancellation =>
            {
                string source = parse.GetValue(inputs.Model)!;
                if (parse.GetValue(batch) < 1)
                    throw new AlloyException($"--batch-size must be at least 1 (got {parse.GetValue(batch)})");
                using var target = OutputFolder.Prepare(
                    parse.GetValue(output)!,
                    parse.GetValue(overwrite),
                    [source],
                    new Diagnostics { OnWarning = w => stderr.WriteLine($"warning: {w}") }
                );
                var watch = Stopwatch.StartNew();
                var (model, examples, _) = inputs.Load(parse);
                var (compressed, layers) = MoeCompression.Compress(
                    model,
                    examples,
                    parse.GetValue(experts),
                    parse.GetValue(batch),
                    cancellation
                );
                for (int layer = 0; layer < layers.Count; layer++)
                {
                    var groups = layers[layer]
                        .Leaders.Select(
                            (leader, g) =>
                                "{"
                                + string.Join(
                                    ", ",
                                    Enumerable
                                        .Range(0, layers[layer].Labels.Length)
                                        .Where(e => layers[layer].Labels[e] == g)
                                        .Select(e =>
                                            $"{e}{(e == leader ? "*" : "")} ({100 * layers[layer].Frequencies[e]:F0} %)"
                                        )
                                )
                                + "}"
                        );
                    stdout.WriteLine($"layer {layer}: {string.Join(" ", groups)}");
                }
                var dtype = ModelSaver.StatedDType(source) ?? DType.F32;
                ModelSaver.Save(compressed, source, target, dtype);
                stdout.WriteLine(
                    $"merged {model.Config.Moe!.Experts} experts into {compressed.Config.Moe!.Experts} per layer on "
                        + $"{examples.Count} examples in {watch.Elapsed.TotalSeconds:F1} s; wrote {target.Target} "
                        + $"(* leads its group and keeps its router row; % is its share of the routing)"
                );
                return ExitCodes.Success;
            }));
        return command;
    }
}
