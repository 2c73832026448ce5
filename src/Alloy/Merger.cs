using System.Diagnostics;
using System.Reflection;
using Alloy.Checkpoints;
using Alloy.Execution;
using Alloy.Output;
using Alloy.Planning;
using Alloy.Recipes;
using Alloy.Tokenizers;

namespace Alloy;

public sealed record MergeOptions
{
    /// <summary>Bytes per output shard (mergekit's --out-shard-size, default 5B); ≤ 0 writes one file.</summary>
    public long OutShardSize { get; init; } = 5_000_000_000;
    public ulong Seed { get; init; } = PlanOptions.DefaultSeed;
    public bool AllowCrimes { get; init; }
    public bool CopyTokenizer { get; init; } = true;
    public bool WriteModelCard { get; init; } = true;
    public bool Overwrite { get; init; }
    public ExecutionOptions Execution { get; init; } = new();

    /// <summary>
    /// Model references resolved by name before any path lookup (alloy multi: a stage's name → its output folder).
    /// </summary>
    public IReadOnlyDictionary<string, string> NamedModels { get; init; } = new Dictionary<string, string>();

    /// <summary>Set for a raw state-dict merge (mergekit-pytorch): tensors by name, no architecture, no config.json.</summary>
    public RawTensorPolicy? RawTensors { get; init; }
}

public sealed record MergeResult(string OutputPath, int Tensors, int Shards, long InputBytes, long OutputBytes, TimeSpan Elapsed);

/// <summary>The library's front door: recipe in, finished Hugging Face model folder out.</summary>
public static class Merger
{
    public static string Version { get; } =
        typeof(Merger).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    public static MergeResult Run(MergeRecipe recipe, string outputPath, MergeOptions options, Diagnostics diagnostics,
        Action<MergeProgress>? progress = null, CancellationToken cancellation = default)
    {
        var clock = Stopwatch.StartNew();
        using var models = ModelSet.Open(recipe, diagnostics, options.NamedModels, raw: options.RawTensors is not null);
        var plan = Planner.Create(recipe, models, new PlanOptions(options.AllowCrimes, options.Seed, options.RawTensors), diagnostics);

        using var folder = OutputFolder.Prepare(outputPath, options.Overwrite, models.All.Select(m => m.Location));
        if (!options.Execution.StrictMemoryLimit)
            foreach (var need in MergeExecutor.OversizedWholeTensors(plan, options.Execution))
                diagnostics.Warn($"{need}; it runs alone above the default budget (set --memory-limit to refuse instead)");
        var shards = ShardPlan.Create(plan.Jobs.Select(j => j.Output).ToList(), options.OutShardSize);
        using (var writer = new ShardedWriter(folder.Temporary, shards, new Dictionary<string, string> { ["alloy_version"] = Version }))
        {
            MergeExecutor.Run(plan, writer, options.Execution, progress, cancellation);
            writer.Complete();
        }
        WriteSideFiles(plan, models, folder, options, diagnostics);
        folder.Commit();
        return new MergeResult(folder.Target, plan.Jobs.Count, shards.Shards.Count, plan.InputBytes, plan.OutputBytes, clock.Elapsed);
    }

    private static void WriteSideFiles(MergePlan plan, ModelSet models, OutputFolder folder, MergeOptions options, Diagnostics diagnostics)
    {
        var donor = plan.Donor;
        if (donor.Checkpoint.Config is not null)
            OutputConfig.Write(OutputConfig.Build(plan), Path.Combine(folder.Temporary, "config.json"));
        else if (options.RawTensors is null)
            diagnostics.Warn($"donor model '{donor.Name}' has no config.json, so the output has none");

        // With a merged vocabulary the tokenizer is written new (whatever --copy-tokenizer says, as mergekit does).
        bool copyTokenizer = options.CopyTokenizer && plan.Tokenizer?.Vocabulary is null;
        if (Directory.Exists(donor.Location))
            DonorFiles.Copy(donor.Location, folder.Temporary, copyTokenizer);
        TokenizerOutput.Write(plan.Tokenizer, folder.Temporary, copyTokenizer && Directory.Exists(donor.Location), diagnostics);

        if (options.WriteModelCard)
        {
            File.WriteAllText(Path.Combine(folder.Temporary, "README.md"), ModelCard.Render(plan, Path.GetFileName(folder.Target), models.All));
            File.WriteAllText(Path.Combine(folder.Temporary, "mergekit_config.yml"), plan.Recipe.ToYaml());
        }
    }
}
