using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Alloy.Checkpoints;
using Alloy.Tensors;

namespace Alloy.Tests.Checkpoints;

/// <summary>
/// The pickle interpreter on hand-written opcode streams, and on damaged copies of a real torch.save pickle.
/// </summary>
public sealed class RestrictedUnpicklerTests
{
    /// <summary>Builds an opcode stream; every pickle starts with PROTO 2.</summary>
    private sealed class Stream
    {
        private readonly List<byte> _bytes = [0x80, 2];

        public Stream Op(params byte[] bytes)
        {
            _bytes.AddRange(bytes);
            return this;
        }

        public Stream Op(char opcode, params byte[] operands) => Op((byte)opcode).Op(operands);

        public Stream Text(string value)
        {
            var utf8 = Encoding.UTF8.GetBytes(value);
            Op('X').Op(BitConverter.GetBytes(utf8.Length));
            return Op(utf8);
        }

        public Stream Short(string value)
        {
            var utf8 = Encoding.UTF8.GetBytes(value);
            return Op(0x8c, (byte)utf8.Length).Op(utf8);
        }

        public Stream Int(int value) => Op('J').Op(BitConverter.GetBytes(value));

        public Stream Global(string module, string name) => Op('c').Op(Encoding.UTF8.GetBytes($"{module}\n{name}\n"));

        public Stream Stop() => Op('.');

        public byte[] Bytes => [.. _bytes];
    }

    private static object? Load(Stream stream) => RestrictedUnpickler.Load(stream.Bytes);

    private static string Error(Stream stream) => Assert.Throws<PickleException>(() => Load(stream)).Message;

    [Fact]
    public void Reads_the_plain_values_a_checkpoint_may_hold()
    {
        var s = new Stream()
            .Op('}')
            .Op('q', 0)
            .Op('(')
            .Text("small")
            .Op('K', 200)
            .Text("medium")
            .Op('M')
            .Op(0x34, 0x12)
            .Text("negative")
            .Int(-5)
            .Text("long")
            .Op(0x8a, 8)
            .Op(BitConverter.GetBytes(-1234567890123L))
            .Text("zero")
            .Op(0x8a, 0)
            .Text("float")
            .Op('G')
            .Op(BitConverter.GetBytes(BinaryPrimitives.ReverseEndianness(BitConverter.DoubleToInt64Bits(0.001))))
            .Short("flags")
            .Op(']')
            .Op('(')
            .Op(0x88)
            .Op(0x89)
            .Op('N')
            .Op('e')
            .Text("pair")
            .Op('K', 1)
            .Op('K', 2)
            .Op(0x86)
            .Text("bytes")
            .Op('C', 2, 0xAB, 0xCD)
            .Text("äöü")
            .Op(0x89)
            .Op('u')
            .Stop();
        var dict = Assert.IsType<PickleDict>(Load(s));
        var values = dict.Items.ToDictionary(p => (string)p.Key!, p => p.Value);
        Assert.Equal(200L, values["small"]);
        Assert.Equal(0x1234L, values["medium"]);
        Assert.Equal(-5L, values["negative"]);
        Assert.Equal(-1234567890123L, values["long"]);
        Assert.Equal(0L, values["zero"]);
        Assert.Equal(0.001, values["float"]);
        Assert.Equal(new object?[] { true, false, null }, Assert.IsType<List<object?>>(values["flags"]));
        Assert.Equal(new object?[] { 1L, 2L }, Assert.IsType<PickleTuple>(values["pair"]).Items);
        Assert.Equal(new byte[] { 0xAB, 0xCD }, values["bytes"]);
        Assert.Equal(false, values["äöü"]);
        Assert.Equal(
            ["small", "medium", "negative", "long", "zero", "float", "flags", "pair", "bytes", "äöü"],
            dict.Items.Select(p => (string)p.Key!)
        );
    }

    [Fact]
    public void Memo_keeps_shared_objects_shared()
    {
        // [x, x] where x is one list stored with BINPUT, LONG_BINPUT and MEMOIZE and fetched back.
        var s = new Stream()
            .Op(']')
            .Op('(')
            .Op(']')
            .Op('q', 7)
            .Op('r', 1, 0, 0, 0)
            .Op(0x94)
            .Op('0')
            .Op('h', 7)
            .Op('j', 1, 0, 0, 0)
            .Op('h', 2)
            .Op('e')
            .Stop();
        var list = Assert.IsType<List<object?>>(Load(s));
        Assert.Equal(3, list.Count);
        Assert.Same(list[0], list[1]);
        Assert.Same(list[0], list[2]);
    }

