using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Alloy.Checkpoints;
using Alloy.Tensors;

namespace Alloy.Tests.Support;

/// <summary>Writes small hand-made checkpoints and reads tensors back as float32 or double.</summary>
public static class TestCheckpoints
{
    public static void Write(
        string folder,
        JsonObject? config,
        IEnumerable<(string Name, long[] Shape, float[] Values)> tensors,
        DType dtype = DType.F32
    )
    {
        Directory.CreateDirectory(folder);
        var list = tensors.ToList();
        var infos = list.Select(t => new TensorInfo(t.Name, dtype, t.Shape)).ToList();
        using (var writer = new ShardedWriter(folder, ShardPlan.Create(infos, 0)))
        {
            foreach (var (info, tensor) in infos.Zip(list))
            {
                var bytes = new byte[info.ByteLength];
                TensorConvert.FromFloat32(tensor.Values, dtype, bytes);
                writer.Append(info.Name, bytes);
            }
            writer.Complete();
        }
        if (config is not null)
            File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString());
    }

    /// <summary>Every tensor of a checkpoint as float32, by name.</summary>
    public static Dictionary<string, float[]> ReadAll(string path)
    {
        using var checkpoint = Checkpoint.Open(path);
        return checkpoint.Tensors.ToDictionary(t => t.Name, Read);
    }

    public static float[] Read(StoredTensor tensor) => tensor.ReadFloat32();

    /// <summary>The stored shape of tensor <paramref name="name"/> of the model at <paramref name="path"/>.</summary>
    public static long[] Shape(string path, string name)
    {
        using var checkpoint = Checkpoint.Open(path);
        return checkpoint.Find(name)!.Info.Shape;
    }

    public static float[] Read(string path, string name)
    {
        using var checkpoint = Checkpoint.Open(path);
        return Read(checkpoint.Find(name) ?? throw new KeyNotFoundException($"{name} not in {path}"));
    }

    /// <summary>A 2-D tensor of the checkpoint at <paramref name="path"/>, in double.</summary>
    public static double[,] Matrix(string path, string name)
    {
        var shape = Shape(path, name);
        return ReferenceLinearAlgebra.FromRowMajor(Read(path, name), (int)shape[0], (int)shape[1]);
    }

    /// <summary>
    /// A boolean tensor of <paramref name="shape"/> stored as packed bits, read by this test suite's own reading of the
    /// format (numpy.packbits(axis=-1)): uint8 [..., ⌈columns/8⌉], rows packed along the last axis, first entry in the
    /// high bit, padding bits zero.
    /// </summary>
    public static bool[] ReadPackedBits(StoredTensor packed, long[] shape)
    {
        long columns = shape.Length == 0 ? 1 : shape[^1];
        long rows = shape.Aggregate(1L, (a, d) => a * d) / Math.Max(columns, 1);
        int rowBytes = (int)((columns + 7) / 8);
        Assert.Equal(DType.U8, packed.Info.DType);
        Assert.Equal(shape.Length == 0 ? [1L] : [.. shape[..^1], rowBytes], packed.Info.Shape);
        var bytes = packed.Bytes(0, (int)packed.Info.ByteLength).ToArray();
        var mask = new bool[rows * columns];
        for (long r = 0; r < rows; r++)
        for (int c = 0; c < rowBytes * 8; c++)
        {
            bool bit = ((bytes[r * rowBytes + c / 8] >> (7 - c % 8)) & 1) == 1;
            if (c < columns)
                mask[r * columns + c] = bit;
            else
                Assert.False(bit, $"{packed.Name}: padding bit {c} of row {r} is set");
        }
        return mask;
    }

    /// <summary>A digest of every file under a folder, to prove inputs were not touched.</summary>
    public static string FolderDigest(string folder)
    {
        using var sha = SHA256.Create();
        foreach (
            var file in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
        )
        {
            var name = System.Text.Encoding.UTF8.GetBytes(Path.GetRelativePath(folder, file));
            sha.TransformBlock(name, 0, name.Length, null, 0);
            var content = File.ReadAllBytes(file);
            sha.TransformBlock(content, 0, content.Length, null, 0);
        }
        sha.TransformFinalBlock([], 0, 0);
        return Convert.ToHexString(sha.Hash!);
    }

    public static JsonObject LlamaConfig(int layers, int vocab = 8, string architecture = "LlamaForCausalLM") =>
        new()
        {
            ["architectures"] = new JsonArray(architecture),
            ["model_type"] = "llama",
            ["num_hidden_layers"] = layers,
            ["vocab_size"] = vocab,
            ["torch_dtype"] = "float32",
        };
}
