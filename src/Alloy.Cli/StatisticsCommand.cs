using System.CommandLine;
using Alloy.Output;
using Alloy.Runtime.Training;

namespace Alloy.Cli;

/// <summary>
/// <c>alloy fisher</c> and <c>alloy regmean</c>: a model's statistics over a data set for data-aware merging, written
/// to one safetensors file with a tensor per parameter.
/// </summary>
public static class StatisticsCommand
{
    public static Command CreateFisher(TextWriter stdout, TextWriter stderr) =>
        Create(
            stdout,
            stderr,
            "fisher",
            "Accumulate the diagonal Fisher (mean over examples of each example's squared gradient of log p(y)) of "
                + "every parameter over a data set.",
            batched: false
        );

    public static Command CreateRegMean(TextWriter stdout, TextWriter stderr) =>
        Create(
            stdout,
            stderr,
            "regmean",
            "Accumulate RegMean's Gram matrices XᵀX of every linear layer's inputs over a data set (stored under "
                + "the layer's weight name, with the token count).",
            batched: true
        );

    private static Command Create(TextWriter stdout, TextWriter stderr, string name, string description, bool batched)
    {
        var inputs = new RuntimeInputs();
        var output = new Option<string>("--out", "-o")
        {
            Description = "The .safetensors file to write.",
            Required = true,
        };
        var batch = new Option<int>("--batch-size")
        {
            Description = "Examples per forward pass.",
            DefaultValueFactory = _ => 8,
        };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace an existing output file." };
        var estimate = new Option<FisherEstimate>("--estimate")
        {
            Description =
                "Labels y: Sampled draws each from the model's own prediction (the true Fisher, as Fisher merging's "
                + "reference), Empirical takes the data's next tokens.",
            DefaultValueFactory = _ => FisherEstimate.Sampled,
        };
        var command = new Command(name, description) { output, overwrite };
        command.Add(batched ? batch : estimate);
        inputs.AddTo(command);
        command.SetAction(parse => ErrorPolicy.Run(stderr, parse.GetValue(inputs.Verbose), cancellation =>
            {
                var path = Path.GetFullPath(parse.GetValue(output)!);
                OutputFolder.CheckFileOutside(parse.GetValue(output)!, parse.GetValue(inputs.Model)!);
                if (File.Exists(path) && !parse.GetValue(overwrite))
                    throw new AlloyException(
                        $"output file '{parse.GetValue(output)}' exists; pass --overwrite to replace it"
                    );
                bool quiet = parse.GetValue(inputs.Quiet);
                var statistics = Progress.Run(!quiet, "loading", bar =>
                {
                    var (model, examples, _) = inputs.Load(parse);
                    Action<int>? report = bar is null
                        ? null
                        : done => bar.Update(new ProgressUpdate(name, done, examples.Count, "examples"));
                    report?.Invoke(0);
                    return batched
                        ? ParameterStatistics.Grams(model, examples, parse.GetValue(batch), report, cancellation)
                        : ParameterStatistics.Fisher(model, examples, report, cancellation, parse.GetValue(estimate));
                });
                statistics.Save(path);
                stdout.WriteLine(
                    $"wrote {statistics.Tensors.Count} tensors ({statistics.Kind}, {statistics.Count} "
                        + $"{statistics.CountName}) to {parse.GetValue(output)}"
                );
                return ExitCodes.Success;
            }));
        return command;
    }
}
