using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>alloy merge-raw (mergekit-pytorch): plain state dicts merged by tensor name.</summary>
public sealed class RawMergeTests : IDisposable
{
    private readonly TempFolder _work = new();

    public RawMergeTests()
    {
        // Gapped block numbering (as in diffusion UNets) and a tensor only the second file has.
        TestCheckpoints.Write(
            _work["a"],
            null,
            [("down_blocks.0.conv.weight", [2, 2], [1, 2, 3, 4]), ("down_blocks.2.conv.weight", [2], [10, 20])]
        );
        TestCheckpoints.Write(
            _work["b"],
            null,
            [
                ("down_blocks.0.conv.weight", [2, 2], [3, 4, 5, 6]),
                ("down_blocks.2.conv.weight", [2], [30, 40]),
                ("extra.bias", [1], [7]),
            ]
        );
    }

    public void Dispose() => _work.Dispose();

    private string Recipe(string weightA = "1", string weightB = "1") =>
        _work.Write(
            "raw.yml",
            $"""
            merge_method: linear
            models:
              - model: {_work["a/model.safetensors"]}
                parameters:
                  weight: {weightA}
              - model: {_work["b/model.safetensors"]}
                parameters:
                  weight: {weightB}
            """
        );

    private CliResult Raw(string recipe, params string[] extra) =>
        AlloyCli.Run(["merge-raw", recipe, _work["out"], "--quiet", .. extra]);

    [Fact]
    public void A_tensor_missing_from_some_models_is_an_error_by_default()
    {
        var result = Raw(Recipe());
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("'extra.bias' is missing", result.Stderr);
        Assert.Contains("--tensor-union", result.Stderr);
    }

    [Fact]
    public void Union_merges_every_tensor_from_the_models_that_have_it()
    {
        var result = Raw(Recipe(), "-u");
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal("", result.Stderr);
        var output = TestCheckpoints.ReadAll(_work["out"]);
        Assert.Equal([2f, 3f, 4f, 5f], output["down_blocks.0.conv.weight"]);
        Assert.Equal([20f, 30f], output["down_blocks.2.conv.weight"]);
        Assert.Equal([7f], output["extra.bias"]);
        Assert.False(File.Exists(_work["out/config.json"]));
    }

    [Fact]
    public void Intersection_leaves_out_tensors_some_models_lack()
    {
        Assert.Equal(0, Raw(Recipe(), "-i").ExitCode);
        Assert.Equal(
            ["down_blocks.0.conv.weight", "down_blocks.2.conv.weight"],
            TestCheckpoints.ReadAll(_work["out"]).Keys.Order()
        );
    }

    [Fact]
    public void A_weight_of_zero_counts()
    {
        // mergekit-pytorch takes per-model values only when truthy, so weight 0 silently became the default.
        Assert.Equal(0, Raw(Recipe(weightA: "0"), "-i").ExitCode);
        Assert.Equal([30f, 40f], TestCheckpoints.ReadAll(_work["out"])["down_blocks.2.conv.weight"]);
    }

    [Fact]
    public void Filters_match_tensor_names_and_gradients_take_their_first_value()
    {
        var recipe = _work.Write(
            "raw.yml",
            $"""
            merge_method: linear
            models:
              - model: {_work["a/model.safetensors"]}
                parameters:
                  weight:
                    - filter: down_blocks.2
                      value: [0, 1]
                    - value: 1
              - model: {_work["b/model.safetensors"]}
                parameters:
                  weight: 1
            """
        );
        Assert.Equal(0, Raw(recipe, "-i").ExitCode);
        var output = TestCheckpoints.ReadAll(_work["out"]);
        Assert.Equal([30f, 40f], output["down_blocks.2.conv.weight"]);
        Assert.Equal([2f, 3f, 4f, 5f], output["down_blocks.0.conv.weight"]);
    }

    [Fact]
    public void Both_policies_at_once_are_refused()
    {
        var result = Raw(Recipe(), "-u", "-i");
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("exclude each other", result.Stderr);
    }
}
