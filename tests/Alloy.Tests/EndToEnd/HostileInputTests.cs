using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// Inputs a fuzzer found to crash the process or end in an internal error (issue 14): each must get the one-line
/// error and exit code 1 of any bad input, naming the file and, where there is one, the place.
/// </summary>
public sealed class HostileInputTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public HostileInputTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    private string Out => _work["out"];

    [Theory]
    [InlineData("[", 40_000)]
    [InlineData("{a: ", 20_000)]
    public void Deeply_nested_yaml_is_refused_at_the_depth_limit(string opener, int count)
    {
        // Once enough to overflow the stack of a recursive reader (the process died with exit code 134).
        var config = _work.Write(
            "config.yml",
            "merge_method: linear\nmodels: " + string.Concat(Enumerable.Repeat(opener, count)) + "\n"
        );
        var result = AlloyCli.Fails(config, Out, "nested more than 64 levels deep");
        Assert.Contains("config.yml:2:", result.Stderr);
    }

    [Fact]
    public void Deeply_nested_yaml_blocks_are_refused_too()
    {
        var items = string.Concat(Enumerable.Range(0, 100).Select(i => new string(' ', 2 * i) + "- \n"));
        var config = _work.Write("config.yml", $"merge_method: linear\nmodels:\n{items}");
        var result = AlloyCli.Fails(config, Out, "nested more than 64 levels deep");
        Assert.Contains("config.yml:66:", result.Stderr);
    }

    [Theory]
    [InlineData("models: [{model: BASE}\n]\nparameters: {weight: [1\n0]}\n", "config.yml:5:1:")]
    [InlineData("models:\n  - model: BASE\n    parameters:\n      weight: [1,\n0]\n", "config.yml:6:1:")]
    [InlineData("models:\n  - model: BASE\n    parameters: {weight: 1,\n    density: 1}\n", "config.yml:5:5:")]
    public void A_flow_list_continued_without_indentation_is_a_syntax_error_with_its_place(string yaml, string place)
    {
        // YAML 1.2 (YamlDotNet) forbids it; PyYAML would read `[1` + `0]` as the string '1 0', almost never meant.
        var config = _work.Write("config.yml", "merge_method: linear\n" + yaml.Replace("BASE", _models.Base));
        var result = AlloyCli.Fails(
            config,
            Out,
            "YAML syntax error: a line inside '[...]' or '{...}' must be indented"
        );
        Assert.Contains(place, result.Stderr);
    }

    [Fact]
    public void A_flow_list_continued_with_indentation_still_reads()
    {
        var config = _work.Write(
            "config.yml",
            $"merge_method: linear\nmodels: [{{model: {_models.Base}}},\n  {{model: {_models.FineTunes[0]}}}]\n"
                + "parameters: {weight: [1,\n  0.5]}\n"
        );
        var result = AlloyCli.Run("plan", config);
        Assert.True(result.ExitCode == 0, result.Stderr);
    }
}
