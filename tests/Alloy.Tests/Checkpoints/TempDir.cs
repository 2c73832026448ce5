using System.Buffers.Binary;
using System.Text;
using Alloy.Tensors;

namespace Alloy.Tests.Checkpoints;

/// <summary>A fresh temporary folder per test, deleted afterwards.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(
            System.IO.Path.GetTempPath(),
            "alloy-checkpoints-" + Guid.NewGuid().ToString("N")
        );
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    public string Folder(string name) => Directory.CreateDirectory(Combine(name)).FullName;

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException) { }
    }
}

/// <summary>Byte-level safetensors construction, independent of the library's writer.</summary>
public static class RawSafetensors
{
    /// <summary>
    /// An 8-byte little-endian length, the header text as given, then <paramref name="dataBytes"/> data bytes.
    /// </summary>
    public static byte[] Build(string header, int dataBytes, ulong? declaredLength = null)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var file = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(file, declaredLength ?? (ulong)json.Length);
        json.CopyTo(file, 8);
        for (int i = 0; i < dataBytes; i++)
            file[8 + json.Length + i] = (byte)(i * 7 + 1);
        return file;
    }

    public static string Write(string path, string header, int dataBytes)
    {
        File.WriteAllBytes(path, Build(header, dataBytes));
        return path;
    }

    /// <summary>
    /// A valid file holding the tensors back to back in the given order; data byte i of the file is (i*7+1).
    /// </summary>
    public static string WriteValid(string path, params (string Name, DType DType, long[] Shape)[] tensors)
    {
        var entries = new List<string>();
        long offset = 0;
        foreach (var (name, dtype, shape) in tensors)
        {
            long bytes = shape.Aggregate(1L, (a, b) => a * b) * dtype.Size();
            entries.Add(
                $"\"{name}\":{{\"dtype\":\"{dtype.SafetensorsName()}\",\"shape\":[{string.Join(",", shape)}],"
                    + $"\"data_offsets\":[{offset},{offset + bytes}]}}"
            );
            offset += bytes;
        }
        return Write(path, "{" + string.Join(",", entries) + "}", (int)offset);
    }
}
