using System.CommandLine;

namespace Alloy.Cli;

/// <summary>
/// The command-line front: parses arguments, calls the library, prints. Tests call <see cref="Run"/> directly.
/// </summary>
public static class Program
{
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("Alloy: merge Hugging Face checkpoints with mergekit-compatible YAML recipes.")
        {
            MergeCommand.Create(stdout, stderr),
            PlanCommand.Create(stdout, stderr),
            MultiCommand.Create(stdout, stderr),
            MergeRawCommand.Create(stdout, stderr),
            SynthCommand.Create(stdout, stderr),
            TrainCommand.Create(stdout, stderr),
            StatisticsCommand.CreateFisher(stdout, stderr),
            StatisticsCommand.CreateRegMean(stdout, stderr),
            ExtractLoraCommand.Create(stdout, stderr),
            MoeCommand.Create(stdout, stderr),
            MoeCompressCommand.Create(stdout, stderr),
            AlignCommand.Create(stdout, stderr),
            MergeAdaptersCommand.Create(stdout, stderr),
            EvalCommand.Create(stdout, stderr),
            MethodsCommand.Create(stdout, stderr),
        };
        var config = new InvocationConfiguration
        {
            Output = stdout,
            Error = stderr,
            EnableDefaultExceptionHandler = false,
        };
        // Bare `alloy` is a request for help.
        if (args.Length == 0)
            return root.Parse(["--help"]).Invoke(config);
        var parsed = root.Parse(args);
        // An unknown option that filled an argument's place (`merge-raw a.yml --allow-crimes`) is an error too.
        if (parsed.Errors.Count > 0 || MisplacedOption(parsed) is not null)
        {
            var command = parsed.CommandResult.Command;
            var path = command == root ? "alloy" : $"alloy {command.Name}";
            stderr.WriteLine($"error: {Explain(parsed, command, root)} (see '{path} --help')");
            if (command == root)
                stderr.WriteLine(
                    $"commands: {string.Join(", ", root.Subcommands.Where(c => !c.Hidden).Select(c => c.Name))}"
                );
            return ExitCodes.UsageError;
        }
        return parsed.Invoke(config);
    }

    /// <summary>
    /// The parse error worth reading first: a word the command does not know, with the closest command or option it
    /// does know; else the parser's own first message.
    /// </summary>
    private static string Explain(ParseResult parsed, Command command, RootCommand root)
    {
        // An unknown option may have been taken for an argument's value (`merge --thraeds 2 a b`), pushing the real
        // arguments out: it is the word to explain.
        if ((MisplacedOption(parsed) ?? parsed.UnmatchedTokens.FirstOrDefault()) is not { } unknown)
            return parsed.Errors[0].Message;
        bool option = unknown.StartsWith('-');
        if (!option && command == root)
        {
            var near = Suggestions.Closest(unknown, root.Subcommands.Where(c => !c.Hidden).Select(c => c.Name));
            return $"unknown command '{unknown}'" + (near is null ? "" : $"; did you mean '{near}'?");
        }
        if (option)
        {
            var names = command.Options.Where(o => !o.Hidden).SelectMany(o => o.Aliases.Prepend(o.Name));
            var near = Suggestions.Closest(unknown, names);
            return $"unknown option '{unknown}'" + (near is null ? "" : $"; did you mean '{near}'?");
        }
        return $"unexpected argument '{unknown}'";
    }

    /// <summary>A word that looks like an option (not a negative number) where an argument's value was taken.</summary>
    private static string? MisplacedOption(ParseResult parsed) =>
        parsed
            .Tokens.FirstOrDefault(t =>
                t.Type == System.CommandLine.Parsing.TokenType.Argument
                && t.Value.Length > 1
                && t.Value.StartsWith('-')
                && !double.TryParse(t.Value, System.Globalization.CultureInfo.InvariantCulture, out _)
            )
            ?.Value;
}
