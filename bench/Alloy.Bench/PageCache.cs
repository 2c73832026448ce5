using System.Runtime.InteropServices;

namespace Alloy.Bench;

/// <summary>How the page cache is prepared before every measured run, identically for every column.</summary>
public enum CacheMode
{
    /// <summary>sync, then drop the page cache (needs root): every run reads its inputs from the disk.</summary>
    Cold,

    /// <summary>Read every input file first: every run reads its inputs from memory.</summary>
    Warm,
}

public static partial class PageCache
{
    private const string DropCaches = "/proc/sys/vm/drop_caches";

    /// <summary>Whether this process may drop the page cache (root, and /proc/sys writable).</summary>
    public static bool CanDrop()
    {
        try
        {
            Sync();
            File.WriteAllText(DropCaches, "3");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>
    /// Prepares for one run. Both modes first flush the previous run's output (so its write-back does not land in the
    /// next run's time); cold then drops every cached page, warm reads the run's inputs into the cache.
    /// </summary>
    public static void Prepare(CacheMode mode, IEnumerable<string> inputs)
    {
        Sync();
        if (mode == CacheMode.Cold)
        {
            File.WriteAllText(DropCaches, "3");
            return;
        }
        var buffer = new byte[4 << 20];
        foreach (var path in inputs)
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
            while (stream.Read(buffer) > 0) { }
        }
    }

    public static void Sync() => Native.sync();

    private static partial class Native
    {
        [LibraryImport("libc")]
        public static partial void sync();
    }
}
