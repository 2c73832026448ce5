using System.Globalization;
using System.Text.RegularExpressions;

namespace Alloy.Output;

/// <summary>
/// A name for work in progress beside an output (<c>.alloy-tmp-PID-RANDOM</c>, a folder or a file), held for as long
/// as this process lives by an exclusive lock on <c>.alloy-tmp-PID-RANDOM.lock</c>. The OS drops the lock when the
/// process dies, however it dies, so a later run can tell an abandoned temporary (its lock free) from one a live
/// process is writing (its lock held) and remove only the first kind. The name does not contain the output's, so an
/// output name of up to the file system's 255 bytes still leaves room for it.
/// </summary>
public sealed partial class OutputLease : IDisposable
{
    private const string Prefix = ".alloy-tmp-";
    private const string LockSuffix = ".lock";

    /// <summary>The suffix of a replaced output, moved aside until the new one is in place.</summary>
    public const string OldSuffix = ".old";

    private readonly FileStream _lock;

    private OutputLease(string path, FileStream @lock)
    {
        Path = path;
        _lock = @lock;
    }

    /// <summary>Where the work in progress goes (nothing exists there yet).</summary>
    public string Path { get; }

    /// <summary>Takes a new name in <paramref name="folder"/>, which must exist.</summary>
    public static OutputLease Take(string folder)
    {
        var path = System.IO.Path.Combine(
            folder,
            $"{Prefix}{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..8]}"
        );
        // FileShare.None is an exclusive lock (flock on Unix): released by the OS when the process ends.
        var @lock = new FileStream(path + LockSuffix, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
        return new OutputLease(path, @lock);
    }

    /// <summary>Releases the name; whatever was written at <see cref="Path"/> must be gone or moved by now.</summary>
    public void Dispose()
    {
        _lock.Dispose();
        try
        {
            File.Delete(Path + LockSuffix);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>
    /// Removes the temporaries in <paramref name="folder"/> that no live process holds: those of runs killed before
    /// they could clean up (kill -9, a crash, power loss). Older Alloy versions named them <c>.NAME.alloy-tmp-PID…</c>,
    /// without a lock; those go when their process is gone. Returns what was removed and its size.
    /// </summary>
    public static IReadOnlyList<(string Name, long Bytes)> RemoveAbandoned(string folder)
    {
        var removed = new List<(string, long)>();
        if (!Directory.Exists(folder))
            return removed;
        var names = Directory
            .EnumerateFileSystemEntries(folder, "*alloy-tmp-*")
            .Select(System.IO.Path.GetFileName)
            .OfType<string>()
            .ToList();
        foreach (
            var group in names
                .Select(n => (Name: n, Match: Temporary().Match(n)))
                .Where(x => x.Match.Success)
                .GroupBy(x => x.Match.Groups["stem"].Value)
        )
        {
            var stem = System.IO.Path.Combine(folder, group.Key);
            bool locked = group.Any(x => x.Name.EndsWith(LockSuffix, StringComparison.Ordinal));
            FileStream? held = null;
            try
            {
                if (locked)
                {
                    held = TryLock(stem + LockSuffix);
                    if (held is null)
                        continue; // a live process is writing it
                }
                else if (IsRunning(int.Parse(group.First().Match.Groups["pid"].Value, CultureInfo.InvariantCulture)))
                    continue;
                foreach (var path in new[] { stem, stem + OldSuffix })
                    if (Remove(path) is { } bytes)
                        removed.Add((System.IO.Path.GetFileName(path), bytes));
                if (held is not null)
                    File.Delete(stem + LockSuffix);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            finally
            {
                held?.Dispose();
            }
        }
        return removed;
    }

    /// <summary>The total size of a stale file or folder, after deleting it; null if there was none.</summary>
    private static long? Remove(string path)
    {
        if (Directory.Exists(path))
        {
            long bytes = new DirectoryInfo(path).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);
            Directory.Delete(path, recursive: true);
            return bytes;
        }
        if (File.Exists(path))
        {
            long bytes = new FileInfo(path).Length;
            File.Delete(path);
            return bytes;
        }
        return null;
    }

    private static FileStream? TryLock(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>
    /// This version's names (.alloy-tmp-PID-RANDOM, with .lock or .old) and older versions' (.NAME.alloy-tmp-PID,
    /// optionally -RANDOM and .old); "stem" is the name without .lock or .old.
    /// </summary>
    [GeneratedRegex(
        @"^(?<stem>\.(?:.+\.)?alloy-tmp-(?<pid>\d{1,9})(?:-[0-9a-f]{8})?)(?:\.lock|\.old)?$",
        RegexOptions.CultureInvariant
    )]
    private static partial Regex Temporary();
}
