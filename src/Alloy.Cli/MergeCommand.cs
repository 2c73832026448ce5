using System.CommandLine;
using Alloy.Recipes;

namespace Alloy.Cli;

/// <summary><c>alloy merge CONFIG OUT</c>: mergekit-yaml's command, with its flags.</summary>
public static class MergeCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var config = new Argument<string>("config") { Description = "The merge recipe: a mergekit YAML file." };
        var output = new Argument<string>("out")
        {
            Description = "The output folder (created; must be empty unless --overwrite).",
        };
        var dryRun = new Option<bool>("--dry-run")
        {
            Description =
                "Plan the merge and check the output folder, print the plan (as alloy plan does), and write nothing.",
        };
        var options = new MergeOptionSet();
        var command = new Command(
            "merge",
            "Merge models as a mergekit YAML recipe describes (the mergekit-yaml command). "
                + MergeOptionSet.IgnoredFlagsHelp
        )
        {
            config,
            output,
            dryRun,
        };
        options.AddTo(command);

        command.SetAction(parse => ErrorPolicy.Run(stderr, options.Verbose(parse), cancellation =>
            {
                var diagnostics = options.Diagnostics(parse, stderr);
                var mergeOptions = options.Read(parse, stderr);
                var recipe = RecipeParser.ParseFile(parse.GetValue(config)!, diagnostics);
                if (parse.GetValue(dryRun))
                {
                    using var session = MergeSession.Open(recipe, mergeOptions, diagnostics, cancellation);
                    return PlanCommand.DryRun(session, parse.GetValue(output)!, stdout);
                }
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
                    stdout.WriteLine(Summary(result));
                return ExitCodes.Success;
            }));
        return command;
    }

    public static string Summary(MergeResult result) =>
        $"merged {result.Tensors} tensors ({Progress.FormatBytes(result.OutputBytes)}) into {result.OutputPath} "
        + $"in {result.Elapsed.TotalSeconds:F1} s ({result.Shards} shard{(result.Shards == 1 ? "" : "s")})";
}
