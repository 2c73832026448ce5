using Alloy.Checkpoints;
using Alloy.Execution;
using Alloy.Recipes;

namespace Alloy;

/// <summary>One stage of a multi-stage merge: its recipe, where it writes, and the stages it reads.</summary>
public sealed record MergeStage(MergeRecipe Recipe, string? Name, string OutputPath, IReadOnlyList<string> DependsOn)
{
    public string DisplayName => Name ?? "(final merge)";
}

public sealed record StageOutcome(MergeStage Stage, bool Skipped, MergeResult? Result);

/// <summary>
/// mergekit-multi: a multi-document recipe whose named documents are intermediate merges written to an intermediate
/// folder and referred to by name from later documents. Stages run in dependency order; a stage whose output is
/// already complete, was made from the same recipe text, and is newer than the stages it reads is skipped.
/// </summary>
public static class MultiMerge
{
    public static IReadOnlyList<MergeStage> Plan(
        IReadOnlyList<MergeRecipe> documents,
        string intermediateFolder,
        string? outputPath
    )
    {
        var named = documents.Where(d => d.Name is not null).ToDictionary(d => d.Name!, d => d, StringComparer.Ordinal);
        var unnamed = documents.Where(d => d.Name is null).ToList();
        if (unnamed.Count > 0 && outputPath is null)
            throw new AlloyException(
                $"{unnamed[0].MethodLocation}: this document has no 'name', so it is the final merge and needs "
                    + $"--out-path"
            );
        if (unnamed.Count == 0 && outputPath is not null)
            throw new AlloyException(
                "--out-path was given, but every document has a 'name' (each is written to the intermediate folder); "
                    + "remove the name of the final merge"
            );

        var stages = documents
            .Select(d => new MergeStage(
                d,
                d.Name,
                d.Name is null
                    ? Path.GetFullPath(outputPath!)
                    : Path.Combine(Path.GetFullPath(intermediateFolder), d.Name),
                d.ReferencedModels()
                    .Concat(d.TokenizerModels())
                    .Select(r => r.Path)
                    .Where(named.ContainsKey)
                    .Distinct()
                    .ToList()
            ))
            .ToList();
        return Order(stages);
    }

    /// <summary>Dependency order, keeping document order among independent stages; cycles are refused.</summary>
    private static List<MergeStage> Order(List<MergeStage> stages)
    {
        var ordered = new List<MergeStage>();
        var done = new HashSet<string?>();
        var remaining = new List<MergeStage>(stages);
        while (remaining.Count > 0)
        {
            var ready = remaining.FirstOrDefault(s => s.DependsOn.All(d => done.Contains(d)));
            if (ready is null)
                throw new AlloyException(
                    $"the merges {string.Join(", ", remaining.Select(s => $"'{s.DisplayName}'"))} depend on each "
                        + $"other in a cycle; a merge cannot use its own output"
                );
            ordered.Add(ready);
            done.Add(ready.Name);
            remaining.Remove(ready);
        }
        return ordered;
    }

    public static IReadOnlyList<StageOutcome> Run(
        IReadOnlyList<MergeStage> stages,
        MergeOptions options,
        bool lazy,
        Diagnostics diagnostics,
        Action<MergeStage>? starting = null,
        Action<MergeProgress>? progress = null,
        CancellationToken cancellation = default
    )
    {
        var outputs = stages
            .Where(s => s.Name is not null)
            .ToDictionary(s => s.Name!, s => s.OutputPath, StringComparer.Ordinal);
        var outcomes = new List<StageOutcome>();
        var merged = new HashSet<string?>();
        foreach (var stage in stages)
        {
            cancellation.ThrowIfCancellationRequested();
            bool inputsChanged = stage.DependsOn.Any(d => merged.Contains(d) || IsNewer(outputs[d], stage.OutputPath));
            if (lazy && !inputsChanged && IsComplete(stage))
            {
                diagnostics.Info($"{stage.DisplayName}: {stage.OutputPath} is up to date; skipped");
                outcomes.Add(new StageOutcome(stage, true, null));
                continue;
            }
            starting?.Invoke(stage);
            // Intermediate folders belong to the multi-stage merge, so a stale one is replaced; the final output
            // follows the user's --overwrite like any merge.
            var stageOptions = options with
            {
                NamedModels = outputs,
                Overwrite = options.Overwrite || stage.Name is not null,
            };
            outcomes.Add(
                new StageOutcome(
                    stage,
                    false,
                    Merger.Run(stage.Recipe, stage.OutputPath, stageOptions, diagnostics, progress, cancellation)
                )
            );
            merged.Add(stage.Name);
        }
        return outcomes;
    }

    /// <summary>
    /// True when the folder <paramref name="input"/> was written after <paramref name="output"/> (a later re-merge of
    /// an input).
    /// </summary>
    private static bool IsNewer(string input, string output) =>
        Directory.Exists(input)
        && Directory.Exists(output)
        && Directory.GetLastWriteTimeUtc(input) > Directory.GetLastWriteTimeUtc(output);

    /// <summary>
    /// mergekit's rule (config.json and a model file present), made safe by Alloy's atomic output; when the folder
    /// records its recipe, it must be this stage's recipe, so editing a stage makes it run again.
    /// </summary>
    public static bool IsComplete(MergeStage stage)
    {
        var folder = stage.OutputPath;
        bool hasModel =
            File.Exists(Path.Combine(folder, Checkpoint.SingleFileName))
            || File.Exists(Path.Combine(folder, Checkpoint.IndexFileName));
        if (!hasModel || !File.Exists(Path.Combine(folder, "config.json")))
            return false;
        var recorded = Path.Combine(folder, "mergekit_config.yml");
        return !File.Exists(recorded) || File.ReadAllText(recorded) == stage.Recipe.ToYaml();
    }
}
