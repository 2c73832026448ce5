namespace Alloy.Checkpoints;

/// <summary>
/// Resolves a model reference ("path/to/model", "org/name") to a local folder or file: the path itself, the path
/// relative to search directories, or a snapshot in the local Hugging Face cache. Alloy never downloads.
/// </summary>
public static class ModelLocator
{
    /// <summary>
    /// Resolves <paramref name="pathOrRepoId"/>: (a) an existing path, as given or relative to each of
    /// <paramref name="searchDirectories"/> in order; (b) a Hugging Face repo id found in the local cache at
    /// <paramref name="revision"/> (default "main"; a branch or tag under refs/, else a commit hash); (c) otherwise an
    /// <see cref="AlloyException"/>. The revision is ignored for local paths, as mergekit does.
    /// </summary>
    public static string Resolve(string pathOrRepoId, string? revision, IReadOnlyList<string> searchDirectories) =>
        Resolve(pathOrRepoId, revision, searchDirectories, HuggingFaceCacheDirectory());

    /// <summary>
    /// As <see cref="Resolve(string, string?, IReadOnlyList{string})"/>, with an explicit hub cache folder (mergekit's
    /// <c>--transformers-cache</c>).
    /// </summary>
    public static string Resolve(
        string pathOrRepoId,
        string? revision,
        IReadOnlyList<string> searchDirectories,
        string hubCache
    )
    {
        ArgumentException.ThrowIfNullOrEmpty(pathOrRepoId);
        ArgumentNullException.ThrowIfNull(searchDirectories);

        string path = ExpandHome(pathOrRepoId);
        if (Exists(path))
            return FullPath(path);
        if (!Path.IsPathRooted(path))
        {
            foreach (var directory in searchDirectories)
            {
                string candidate = Path.Combine(directory, path);
                if (Exists(candidate))
                    return FullPath(candidate);
            }
        }

        if (!LooksLikeRepoId(pathOrRepoId))
        {
            var looked = new[] { Directory.GetCurrentDirectory() }
                .Concat(Path.IsPathRooted(path) ? [] : searchDirectories)
                .Select(Path.GetFullPath)
                .Distinct(StringComparer.Ordinal);
            throw new AlloyException(
                Path.IsPathRooted(path)
                    ? $"model path '{pathOrRepoId}' not found: no such file or folder"
                    : $"model path '{pathOrRepoId}' not found: no such file or folder (looked in "
                        + $"{string.Join(", ", looked)})"
            );
        }

        string rev = string.IsNullOrEmpty(revision) ? "main" : revision;
        if (FindInCache(hubCache, pathOrRepoId, rev) is { } snapshot)
            return snapshot;

        string shown = rev == "main" ? pathOrRepoId : $"{pathOrRepoId}@{rev}";
        string download = rev == "main" ? pathOrRepoId : $"{pathOrRepoId} --revision {rev}";
        throw new AlloyException(
            $"model '{shown}' not found: no such local folder, and not in the Hugging Face cache ({hubCache}); Alloy "
                + $"does not download models — fetch it first (e.g. huggingface-cli download {download}) and use its "
                + $"path"
        );
    }

    /// <summary>
    /// The hub cache as huggingface_hub computes it: $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE (legacy), else
    /// $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
    /// </summary>
    public static string HuggingFaceCacheDirectory()
    {
        if (Env("HF_HUB_CACHE") is { } hubCache)
            return ExpandHome(hubCache);
        if (Env("HUGGINGFACE_HUB_CACHE") is { } legacy)
            return ExpandHome(legacy);
        if (Env("HF_HOME") is { } home)
            return Path.Combine(ExpandHome(home), "hub");
        string cache = Env("XDG_CACHE_HOME") is { } xdg ? ExpandHome(xdg) : Path.Combine(Home(), ".cache");
        return Path.Combine(cache, "huggingface", "hub");
    }

    /// <summary>
    /// Where Alloy keeps what it computes once and reuses (statistics from data): $ALLOY_CACHE, else
    /// $XDG_CACHE_HOME/alloy, else ~/.cache/alloy.
    /// </summary>
    public static string AlloyCacheDirectory() =>
        Env("ALLOY_CACHE") is { } alloy ? ExpandHome(alloy)
        : Env("XDG_CACHE_HOME") is { } xdg ? Path.Combine(ExpandHome(xdg), "alloy")
        : Path.Combine(Home(), ".cache", "alloy");

    /// <summary>
    /// "name" or "org/name" in Hugging Face's alphabet; paths (leading /, ., ~ or more slashes) are not.
    /// </summary>
    internal static bool LooksLikeRepoId(string text)
    {
        var parts = text.Split('/');
        return parts.Length is 1 or 2
            && parts.All(part =>
                part.Length > 0
                && part.Length <= 96
                && part[0] is not ('.' or '-' or '~')
                && part.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')
                && !part.Contains("..")
            );
    }

    private static string? FindInCache(string hubCache, string repoId, string revision)
    {
        // A revision becomes a path below refs/ or snapshots/; refuse anything that could climb out.
        if (revision.Split('/', '\\').Any(s => s is "" or "." or "..") || Path.IsPathRooted(revision))
            return null;

        string repoFolder = Path.Combine(hubCache, "models--" + repoId.Replace("/", "--", StringComparison.Ordinal));
        if (!Directory.Exists(repoFolder))
            return null;

        string commit = revision;
        string refFile = Path.Combine(repoFolder, "refs", revision);
        if (File.Exists(refFile))
        {
            try
            {
                commit = InputFile.ReadAllText(refFile).Trim();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new AlloyException($"{refFile}: cannot read: {Messages.OneLine(e.Message)}", e);
            }
            if (commit.Length == 0 || commit.IndexOfAny(['/', '\\']) >= 0 || commit is "." or "..")
                return null;
        }
        string snapshot = Path.Combine(repoFolder, "snapshots", commit);
        return Directory.Exists(snapshot) ? Path.GetFullPath(snapshot) : null;
    }

    private static string FullPath(string path) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));

    private static bool Exists(string path) => Directory.Exists(path) || File.Exists(path);

    private static string ExpandHome(string path) =>
        path == "~" ? Home()
        : path.StartsWith("~/", StringComparison.Ordinal) ? Path.Combine(Home(), path[2..])
        : path;

    private static string Home() => Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);

    private static string? Env(string name) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : null;
}
