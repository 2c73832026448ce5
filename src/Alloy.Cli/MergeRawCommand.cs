using System.CommandLine;
using Alloy.Planning;
using Alloy.Recipes;

namespace Alloy.Cli;

/// <summary>
/// <c>alloy merge-raw CONFIG OUT</c>: mergekit-pytorch's command: state dicts merged tensor by tensor.
/// </summary>
public static class MergeRawCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var config = new Argument<string>("config")
        {
            Description = "A recipe whose models are .safetensors files (or model folders).",
        };
        var output = new Argument<string>("out")
        {
            Description = "The output folder (created; must be empty unless --overwrite).",
        };
        var union = new Option<bool>("--tensor-union", "-u")
        {
            Description = "Merge a tensor some models lack from the models that have it.",
        };
        var intersection = new Option<bool>("--tensor-intersection", "-i")
        {
            Description = "Leave out tensors that some models lack.",
        };
        var options = new MergeOptionSet(MergeOptionUse.RawMerge);
        var command = new Command(
            "merge-raw",
            "Merge plain state dicts tensor by tensor, with no architecture, layers or tokenizer (the mergekit-pytorch "
                + "command): every tensor name of every model is merged; parameters take their first gradient value. A "
                + "tensor missing from some models is an error unless -u or -i. "
                + MergeOptionSet.IgnoredFlagsHelp
        )
        {
            config,
            output,
            union,
            intersection,
        };
        options.AddTo(command);

        command.SetAction(parse => ErrorPolicy.Run(stderr, options.Verbose(parse), cancellation =>
            {
                if (parse.GetValue(union) && parse.GetValue(intersection))
                    throw new AlloyException("--tensor-union and --tensor-intersection exclude each other");
                var policy =
                    parse.GetValue(union) ? RawTensorPolicy.Union
                    : parse.GetValue(intersection) ? RawTensorPolicy.Intersection
                    : RawTensorPolicy.Strict;
                var diagnostics = options.Diagnostics(parse, stderr);
                var mergeOptions = options.Read(parse, stderr) with { RawTensors = policy };
                var recipe = RecipeParser.ParseFile(parse.GetValue(config)!, diagnostics);
                bool quiet = options.Quiet(parse);
                var result = Progress.Run(show: !quiet, "planning", bar =>
                    Merger.Run(
                        recipe,
                        parse.GetValue(output)!,
                        mergeOptions,
                        diagnostics,
                        Progress.ForMerge(bar),
                        cancellation
                    )
                );
                if (!quiet)
                    stdout.WriteLine(MergeCommand.Summary(result));
                return ExitCodes.Success;
            }));
        return command;
    }
}
