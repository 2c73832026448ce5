using System.CommandLine;

namespace Alloy.Cli;

/// <summary>The command-line front: parses arguments, calls the library, prints. Tests call <see cref="Run"/> directly.</summary>
public static class Program
{
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("Alloy: merge Hugging Face checkpoints with mergekit-compatible YAML recipes.")
        {
            MergeCommand.Create(stdout, stderr),
            MultiCommand.Create(stdout, stderr),
            MergeRawCommand.Create(stdout, stderr),
            SynthCommand.Create(stdout, stderr),
            TrainCommand.Create(stdout, stderr),
            StatisticsCommand.CreateFisher(stdout, stderr),
            StatisticsCommand.CreateRegMean(stdout, stderr),
            EvalCommand.Create(stdout, stderr),
            MethodsCommand.Create(stdout, stderr),
        };
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            var command = parsed.CommandResult.Command;
            var path = command == root ? "alloy" : $"alloy {command.Name}";
            stderr.WriteLine($"error: {parsed.Errors[0].Message} (see '{path} --help')");
            return ExitCodes.UsageError;
        }
        return parsed.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
    }
}
