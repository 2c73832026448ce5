using Alloy.Checkpoints;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.Checkpoints;

/// <summary>A .bin model merged with a safetensors model through the CLI entry point.</summary>
public sealed class TorchMergeTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    /// <summary>A safetensors model with the tiny-llama fixture's names and shapes and values of its own.</summary>
    private string OtherModel()
    {
        using var twin = Checkpoint.Open(TorchFixtures.Path("tiny-llama.safetensors"));
        var tensors = twin
            .Tensors.Select(
                (t, k) =>
                    (
                        t.Name,
                        t.Info.Shape,
                        Enumerable
                            .Range(0, (int)t.Info.ElementCount)
                            .Select(i => (float)Math.Cos(0.21 * i + k))
                            .ToArray()
                    )
            )
            .ToList();
        TestCheckpoints.Write(_work["other"], TestCheckpoints.LlamaConfig(2), tensors);
        return _work["other"];
    }

    [Fact]
    public void Linear_merge_of_a_bin_model_and_a_safetensors_model()
    {
        string bin = TorchFixtures.Path("tiny-llama");
        string other = OtherModel();
        var config = _work.Write(
            "merge.yml",
            $"""
            models:
              - model: {bin}
                parameters:
                  weight: 0.3
              - model: {other}
                parameters:
                  weight: 0.7
            merge_method: linear
            dtype: float32
            """
        );
        string before = TestCheckpoints.FolderDigest(bin);
        AlloyCli.Merge(config, _work["out"]);

        // Expectations from the safetensors twin, read without the .bin reader.
        var a = TestCheckpoints.ReadAll(TorchFixtures.Path("tiny-llama.safetensors"));
        var b = TestCheckpoints.ReadAll(other);
        var output = TestCheckpoints.ReadAll(_work["out"]);
        Assert.Equal(a.Keys.Order(), output.Keys.Order());
        Assert.Equal(9, output.Count);
        foreach (var (name, actual) in output)
        {
            var expected = Enumerable
                .Range(0, actual.Length)
                .Select(i => 0.3 * a[name][i] + 0.7 * b[name][i])
                .ToArray();
            double scale = Math.Max(a[name].Max(Math.Abs), b[name].Max(Math.Abs));
            Expect.Close(name, expected, actual, DType.F32, scale);
        }
        Assert.Equal(before, TestCheckpoints.FolderDigest(bin));
    }

    [Fact]
    public void A_malicious_bin_stops_the_merge_with_one_line()
    {
        string evil = _work["evil"];
        Directory.CreateDirectory(evil);
        File.Copy(TorchFixtures.Path("refused/posix-system.bin"), Path.Combine(evil, "pytorch_model.bin"));
        var config = _work.Write(
            "merge.yml",
            $"""
            models:
              - model: {evil}
              - model: {OtherModel()}
            merge_method: linear
            parameters:
              weight: 1.0
            """
        );
        AlloyCli.Fails(
            config,
            _work["out"],
            "pytorch_model.bin: refusing to load: the pickle calls posix.system, which is not a tensor (Alloy never "
                + "executes code from checkpoints)"
        );
    }
}
