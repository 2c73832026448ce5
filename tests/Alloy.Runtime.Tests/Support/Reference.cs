using Alloy.Checkpoints;
using Alloy.LinearAlgebra;
using Alloy.Tensors;

namespace Alloy.Runtime.Tests.Support;

/// <summary>The reference models and PyTorch's expected outputs, made by Fixtures/make_reference.py.</summary>
public static class Reference
{
    public static readonly string[] ModelNames =
    [
        "llama-gqa",
        "qwen2-tied",
        "llama3-rope",
        "llama-linear-bias",
        "mistral-window",
        "mixtral",
        "mixtral-per-expert",
        "qwen2-moe",
    ];

    public static string Folder(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", name);

    public static Expected Load(string name)
    {
        using var checkpoint = Checkpoint.Open(
            Path.Combine(AppContext.BaseDirectory, "Fixtures", "expected", name + ".safetensors")
        );
        float[] Read(string tensor)
        {
            var stored = checkpoint.Find(tensor)!;
            var values = new float[stored.Info.ElementCount];
            TensorConvert.ToFloat32(stored.Bytes(0, (int)stored.Info.ByteLength), stored.Info.DType, values);
            return values;
        }
        int[] Ints(string tensor) => [.. Read(tensor).Select(v => (int)v)];
        var tokens = Ints("tokens");
        var lengths = Ints("lengths");
        var sequences = new List<int[]>();
        for (int s = 0, offset = 0; s < lengths.Length; offset += lengths[s], s++)
            sequences.Add(tokens[offset..(offset + lengths[s])]);
        return new Expected(sequences, Read("logits"), Read("inv_freq"), Ints("prompt"), Ints("greedy"));
    }

    /// <summary>
    /// The relative error used throughout: the largest, over token rows, of ‖actual − expected‖₂ / ‖expected‖₂ of the
    /// row's logits (vocabulary-sized vectors).
    /// </summary>
    public static double WorstRowError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, int vocab)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int r = 0; r < expected.Length / vocab; r++)
        {
            double diff = 0,
                norm = 0;
            for (int v = r * vocab; v < (r + 1) * vocab; v++)
            {
                diff += (double)(actual[v] - expected[v]) * (actual[v] - expected[v]);
                norm += (double)expected[v] * expected[v];
            }
            worst = Math.Max(worst, Math.Sqrt(diff / norm));
        }
        return worst;
    }

    /// <summary>The GEMM backends on this machine: managed always, OpenBLAS when libopenblas.so.0 loads.</summary>
    public static IReadOnlyList<string> BackendNames { get; } =
        DenseBackend.OpenBlas is null ? ["managed"] : ["managed", "openblas"];

    public static TheoryData<string> Backends() => [.. BackendNames];

    public static DenseBackend Backend(string name) =>
        name == "managed" ? DenseBackend.Managed : DenseBackend.OpenBlas!;

    public static TheoryData<string, string> ModelsAndBackends()
    {
        var data = new TheoryData<string, string>();
        foreach (var model in ModelNames)
        foreach (var backend in BackendNames)
            data.Add(model, backend);
        return data;
    }
}

public sealed record Expected(
    IReadOnlyList<int[]> Sequences,
    float[] Logits,
    float[] InverseFrequencies,
    int[] Prompt,
    int[] Greedy
);
