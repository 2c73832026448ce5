using System.Buffers.Binary;
using Alloy.Checkpoints;
using Alloy.Tensors;

namespace Alloy.Tests.Checkpoints;

public sealed class SafetensorsFileTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Raw(string header, int dataBytes, string name = "bad.safetensors") =>
        RawSafetensors.Write(_dir.Combine(name), header, dataBytes);

    private static string OpenError(string path)
    {
        var e = Assert.Throws<AlloyException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains(Path.GetFileName(path), e.Message);
        return e.Message;
    }

    [Fact]
    public void Reads_tensors_in_offset_order_with_metadata_and_bytes()
    {
        // Header order differs from data order: b's bytes come first.
        string header = """
            {"a":{"dtype":"F32","shape":[2],"data_offsets":[6,14]},
             "__metadata__":{"format":"pt","note":"x"},
             "b":{"dtype":"I16","shape":[3],"data_offsets":[0,6]}}
            """;
        string path = Raw(header, 14, "ok.safetensors");
        using var file = SafetensorsFile.Open(path);

        Assert.Equal(["b", "a"], file.Tensors.Select(t => t.Name));
        Assert.Equal(new TensorInfo("a", DType.F32, [2]), file.Find("a")!.Info);
        Assert.Equal(new TensorInfo("b", DType.I16, [3]), file.Find("b")!.Info);
        Assert.Null(file.Find("c"));
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal("x", file.Metadata["note"]);

        var raw = File.ReadAllBytes(path);
        long dataStart = 8 + (long)BinaryPrimitives.ReadUInt64LittleEndian(raw);
        Assert.Equal(dataStart, file.DataStart);
        Assert.Equal(dataStart + 6, file.Find("a")!.Offset);
        Assert.Equal(raw.AsSpan((int)dataStart + 6, 8).ToArray(), file.Find("a")!.Bytes(0, 8).ToArray());
        Assert.Equal(raw.AsSpan((int)dataStart + 8, 3).ToArray(), file.Find("a")!.Bytes(2, 3).ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => file.Find("a")!.Bytes(4, 5).ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => file.Find("a")!.Bytes(-1, 1).ToArray());
    }

    [Fact]
    public void Empty_header_object_is_a_file_without_tensors()
    {
        using var file = SafetensorsFile.Open(Raw("{}", 0, "empty.safetensors"));
        Assert.Empty(file.Tensors);
        Assert.Empty(file.Metadata);
    }

    [Fact]
    public void File_shorter_than_8_bytes()
    {
        string path = _dir.Combine("short.safetensors");
        File.WriteAllBytes(path, [1, 2, 3, 4, 5]);
        string message = OpenError(path);
        Assert.Contains("file is 5 bytes, too short", message);
        Assert.Contains("8-byte header length", message);
    }

    [Fact]
    public void Zero_length_file()
    {
        string path = _dir.Combine("zero.safetensors");
        File.WriteAllBytes(path, []);
        Assert.Contains("file is 0 bytes, too short", OpenError(path));
    }

    [Fact]
    public void Header_length_past_the_end_of_the_file()
    {
        string path = _dir.Combine("truncated.safetensors");
        File.WriteAllBytes(path, RawSafetensors.Build("{}", 18, declaredLength: 1000));
        Assert.Contains("header length 1000 runs past the end of the file (28 bytes)", OpenError(path));
    }

    [Fact]
    public void Header_length_over_the_reference_limit()
    {
        string path = _dir.Combine("huge.safetensors");
        File.WriteAllBytes(path, RawSafetensors.Build("{}", 0, declaredLength: 100_000_001));
        Assert.Contains("header length 100000001 is larger than the 100000000-byte limit", OpenError(path));
    }

    [Fact]
    public void Header_not_json()
    {
        string message = OpenError(Raw("{\"w\": nope}", 0));
        Assert.Contains("header: invalid JSON at line 1, column 8: ", message);
        Assert.DoesNotContain("BytePositionInLine", message);
    }

    [Fact]
    public void Header_not_utf8()
    {
        string path = _dir.Combine("latin1.safetensors");
        var bytes = RawSafetensors.Build("{\"w\":1}", 0);
        bytes[10] = 0xFF;
        File.WriteAllBytes(path, bytes);
        Assert.Contains("header: not valid UTF-8", OpenError(path));
    }

    [Fact]
    public void Header_json_not_an_object()
    {
        Assert.Contains("header is a JSON array, expected an object of tensors", OpenError(Raw("[1, 2]", 0)));
    }

    [Fact]
    public void Unknown_dtype()
    {
        string message = OpenError(Raw("""{"model.w":{"dtype":"Q4_K","shape":[1],"data_offsets":[0,1]}}""", 1));
        Assert.Contains("tensor 'model.w'", message);
        Assert.Contains("dtype 'Q4_K' is not supported", message);
        Assert.Contains("BF16", message);
    }

    [Fact]
    public void Negative_shape()
    {
        string message = OpenError(Raw("""{"model.w":{"dtype":"F32","shape":[2,-3],"data_offsets":[0,24]}}""", 24));
        Assert.Contains("tensor 'model.w'", message);
        Assert.Contains("shape [2,-3] has the negative value -3", message);
    }

    [Fact]
    public void Fractional_shape()
    {
        string message = OpenError(Raw("""{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}""", 8));
        Assert.Contains(
            "tensor 'w': shape [2.5] has the item 2.5, expected an array of non-negative integers",
            message
        );
    }

    [Fact]
    public void Missing_data_offsets()
    {
        string message = OpenError(Raw("""{"w":{"dtype":"F32","shape":[2]}}""", 8));
        Assert.Contains("tensor 'w': \"data_offsets\" is missing", message);
    }

    [Fact]
    public void Data_offsets_outside_the_data_section()
    {
        string message = OpenError(
            Raw("""{"model.layers.3.mlp.up_proj.weight":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}""", 16)
        );
        Assert.Contains(
            "tensor 'model.layers.3.mlp.up_proj.weight': data_offsets [8, 24] are outside the data section (16 bytes)",
            message
        );
    }

    [Fact]
    public void Data_offsets_ending_before_they_begin()
    {
        string message = OpenError(Raw("""{"w":{"dtype":"U8","shape":[0],"data_offsets":[8,4]}}""", 16));
        Assert.Contains("tensor 'w': data_offsets [8, 4] end before they begin", message);
    }

    [Fact]
    public void Overlapping_ranges()
    {
        string message = OpenError(
            Raw(
                """
                {"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},
                 "b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}
                """,
                24
            )
        );
        Assert.Contains("tensor 'b': data_offsets [8, 24] overlap those of tensor 'a' [0, 16]", message);
    }

    [Fact]
    public void Overlap_is_found_behind_a_shorter_range()
    {
        // c starts after b ends but inside a, which spans both.
        string message = OpenError(
            Raw(
                """
                {"a":{"dtype":"U8","shape":[20],"data_offsets":[0,20]},
                 "b":{"dtype":"U8","shape":[2],"data_offsets":[20,22]},
                 "c":{"dtype":"U8","shape":[2],"data_offsets":[10,12]}}
                """,
                22
            )
        );
        Assert.Contains("tensor 'c': data_offsets [10, 12] overlap those of tensor 'a' [0, 20]", message);
    }

    [Fact]
    public void Empty_ranges_do_not_overlap()
    {
        using var file = SafetensorsFile.Open(
            Raw(
                """
                {"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},
                 "z":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]}}
                """,
                8,
                "empty-range.safetensors"
            )
        );
        Assert.Equal(0, file.Find("z")!.Info.ByteLength);
        Assert.Equal(["a", "z"], file.Tensors.Select(t => t.Name));
    }

    [Fact]
    public void Byte_span_differs_from_shape_times_element_size()
    {
        string message = OpenError(Raw("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,12]}}""", 12));
        Assert.Contains(
            "tensor 'w': data_offsets [0, 12] span 12 bytes, but shape [2, 3] of F32 needs 24 bytes",
            message
        );
    }

    [Fact]
    public void Duplicate_tensor_name()
    {
        string message = OpenError(
            Raw(
                """
                {"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},
                 "w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}
                """,
                2
            )
        );
        Assert.Contains("header: key 'w' appears twice", message);
    }

    [Fact]
    public void Metadata_values_must_be_strings()
    {
        string message = OpenError(Raw("""{"__metadata__":{"format":"pt","layers":32}}""", 0));
        Assert.Contains("\"__metadata__\" entry 'layers' is a JSON number, expected a string", message);
    }

    [Fact]
    public void Metadata_must_be_an_object()
    {
        Assert.Contains(
            "\"__metadata__\" is a JSON string, expected an object of strings",
            OpenError(Raw("""{"__metadata__":"pt"}""", 0))
        );
    }

    [Fact]
    public void Missing_file()
    {
        var e = Assert.Throws<AlloyException>(() => SafetensorsFile.Open(_dir.Combine("absent.safetensors")));
        Assert.Contains("absent.safetensors: no such file", e.Message);
    }

    [Fact]
    public void Folder_is_not_a_file()
    {
        string folder = _dir.Combine("dir.safetensors");
        Directory.CreateDirectory(folder);
        var e = Assert.Throws<AlloyException>(() => SafetensorsFile.Open(folder));
        Assert.Equal($"{folder}: is a folder, not a file", e.Message);
    }

    [Fact]
    public void Mapped_file_spans_are_bounds_checked()
    {
        string path = _dir.Combine("bytes.bin");
        File.WriteAllBytes(path, [10, 20, 30, 40]);
        using var file = MappedFile.Open(path);
        Assert.Equal(4, file.Length);
        Assert.Equal([20, 30], file.Span(1, 2).ToArray());
        Assert.Equal(0, file.Span(4, 0).Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => file.Span(3, 2).ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => file.Span(-1, 1).ToArray());
        file.AdviseSequential(); // a hint: must not throw whatever the platform
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.Span(0, 1).ToArray());
    }

    [Fact]
    public void Empty_mapped_file_serves_only_empty_spans()
    {
        string path = _dir.Combine("empty.bin");
        File.WriteAllBytes(path, []);
        using var file = MappedFile.Open(path);
        Assert.Equal(0, file.Length);
        Assert.Equal(0, file.Span(0, 0).Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => file.Span(0, 1).ToArray());
    }
}
