using System.Text.RegularExpressions;

namespace Alloy.Output;

/// <summary>
/// The output is written into a temporary folder beside the target and moved into place only when complete, so an
/// interrupted merge never leaves a half model where a finished one is expected. Input folders are never written.
/// </summary>
public sealed class OutputFolder : IDisposable
{
    private bool _committed;

    private OutputFolder(string target, string temporary, bool overwrite)
    {
        Target = target;
        Temporary = temporary;
        Overwrite = overwrite;
    }

    public string Target { get; }

    /// <summary>Where files are written until <see cref="Commit"/>.</summary>
    public string Temporary { get; }

    private bool Overwrite { get; }

    /// <summary>Checks the target before any work starts and creates the temporary folder.</summary>
    public static OutputFolder Prepare(string target, bool overwrite, IEnumerable<string> inputLocations)
    {
        var full = Check(target, overwrite, inputLocations);
        var parent = Path.GetDirectoryName(full)
            ?? throw new AlloyException($"output path '{target}' has no parent folder");
        Directory.CreateDirectory(parent);
        var temporary = Path.Combine(
            parent,
            $".{Path.GetFileName(full)}.alloy-tmp-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..8]}"
        );
        Directory.CreateDirectory(temporary);
        return new OutputFolder(full, temporary, overwrite);
    }

    /// <summary>
    /// Refuses a target inside (or holding) an input model, a file, or a non-empty folder that --overwrite may not
    /// replace; creates nothing. Returns the target's full path.
    /// </summary>
    public static string Check(string target, bool overwrite, IEnumerable<string> inputLocations)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(target));
        foreach (var input in inputLocations)
        {
            var inputFull = Path.TrimEndingDirectorySeparator(Path.GetFullPath(input));
            var inputFolder = File.Exists(inputFull) ? Path.GetDirectoryName(inputFull)! : inputFull;
            if (IsSameOrInside(full, inputFolder))
                throw new AlloyException(
                    $"output folder '{target}' is inside input model '{input}'; Alloy never writes into an input "
                        + $"model's folder"
                );
            if (IsSameOrInside(inputFolder, full))
                throw new AlloyException(
                    $"output folder '{target}' contains input model '{input}'; choose another output folder"
                );
        }
        if (File.Exists(full))
            throw new AlloyException($"output path '{target}' is a file; give a folder");
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
        {
            if (!overwrite)
                throw new AlloyException($"output folder '{target}' is not empty; pass --overwrite to replace it");
            CheckReplaceable(full, target);
        }
        return full;
    }

    /// <summary>Refuses an output file (a report, statistics) inside an input model's folder.</summary>
    public static void CheckFileOutside(string file, string inputModel)
    {
        var inputFull = Path.TrimEndingDirectorySeparator(Path.GetFullPath(inputModel));
        if (
            IsSameOrInside(
                Path.GetFullPath(file),
                File.Exists(inputFull) ? Path.GetDirectoryName(inputFull)! : inputFull
            )
        )
            throw new AlloyException(
                $"output '{file}' is inside input model '{inputModel}'; Alloy never writes into an input model's folder"
            );
    }

    /// <summary>Moves the finished folder into place (replacing the old one only with --overwrite).</summary>
    public void Commit()
    {
        string? old = null;
        if (Directory.Exists(Target))
        {
            if (Directory.EnumerateFileSystemEntries(Target).Any() && !Overwrite)
                throw new AlloyException(
                    $"output folder '{Target}' appeared while merging and is not empty; pass --overwrite to replace it"
                );
            CheckReplaceable(Target, Target);
            old = Temporary + ".old";
            Directory.Move(Target, old);
        }
        Directory.Move(Temporary, Target);
        _committed = true;
        if (old is not null)
            Directory.Delete(old, recursive: true);
    }

    public void Dispose()
    {
        if (_committed || !Directory.Exists(Temporary))
            return;
        try
        {
            Directory.Delete(Temporary, recursive: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>
    /// The names a model output holds: what a merge or training writes (weights, index, config, tokenizer and
    /// generation files, model card, recipe, side outputs in emr/, training metrics) and what mergekit writes.
    /// --overwrite replaces a folder holding nothing else, so it never deletes a file of the user's.
    /// </summary>
    private static readonly Regex ModelOutputFile = new(
        @"^(?:model(?:-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json|pytorch_model(?:-\d{5}-of-\d{5})?\.bin"
            + @"|pytorch_model\.bin\.index\.json|config\.json|README\.md|mergekit_config\.yml|metrics\.jsonl|loss\.png"
            + @"|emr/[^/]+\.safetensors|emr/rescalers\.json|emr/README\.md)$",
        RegexOptions.CultureInvariant
    );

    /// <summary>
    /// Refuses to replace a folder that holds anything a model output does not (named in the message).
    /// </summary>
    private static void CheckReplaceable(string folder, string shown)
    {
        var foreign = Directory
            .EnumerateFileSystemEntries(folder, "*", SearchOption.AllDirectories)
            .Select(path => Path.GetRelativePath(folder, path).Replace(Path.DirectorySeparatorChar, '/'))
            .Where(relative =>
                !(Directory.Exists(Path.Combine(folder, relative)) ? relative == "emr" : IsModelOutputFile(relative))
            )
            .Order(StringComparer.Ordinal)
            .ToList();
        if (foreign.Count == 0)
            return;
        string listed =
            string.Join(", ", foreign.Take(5)) + (foreign.Count > 5 ? $" and {foreign.Count - 5} more" : "");
        throw new AlloyException(
            $"output folder '{shown}' holds files a merge does not write ({listed}); --overwrite replaces only a "
                + $"previous "
                + "model output, so nothing of yours is deleted: choose another folder or move those files"
        );
    }

    private static bool IsModelOutputFile(string relative) =>
        ModelOutputFile.IsMatch(relative)
        || DonorFiles.Tokenizer.Contains(relative)
        || DonorFiles.Always.Contains(relative);

    private static bool IsSameOrInside(string path, string folder) =>
        path.Equals(folder, StringComparison.Ordinal)
        || path.StartsWith(folder + Path.DirectorySeparatorChar, StringComparison.Ordinal);
}
