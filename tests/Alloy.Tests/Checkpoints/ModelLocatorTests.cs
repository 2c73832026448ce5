using Alloy.Checkpoints;

namespace Alloy.Tests.Checkpoints;

public sealed class ModelLocatorTests : IDisposable
{
    private const string Commit = "0123456789abcdef0123456789abcdef01234567";
    private const string OtherCommit = "fedcba9876543210fedcba9876543210fedcba98";

    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A hub cache holding org/tiny with refs/main → Commit and a second snapshot OtherCommit.</summary>
    private string FakeCache()
    {
        string cache = _dir.Folder("hub");
        string repo = Path.Combine(cache, "models--org--tiny");
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        File.WriteAllText(Path.Combine(repo, "refs", "main"), Commit + "\n");
        File.WriteAllText(Path.Combine(repo, "refs", "v1"), OtherCommit);
        Directory.CreateDirectory(Path.Combine(repo, "snapshots", Commit));
        Directory.CreateDirectory(Path.Combine(repo, "snapshots", OtherCommit));
        Directory.CreateDirectory(Path.Combine(cache, "models--gpt2", "snapshots", Commit));
        return cache;
    }

    [Fact]
    public void Existing_absolute_path()
    {
        string model = _dir.Folder("model");
        Assert.Equal(model, ModelLocator.Resolve(model, revision: "ignored", [], FakeCache()));
    }

    [Fact]
    public void Path_relative_to_the_current_directory()
    {
        string model = _dir.Folder("cwd-model");
        string relative = Path.GetRelativePath(Directory.GetCurrentDirectory(), model);
        Assert.Equal(model, ModelLocator.Resolve(relative, null, [], FakeCache()));
    }

    [Fact]
    public void Path_relative_to_a_search_directory()
    {
        string configDir = _dir.Folder("configs");
        string model = _dir.Folder(Path.Combine("configs", "models", "a"));
        string elsewhere = _dir.Folder("elsewhere");
        Assert.Equal(model, ModelLocator.Resolve("models/a", null, [elsewhere, configDir], FakeCache()));
    }

    [Fact]
    public void First_search_directory_wins()
    {
        string first = _dir.Folder("first");
        string second = _dir.Folder("second");
        string model1 = _dir.Folder(Path.Combine("first", "m"));
        _dir.Folder(Path.Combine("second", "m"));
        Assert.Equal(model1, ModelLocator.Resolve("m", null, [first, second], FakeCache()));
    }

    [Fact]
    public void Local_path_shadows_the_cache()
    {
        string searchDir = _dir.Folder("shadow");
        string model = _dir.Folder(Path.Combine("shadow", "org", "tiny"));
        Assert.Equal(model, ModelLocator.Resolve("org/tiny", null, [searchDir], FakeCache()));
    }

    [Fact]
    public void Repo_id_resolves_through_refs_main()
    {
        string cache = FakeCache();
        string expected = Path.Combine(cache, "models--org--tiny", "snapshots", Commit);
        Assert.Equal(expected, ModelLocator.Resolve("org/tiny", null, [], cache));
        Assert.Equal(expected, ModelLocator.Resolve("org/tiny", "main", [], cache));
    }

    [Fact]
    public void Repo_id_resolves_a_named_ref()
    {
        string cache = FakeCache();
        Assert.Equal(
            Path.Combine(cache, "models--org--tiny", "snapshots", OtherCommit),
            ModelLocator.Resolve("org/tiny", "v1", [], cache)
        );
    }

    [Fact]
    public void Repo_id_resolves_a_commit_revision()
    {
        string cache = FakeCache();
        Assert.Equal(
            Path.Combine(cache, "models--org--tiny", "snapshots", OtherCommit),
            ModelLocator.Resolve("org/tiny", OtherCommit, [], cache)
        );
    }

    [Fact]
    public void Repo_id_without_an_org()
    {
        string cache = FakeCache();
        Assert.Equal(
            Path.Combine(cache, "models--gpt2", "snapshots", Commit),
            ModelLocator.Resolve("gpt2", Commit, [], cache)
        );
    }

    [Fact]
    public void Not_found_in_the_cache()
    {
        string cache = FakeCache();
        var e = Assert.Throws<AlloyException>(() => ModelLocator.Resolve("org/name", null, [], cache));
        Assert.Equal(
            $"model 'org/name' not found: no such local folder, and not in the Hugging Face cache ({cache}); "
                + "Alloy does not download models — fetch it first (e.g. huggingface-cli download org/name) and use "
                + "its path",
            e.Message
        );
    }

    [Fact]
    public void Revision_missing_from_the_cache_is_named()
    {
        string cache = FakeCache();
        var e = Assert.Throws<AlloyException>(() => ModelLocator.Resolve("org/tiny", "v2", [], cache));
        Assert.StartsWith(
            $"model 'org/tiny@v2' not found: no such local folder, and not in the Hugging Face cache ({cache});",
            e.Message
        );
        Assert.Contains("huggingface-cli download org/tiny --revision v2", e.Message);
    }

    [Theory]
    [InlineData("../escape")]
    [InlineData("refs/../../x")]
    public void Revision_cannot_climb_out_of_the_cache(string revision)
    {
        string cache = FakeCache();
        // Folders that a naive path join of snapshots/<revision> would reach.
        Directory.CreateDirectory(Path.Combine(cache, "models--org--tiny", "escape"));
        Directory.CreateDirectory(Path.Combine(cache, "models--org--tiny", "x"));
        Assert.Throws<AlloyException>(() => ModelLocator.Resolve("org/tiny", revision, [], cache));
    }

    [Fact]
    public void Missing_path_that_is_not_a_repo_id()
    {
        string searchDir = _dir.Folder("search");
        var e = Assert.Throws<AlloyException>(() => ModelLocator.Resolve("./models/x", null, [searchDir], FakeCache()));
        Assert.StartsWith("model path './models/x' not found: no such file or folder (looked in ", e.Message);
        Assert.Contains(searchDir, e.Message);
        Assert.DoesNotContain("Hugging Face", e.Message);
    }

    [Theory]
    [InlineData("org/name", true)]
    [InlineData("gpt2", true)]
    [InlineData("meta-llama/Llama-3.1-8B", true)]
    [InlineData("/abs/path", false)]
    [InlineData("./rel", false)]
    [InlineData("~/models/x", false)]
    [InlineData("a/b/c", false)]
    [InlineData(".hidden", false)]
    [InlineData("org/", false)]
    [InlineData("", false)]
    public void Repo_id_shape(string text, bool expected) => Assert.Equal(expected, ModelLocator.LooksLikeRepoId(text));
}
