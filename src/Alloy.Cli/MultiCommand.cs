using System.CommandLine;
using Alloy.Recipes;

namespace Alloy.Cli;

/// <summary><c>alloy multi CONFIG --intermediate-dir DIR [--out-path OUT]</c>: mergekit-multi's command.</summary>
public static class MultiCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var config = new Argument<string>("config")
        {
            Description =
                "A multi-document YAML file (documents separated by ---), each a merge recipe with an optional 'name'.",
        };
        var intermediate = new Option<string>("--intermediate-dir")
        {
            Description = "Folder for the named (intermediate) merges: each goes to DIR/<name>.",
            Required = true,
            HelpName = "DIR",
        };
        var outPath = new Option<string?>("--out-path")
        {
            Description = "Output folder of the one unnamed (final) document.",
            HelpName = "OUT",
        };
        var lazy = new Option<bool>("--lazy")
        {
            Description = "Skip merges whose output is already complete (the default).",
            Hidden = true,
        };
        var noLazy = new Option<bool>("--no-lazy")
        {
            Description = "Redo every merge, even if its output is complete.",
        };
        var options = new MergeOptionSet();
        var command = new Command(
            "multi",
            "Run several merges from one file, in dependency order: a document may use an earlier document's 'name' as "
                + "a model (the mergekit-multi command). Finished merges made from the same recipe are skipped. "
                + MergeOptionSet.IgnoredFlagsHelp
        )
        {
            config,
            intermediate,
            outPath,
            lazy,
            noLazy,
        };
        options.AddTo(command);

        command.SetAction(parse => ErrorPolicy.Run(stderr, options.Verbose(parse), cancellation =>
            {
                var diagnostics = options.Diagnostics(parse, stderr);
                var mergeOptions = options.Read(parse, stderr);
                var path = parse.GetValue(config)!;
                var documents = RecipeParser.ParseDocumentsFile(path, diagnostics);
                var stages = MultiMerge.Plan(documents, parse.GetValue(intermediate)!, parse.GetValue(outPath));
                bool quiet = options.Quiet(parse);
                var outcomes = Progress.Run(show: !quiet, "planning", bar =>
                {
                    // The bar's phase names the stage too.
                    string stageName = "";
                    return MultiMerge.Run(
                        stages,
                        mergeOptions,
                        !parse.GetValue(noLazy),
                        diagnostics,
                        stage =>
                        {
                            stageName = stage.DisplayName + ": ";
                            string line = $"merging {stage.DisplayName} → {stage.OutputPath}";
                            if (bar is not null)
                                bar.Note(line);
                            else if (!quiet)
                                stdout.WriteLine(line);
                            bar?.Update(new ProgressUpdate(stageName + "planning"));
                        },
                        bar is null ? null : p => Progress.ForMerge(bar, stageName)!(p),
                        cancellation
                    );
                });
                if (!quiet)
                {
                    foreach (var outcome in outcomes)
                        stdout.WriteLine(
                            outcome.Skipped
                                ? $"{outcome.Stage.DisplayName}: up to date, skipped"
                                : $"{outcome.Stage.DisplayName}: {MergeCommand.Summary(outcome.Result!)}"
                        );
                }
                return ExitCodes.Success;
            }));
        return command;
    }
}
