using System.Diagnostics;
using Alloy.Tests.Support;

namespace Alloy.Tests.Robustness;

/// <summary>
/// Inputs that are not regular files are refused before they are opened, in one line: a named pipe would block the
/// merge forever, a link to /dev/zero would be copied until the disk is full. And the output's own limits: its name's
/// length, and a model listed over and over.
/// </summary>
public sealed class SpecialFileTests(ModelFamily models) : IClassFixture<ModelFamily>, IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    /// <summary>A copy of the base model whose <paramref name="name"/> is made by <paramref name="make"/>.</summary>
    private string BaseWith(string name, Action<string> make)
    {
        var folder = _work["base-" + name.Replace('.', '-')];
        Directory.CreateDirectory(folder);
        foreach (var file in Directory.GetFiles(models.Base))
            File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        File.Delete(Path.Combine(folder, name));
        make(Path.Combine(folder, name));
        return folder;
    }

    private static void NamedPipe(string path)
    {
        using var mkfifo = Process.Start("mkfifo", [path]);
        mkfifo.WaitForExit();
        Assert.Equal(0, mkfifo.ExitCode);
    }

    private string Recipe(string baseModel) =>
        _work.Write(
            $"recipe-{Guid.NewGuid():N}.yml",
            $"merge_method: task_arithmetic\nbase_model: {baseModel}\nmodels:\n  - model: {models.FineTunes[0]}\n"
                + "    parameters: {weight: 0.5}\n"
        );

    /// <summary>The merge must fail in one line naming <paramref name="expected"/>, and not hang on the way.</summary>
    private void FailsWithin60Seconds(string recipe, string expected)
    {
        var run = Task.Run(() => AlloyCli.Fails(recipe, _work["out"], expected));
        Assert.True(run.Wait(TimeSpan.FromSeconds(60)), "the merge hung on a special file");
    }

    [Theory]
    [InlineData("model.safetensors")]
    [InlineData("config.json")]
    [InlineData("tokenizer.json")]
    [InlineData("generation_config.json")]
    public void A_named_pipe_in_a_model_folder_is_refused_not_waited_on(string name) =>
        FailsWithin60Seconds(Recipe(BaseWith(name, NamedPipe)), $"{name}: is a named pipe (FIFO), not a regular file");

    [Theory]
    [InlineData("tokenizer.json")]
    [InlineData("generation_config.json")]
    public void A_link_to_a_device_is_refused_not_copied(string name) =>
        FailsWithin60Seconds(
            Recipe(BaseWith(name, path => File.CreateSymbolicLink(path, "/dev/zero"))),
            $"{name}: is a character device, not a regular file"
        );

    [Fact]
    public void A_link_to_a_regular_file_is_followed()
    {
        var folder = BaseWith("generation_config.json", path =>
            File.CreateSymbolicLink(path, _work.Write("g.json", "{}"))
        );
        AlloyCli.Merge(Recipe(folder), _work["out"]);
        Assert.Equal("{}", File.ReadAllText(Path.Combine(_work["out"], "generation_config.json")));
    }

    [Fact]
    public async Task A_recipe_may_come_from_a_pipe()
    {
        // alloy merge <(make-recipe) OUT: the recipe is the one input a user hands over as a stream.
        var pipe = _work["recipe.pipe"];
        NamedPipe(pipe);
        var writer = Task.Run(() => File.WriteAllText(pipe, File.ReadAllText(Recipe(models.Base))));
        AlloyCli.Merge(pipe, _work["out"]);
        await writer.WaitAsync(TimeSpan.FromSeconds(60));
    }

    [Fact]
    public void An_output_name_up_to_255_bytes_works_and_a_longer_one_is_refused_with_the_limit()
    {
        var recipe = Recipe(models.Base);
        var longest = _work[new string('m', 255)];
        AlloyCli.Merge(recipe, longest);
        Assert.True(File.Exists(Path.Combine(longest, "model.safetensors")));
        AlloyCli.Fails(
            recipe,
            _work[new string('é', 128)],
            $"output folder name '{new string('é', 128)}' is 256 bytes long; file systems take names of at most "
                + "255 bytes"
        );
    }

    [Fact]
    public void A_model_listed_ten_thousand_times_is_refused_at_once_with_the_count()
    {
        var entries = string.Concat(
            Enumerable.Repeat($"  - model: {models.FineTunes[0]}\n    parameters: {{weight: 1}}\n", 10_000)
        );
        var recipe = _work.Write("many.yml", "merge_method: linear\nmodels:\n" + entries);
        var clock = Stopwatch.StartNew();
        AlloyCli.Fails(
            recipe,
            _work["out"],
            $"many.yml:5:5: model '{models.FineTunes[0]}' is listed 10000 times (first at line 3)"
        );
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed}");
    }

    [Fact]
    public void The_same_model_with_other_layers_in_one_slice_is_not_a_repeat()
    {
        var recipe = _work.Write(
            "self.yml",
            $"""
            merge_method: linear
            slices:
              - sources:
                  - model: {models.Base}
                    layer_range: [0, 2]
                    parameters: {"{weight: 1}"}
                  - model: {models.Base}
                    layer_range: [2, 4]
                    parameters: {"{weight: 1}"}
            """
        );
        AlloyCli.Merge(recipe, _work["out"]);
        var again = _work.Write("again.yml", File.ReadAllText(recipe).Replace("[2, 4]", "[0, 2]"));
        AlloyCli.Fails(again, _work["out2"], "with layers [0, 2] is listed 2 times");
    }
}