    [Fact]
    public void Builds_a_tensor_from_rebuild_tensor_v2_and_its_persistent_id()
    {
        var s = new Stream()
            .Global("collections", "OrderedDict")
            .Op(')')
            .Op('R')
            .Op('(')
            .Text("w")
            .Global("torch._utils", "_rebuild_tensor_v2")
            .Op('(')
            .Op('(')
            .Text("storage")
            .Global("torch", "BFloat16Storage")
            .Text("3")
            .Text("cuda:0")
            .Int(12)
            .Op('t')
            .Op('Q')
            .Int(2)
            .Op('K', 2)
            .Op('K', 5)
            .Op(0x86)
            .Op('K', 5)
            .Op('K', 1)
            .Op(0x86)
            .Op(0x88)
            .Global("collections", "OrderedDict")
            .Op(')')
            .Op('R')
            .Op('t')
            .Op('R')
            .Op('u')
            // The state dict's _metadata attribute arrives by BUILD and is ignored.
            .Op('}')
            .Text("_metadata")
            .Op('}')
            .Op('s')
            .Op('b')
            .Stop();
        var dict = Assert.IsType<PickleDict>(Load(s));
        var tensor = Assert.IsType<PickleTensor>(Assert.Single(dict.Items).Value);
        Assert.Equal(new PickleStorage("torch.BFloat16Storage", DType.BF16, "3", 12), tensor.Storage);
        Assert.Equal(DType.BF16, tensor.DType);
        Assert.Equal(2, tensor.Offset);
        Assert.Equal([2L, 5], tensor.Shape);
        Assert.Equal([5L, 1], tensor.Stride);
    }

    [Theory]
    [InlineData("os", "system")]
    [InlineData("posix", "system")]
    [InlineData("builtins", "eval")]
    [InlineData("__builtin__", "exec")]
    [InlineData("subprocess", "Popen")]
    [InlineData("builtins", "getattr")]
    [InlineData("numpy.core.multiarray", "_reconstruct")]
    [InlineData("collections", "defaultdict")]
    public void Refuses_every_other_global_by_name(string module, string name)
    {
        string expected =
            $"refusing to load: the pickle calls {module}.{name}, which is not a tensor (Alloy never executes code "
            + $"from checkpoints)";
        Assert.Equal(expected, Error(new Stream().Global(module, name).Text("echo hi").Op(0x85).Op('R').Stop()));
        // STACK_GLOBAL (protocol 4) takes the names from the stack instead.
        Assert.Equal(expected, Error(new Stream().Short(module).Short(name).Op(0x93).Stop()));
    }

    [Theory]
    [InlineData("torch", "load")]
    [InlineData("torch._utils", "_rebuild_qtensor")]
    [InlineData("torch.nn.modules.linear", "Linear")]
    public void Refuses_torch_globals_it_does_not_read(string module, string name)
    {
        Assert.Equal(
            $"refusing to load: the pickle calls {module}.{name}, which Alloy does not read (only plain tensors and "
                + $"parameters; Alloy never executes code from checkpoints)",
            Error(new Stream().Global(module, name).Stop())
        );
    }

    [Fact]
    public void Refuses_the_global_before_reading_anything_after_it()
    {
        // Nothing after the GLOBAL is looked at: not even a truncation.
        Assert.Contains("calls os.system", Error(new Stream().Global("os", "system").Op('J', 1)));
    }

    [Fact]
    public void Allowed_globals_that_are_not_functions_cannot_be_called()
    {
        Assert.Contains(
            "the pickle calls torch.float32, which a tensor checkpoint never calls",
            Error(new Stream().Global("torch", "float32").Op(')').Op('R').Stop())
        );
        Assert.Contains(
            "the pickle calls torch.FloatStorage, which a tensor checkpoint never calls",
            Error(new Stream().Global("torch", "FloatStorage").Op(')').Op('R').Stop())
        );
        Assert.Contains(
            "REDUCE calls a str, which is not callable",
            Error(new Stream().Text("os.system").Op(')').Op('R').Stop())
        );
    }

