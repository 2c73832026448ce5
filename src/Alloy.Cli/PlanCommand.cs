using System.CommandLine;
using Alloy.Output;
using Alloy.Recipes;

namespace Alloy.Cli;

/// <summary>
/// <c>alloy plan CONFIG</c>: what a merge would do, from model headers alone; <c>alloy merge --dry-run</c> prints the
/// same and checks the output folder. Exit 0 means the merge would run.
/// </summary>
public static class PlanCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var config = new Argument<string>("config") { Description = "The merge recipe: a mergekit YAML file." };
        var json = new Option<bool>("--json") { Description = "Print the plan as JSON." };
        var options = new MergeOptionSet(MergeOptionUse.Plan);
        var command = new Command(
            "plan",
            "Show what a merge would do without reading weights or writing anything: inputs, config and tokenizer "
                + "sources, every parameter's value per layer, vocabulary, shards, working memory and expected time. "
                + "Exit 0 if the merge would run."
        )
        {
            config,
            json,
        };
        options.AddTo(command);
        command.SetAction(parse => ErrorPolicy.Run(stderr, options.Verbose(parse), _ =>
            {
                using var session = Open(parse, config, options, stderr);
                var summary = PlanSummary.Create(session);
                stdout.Write(parse.GetValue(json) ? summary.ToJson() + "\n" : summary.ToText());
                return ExitCodes.Success;
            }));
        return command;
    }

    /// <summary>
    /// For <c>merge --dry-run</c>: the plan, and the output folder checked as the merge would check it.
    /// </summary>
    public static int DryRun(MergeSession session, string output, TextWriter stdout)
    {
        var full = OutputFolder.Check(output, session.Options.Overwrite, session.Models.All.Select(m => m.Location));
        stdout.Write(PlanSummary.Create(session).ToText());
        stdout.WriteLine($"\ndry run: nothing written; the merge would write {full}");
        return ExitCodes.Success;
    }

    private static MergeSession Open(
        ParseResult parse,
        Argument<string> config,
        MergeOptionSet options,
        TextWriter stderr
    )
    {
        var diagnostics = options.Diagnostics(parse, stderr);
        var mergeOptions = options.Read(parse, stderr);
        return MergeSession.Open(
            RecipeParser.ParseFile(parse.GetValue(config)!, diagnostics),
            mergeOptions,
            diagnostics
        );
    }
}
