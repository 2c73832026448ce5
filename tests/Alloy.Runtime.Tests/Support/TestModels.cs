using Alloy.Runtime.Models;
using Alloy.Synthetic;
using Alloy.Tensors;

namespace Alloy.Runtime.Tests.Support;

/// <summary>
/// A generated Llama (Alloy.Synthetic) large enough that every product is cut into several tiles and attention into
/// several query blocks, so batch composition, caching and thread count have something to disturb. Written once per
/// test run and deleted when it ends.
/// </summary>
public static class TestModels
{
    public static TinyLlamaSpec Spec { get; } =
        new()
        {
            VocabSize = 700,
            HiddenSize = 192,
            IntermediateSize = 448,
            Layers = 2,
            Heads = 6,
            KeyValueHeads = 2,
            DType = DType.BF16,
        };

    private static readonly Lazy<string> s_folder = new(() =>
    {
        var folder = Path.Combine(Path.GetTempPath(), "alloy-runtime-tests-" + Guid.NewGuid().ToString("N")[..12]);
        TinyLlama.Write(folder, Spec);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Directory.Delete(folder, recursive: true);
        return folder;
    });

    /// <summary>The same weights as a Mistral model with a 300-token sliding window.</summary>
    private static readonly Lazy<string> s_windowed = new(() =>
    {
        var folder = Path.Combine(Folder, "windowed");
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(Folder, "model.safetensors"), Path.Combine(folder, "model.safetensors"));
        var config = System
            .Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(Folder, "config.json")))!
            .AsObject();
        config["model_type"] = "mistral";
        config["sliding_window"] = 300;
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString());
        return folder;
    });

    public static string Folder => s_folder.Value;

    public static LlamaModel Load(string backend, int threads = 2, bool windowed = false) =>
        LlamaModel.Load(
            windowed ? s_windowed.Value : Folder,
            new RuntimeOptions { Backend = Reference.Backend(backend), Threads = threads }
        );

    /// <summary>Deterministic token sequences of the given lengths.</summary>
    public static int[][] Sequences(int vocab, params int[] lengths)
    {
        var stream = RandomStream.For(7, "tokens", lengths.Length);
        long next = 0;
        return
        [
            .. lengths.Select(n => Enumerable.Range(0, n).Select(_ => (int)(stream.Uniform(next++) * vocab)).ToArray()),
        ];
    }
}
