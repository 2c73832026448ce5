using System.Text.Json.Nodes;
using Alloy.Adapters;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.Adapters;

/// <summary>Small hand-made PEFT adapters of one module and the CLI's merge of them, for merge-adapters tests.
/// </summary>
internal static class TestAdapters
{
    public const string Module = "model.layers.0.mlp.up_proj";

    /// <summary>
    /// Writes an adapter with B [out, r] and A [r, in] in float32; <paramref name="scale"/> sets lora_alpha = scale·r.
    /// </summary>
    public static string Write(string folder, double[,] b, double[,] a, double scale = 1)
    {
        Directory.CreateDirectory(folder);
        int rank = a.GetLength(0);
        AdapterFolder.Write(
            folder,
            [
                new($"{AdapterFolder.Prefix}{Module}.lora_A.weight", DType.F32, [rank, a.GetLength(1)], Flat(a)),
                new($"{AdapterFolder.Prefix}{Module}.lora_B.weight", DType.F32, [b.GetLength(0), rank], Flat(b)),
            ],
            [(Module, rank)],
            [],
            null,
            "test adapter\n"
        );
        var configPath = Path.Combine(folder, "adapter_config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["lora_alpha"] = scale * rank;
        File.WriteAllText(configPath, config.ToJsonString());
        return folder;
    }

    private static float[] Flat(double[,] m) => [.. ReferenceLinearAlgebra.ToRowMajor(m).Select(v => (float)v)];

    /// <summary>A matrix of uniform values in [−1, 1) from a seeded generator.</summary>
    public static double[,] Random(int rows, int cols, int seed)
    {
        var random = new System.Random(seed);
        var m = new double[rows, cols];
        for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            m[i, j] = 2 * random.NextDouble() - 1;
        return m;
    }

    /// <summary>Runs merge-adapters on the adapters (DIR or DIR:WEIGHT) into <paramref name="output"/>.</summary>
    public static CliResult Merge(string type, string output, string[] adapters, params string[] extra) =>
        AlloyCli.Run([
            "merge-adapters",
            .. adapters.SelectMany(a => new[] { "--adapter", a }),
            "--combination-type",
            type,
            "--out-path",
            output,
            .. extra,
        ]);

    /// <summary>A module's B [out, r] and A [r, in] in an adapter folder (a merged one's scale is 1).</summary>
    public static (double[,] B, double[,] A) Factors(string adapter, string module = Module)
    {
        string file = Path.Combine(adapter, "adapter_model.safetensors");
        return (
            TestCheckpoints.Matrix(file, $"{AdapterFolder.Prefix}{module}.lora_B.weight"),
            TestCheckpoints.Matrix(file, $"{AdapterFolder.Prefix}{module}.lora_A.weight")
        );
    }

    /// <summary>Merges and returns the merged factors, failing the test with the CLI's error if it fails.</summary>
    public static (double[,] B, double[,] A) Merged(
        string type,
        string output,
        string[] adapters,
        params string[] extra
    )
    {
        var result = Merge(type, output, adapters, extra);
        Assert.True(result.ExitCode == 0, result.Stderr);
        return Factors(output);
    }

    /// <summary>A failure: exit code 1 and one line on stderr, containing <paramref name="expected"/>.</summary>
    public static void Refused(CliResult result, string expected)
    {
        Assert.Equal(1, result.ExitCode);
        Assert.Contains(expected, result.Stderr);
        Assert.Single(result.Stderr.Trim().Split('\n'));
    }
}