    [Fact]
    public void Build_is_allowed_only_on_dicts()
    {
        Assert.Contains(
            "the pickle sets the state of a list (BUILD with a dict), which a tensor checkpoint never does",
            Error(new Stream().Op(']').Op('}').Op('b').Stop())
        );
    }

    [Theory]
    [InlineData(new byte[] { 0xff }, "unknown pickle opcode 0xff at byte 2")]
    [InlineData(new byte[] { (byte)'i' }, "unknown pickle opcode 0x69 at byte 2")] // INST: protocol 0 object creation
    [InlineData(new byte[] { (byte)'o' }, "unknown pickle opcode 0x6f at byte 2")] // OBJ
    [InlineData(new byte[] { (byte)'P' }, "unknown pickle opcode 0x50 at byte 2")] // PERSID (text)
    [InlineData(new byte[] { (byte)'K', 1, (byte)'K', 2, (byte)'.' }, "STOP with 2 values on the stack")]
    [InlineData(new byte[] { (byte)'s' }, "SETITEM needs 2 values on the stack")]
    [InlineData(new byte[] { (byte)'t' }, "TUPLE without a MARK")]
    [InlineData(new byte[] { (byte)'h', 3 }, "GET of memo entry 3, which was never stored")]
    [InlineData(new byte[] { (byte)'K', 1, (byte)'(', (byte)'0' }, "POP on an empty stack")]
    [InlineData(new byte[] { (byte)'K', 1, (byte)'K', 2, (byte)'a' }, "APPEND on an int")]
    [InlineData(new byte[] { 0x8a, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, "holds a 9-byte integer")]
    [InlineData(
        new byte[] { (byte)'K', 1, (byte)'Q' },
        "persistent id is an int, not torch's ('storage', type, key, location, size)"
    )]
    [InlineData(new byte[] { (byte)'}', (byte)'(', (byte)'K', 1, (byte)'u' }, "adds 1 values to a dict")]
    public void Damaged_streams_say_what_is_wrong(byte[] body, string expected)
    {
        string message = Error(new Stream().Op(body));
        Assert.Contains(expected, message);
        Assert.DoesNotContain('\n', message);
    }

    [Theory]
    [InlineData(
        new byte[] { (byte)'X', 0xff, 0xff, 0xff, 0x7f },
        "the pickle is truncated: it ends at byte 7 while reading 2147483647 bytes of a string, before STOP"
    )]
    [InlineData(new byte[] { 0x8d, 0, 0, 0, 0, 0, 0, 0, 0x80 }, "the pickle is truncated")]
    [InlineData(new byte[] { (byte)'c', (byte)'o', (byte)'s' }, "while reading the name of a GLOBAL")]
    [InlineData(new byte[] { (byte)'K', 1 }, "while reading an opcode, before STOP")]
    public void Forged_lengths_are_truncation_not_allocation(byte[] body, string expected)
    {
        Assert.Contains(expected, Error(new Stream().Op(body)));
    }

    /// <summary>data.pkl of the committed state.bin fixture: a real torch.save pickle.</summary>
    private static byte[] RealPickle()
    {
        using var zip = ZipFile.OpenRead(TorchFixtures.Path("state.bin"));
        using var stream = zip.GetEntry("state/data.pkl")!.Open();
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    [Fact]
    public void Every_cut_of_a_real_pickle_is_reported_as_truncated()
    {
        var pickle = RealPickle();
        Assert.IsType<PickleDict>(RestrictedUnpickler.Load(pickle));
        for (int length = 0; length < pickle.Length; length++)
        {
            var e = Assert.Throws<PickleException>(() => RestrictedUnpickler.Load(pickle[..length]));
            Assert.Contains("the pickle is truncated", e.Message);
        }
    }

    [Fact]
    public void Random_damage_to_a_real_pickle_is_always_a_pickle_error()
    {
        var pickle = RealPickle();
        var random = new Random(7);
        for (int trial = 0; trial < 5000; trial++)
        {
            var damaged = (byte[])pickle.Clone();
            for (int flips = random.Next(1, 4); flips > 0; flips--)
                damaged[random.Next(damaged.Length)] = (byte)random.Next(256);
            try
            {
                RestrictedUnpickler.Load(damaged);
            }
            catch (PickleException)
            {
                // Any damage must end as a message, never as another exception, a hang or a call.
            }
        }
    }
}
