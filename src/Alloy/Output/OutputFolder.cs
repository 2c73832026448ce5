using System.Text.RegularExpressions;
using Alloy.Checkpoints;

namespace Alloy.Output;

/// <summary>
/// The output is written into a temporary folder beside the target and moved into place only when complete, so an
/// interrupted merge never leaves a half model where a finished one is expected. A failed or cancelled run removes its
/// temporary folder and the parent folders it created; a killed one leaves its temporary folder, which the next run
/// into the same parent removes (<see cref="OutputLease"/>). Input folders are never written.
/// </summary>
public sealed class OutputFolder : IDisposable
{
    /// <summary>The longest name (in UTF-8 bytes) that Linux, macOS and Windows file systems take.</summary>
    public const int MaxNameBytes = 255;

    private readonly OutputLease _lease;
    private readonly IReadOnlyList<string> _createdParents;
    private bool _committed;

    private OutputFolder(string target, OutputLease lease, bool overwrite, IReadOnlyList<string> createdParents)
    {
        Target = target;
        _lease = lease;
        Overwrite = overwrite;
        _createdParents = createdParents;
    }

    public string Target { get; }

    /// <summary>Where files are written until <see cref="Commit"/>.</summary>
    public string Temporary => _lease.Path;

    private bool Overwrite { get; }

    /// <summary>
    /// Checks the target before any work starts, removes what killed runs left beside it, and creates the temporary
    /// folder (and any missing parent folders).
    /// </summary>
    public static OutputFolder Prepare(
        string target,
        bool overwrite,
        IEnumerable<string> inputLocations,
        Diagnostics? diagnostics = null
    )
    {
        var full = Check(target, overwrite, inputLocations);
        var parent = Path.GetDirectoryName(full)
            ?? throw new AlloyException($"output path '{target}' has no parent folder");
        var created = new List<string>();
        for (
            var folder = parent;
            folder is not null && !Directory.Exists(folder);
            folder = Path.GetDirectoryName(folder)
        )
            created.Add(folder);
        Directory.CreateDirectory(parent);
        foreach (var (name, bytes) in OutputLease.RemoveAbandoned(parent))
            diagnostics?.Warn(
                $"removed {Path.Combine(parent, name)} ({ByteSize.Format(bytes)}), left by an earlier run that was "
                    + "killed"
            );
        var lease = OutputLease.Take(parent);
        try
        {
            Directory.CreateDirectory(lease.Path);
        }
        catch
        {
            lease.Dispose();
            RemoveEmpty(created);
            throw;
        }
        return new OutputFolder(full, lease, overwrite, created);
    }

    /// <summary>
    /// Refuses a target inside (or holding) an input model, a file, or a non-empty folder that --overwrite may not
    /// replace; creates nothing. Returns the target's full path.
    /// </summary>
    public static string Check(string target, bool overwrite, IEnumerable<string> inputLocations)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(target));
        int nameBytes = System.Text.Encoding.UTF8.GetByteCount(Path.GetFileName(full));
        if (nameBytes > MaxNameBytes)
            throw new AlloyException(
                $"output folder name '{Path.GetFileName(full)}' is {nameBytes} bytes long; file systems take names of "
                    + $"at most {MaxNameBytes} bytes"
            );
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
            old = Temporary + OutputLease.OldSuffix;
            Directory.Move(Target, old);
        }
        Directory.Move(Temporary, Target);
        _committed = true;
        if (old is not null)
            Directory.Delete(old, recursive: true);
    }

    public void Dispose()
    {
        if (_committed)
        {
            _lease.Dispose();
            return;
        }
        Quietly(() => Directory.Delete(Temporary, recursive: true));
        // The lease's lock file sits in the parent: release it before asking whether the parent is empty.
        _lease.Dispose();
        Quietly(() => RemoveEmpty(_createdParents));
    }

    /// <summary>Cleaning up after a failure must not hide the failure.</summary>
    private static void Quietly(Action cleanUp)
    {
        try
        {
            cleanUp();
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>Removes the folders this run created for the output, deepest first, while they are empty.</summary>
    private static void RemoveEmpty(IReadOnlyList<string> created)
    {
        foreach (var folder in created)
        {
            if (!Directory.Exists(folder) || Directory.EnumerateFileSystemEntries(folder).Any())
                return;
            Directory.Delete(folder);
        }
    }

    /// <summary>
    /// The names a model output holds: what a merge or training writes (weights, index, config, tokenizer and
    /// generation files, model card, recipe, side outputs in emr/, learnt coefficients and masks, training metrics),
    /// what an adapter folder holds, and what mergekit writes.
    /// --overwrite replaces a folder holding nothing else, so it never deletes a file of the user's.
    /// </summary>
    private static readonly Regex ModelOutputFile = new(
        @"^(?:model(?:-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json|pytorch_model(?:-\d{5}-of-\d{5})?\.bin"
            + @"|pytorch_model\.bin\.index\.json|config\.json|README\.md|mergekit_config\.yml|mergekit_moe_config\.yml"
            + @"|metrics\.jsonl|loss\.png"
            + @"|emr/[^/]+\.safetensors|emr/rescalers\.json|emr/README\.md|adamerging\.json|concrete_mask\.safetensors"
            + @"|adapter_model\.safetensors|adapter_config\.json)$",
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
