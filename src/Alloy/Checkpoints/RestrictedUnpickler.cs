using System.Buffers.Binary;
using System.Text;
using Alloy.Tensors;

namespace Alloy.Checkpoints;

/// <summary>A problem with a pickle stream; the caller adds the file name.</summary>
internal sealed class PickleException(string message) : Exception(message);

/// <summary>A dict or OrderedDict, in insertion order (a state dict's order is its module order).</summary>
internal sealed class PickleDict
{
    public List<KeyValuePair<object?, object?>> Items { get; } = [];
}

/// <summary>A tuple; lists are <see cref="List{T}"/> of object.</summary>
internal sealed record PickleTuple(object?[] Items);

/// <summary>
/// A persistent id ('storage', type, key, location, numel): the bytes of zip entry data/&lt;key&gt;. DType is null for
/// an untyped (byte) storage, whose numel counts bytes.
/// </summary>
internal sealed record PickleStorage(string TypeName, DType? DType, string Key, long Numel);

/// <summary>A tensor as torch rebuilds it: a view (offset, shape, stride; in elements) of a storage.</summary>
internal sealed record PickleTensor(PickleStorage Storage, DType DType, long Offset, long[] Shape, long[] Stride);

/// <summary>
/// A global the pickle may name: only what a tensor checkpoint needs. Naming anything else stops the read at once, so
/// nothing from the file is ever looked up or called; the allowed ones are interpreted here, never executed.
/// </summary>
internal sealed record PickleGlobal(string FullName, PickleGlobal.Kind What, DType? ElementType = null)
{
    public enum Kind
    {
        OrderedDict,
        RebuildTensor,
        RebuildTensorV2,
        RebuildTensorV3,
        RebuildParameter,
        Storage,
        DType,
        CodecsEncode,
    }

    private static readonly Dictionary<string, PickleGlobal> Allowed = Build();

    public static PickleGlobal? Find(string module, string name) => Allowed.GetValueOrDefault(module + "." + name);

    private static Dictionary<string, PickleGlobal> Build()
    {
        var all = new List<PickleGlobal>
        {
            new("collections.OrderedDict", Kind.OrderedDict),
            new("torch._utils._rebuild_tensor", Kind.RebuildTensor),
            new("torch._utils._rebuild_tensor_v2", Kind.RebuildTensorV2),
            new("torch._utils._rebuild_tensor_v3", Kind.RebuildTensorV3),
            new("torch._utils._rebuild_parameter", Kind.RebuildParameter),
            // Its extra state holds Python attributes of the Parameter; any global inside is still checked here.
            new("torch._utils._rebuild_parameter_with_state", Kind.RebuildParameter),
            // Protocol 2 pickles bytes as _codecs.encode(text, 'latin1'); interpreted as exactly that.
            new("_codecs.encode", Kind.CodecsEncode),
            new("torch.UntypedStorage", Kind.Storage),
            new("torch.storage.UntypedStorage", Kind.Storage),
        };
        (string Storage, DType DType)[] typed =
        [
            ("Double", DType.F64),
            ("Float", DType.F32),
            ("Half", DType.F16),
            ("BFloat16", DType.BF16),
            ("Long", DType.I64),
            ("Int", DType.I32),
            ("Short", DType.I16),
            ("Char", DType.I8),
            ("Byte", DType.U8),
            ("Bool", DType.Bool),
        ];
        foreach (var (storage, dtype) in typed)
            all.Add(new($"torch.{storage}Storage", Kind.Storage, dtype));
        // dtype objects appear as arguments of _rebuild_tensor_v3 (dtypes without a legacy storage class, e.g. float8).
        foreach (var dtype in Enum.GetValues<DType>())
            all.Add(new($"torch.{dtype.TorchName()}", Kind.DType, dtype));
        return all.ToDictionary(g => g.FullName, StringComparer.Ordinal);
    }
}

/// <summary>
/// A small interpreter of the pickle opcodes torch.save emits (protocol 2, and the framing, memo and global opcodes
/// of protocols 3–5). It builds plain values, dicts, tuples, lists, storages and tensor views; it resolves only
/// <see cref="PickleGlobal"/>'s allow-list and calls nothing.
/// </summary>
internal sealed class RestrictedUnpickler
{
    private readonly byte[] _data;
    private readonly List<object?> _stack = [];
    private readonly Stack<int> _marks = new();
    private readonly Dictionary<long, object?> _memo = [];
    private int _position;
    private string _opcodeName = "";

    private RestrictedUnpickler(byte[] data) => _data = data;

    /// <summary>The object the stream builds. Problems are <see cref="PickleException"/>s.</summary>
    public static object? Load(byte[] data) => new RestrictedUnpickler(data).Run();

    /// <summary>"a dict", "an int", "None", …: what a value is, in Python's words.</summary>
    public static string Describe(object? value) =>
        value switch
        {
            null => "None",
            bool => "a bool",
            long => "an int",
            double => "a float",
            string => "a str",
            byte[] => "a bytes",
            PickleDict => "a dict",
            PickleTuple => "a tuple",
            List<object?> => "a list",
            PickleTensor => "a tensor",
            PickleStorage s => $"a storage ({s.TypeName})",
            PickleGlobal g => g.FullName,
            _ => "an object",
        };

    private object? Run()
    {
        while (true)
        {
            int at = _position;
            byte opcode = ReadByte("an opcode");
            _opcodeName = Name(opcode);
            switch (opcode)
            {
                case 0x80:
                    ReadByte("the protocol number");
                    break; // PROTO: any protocol; unknown opcodes fail below
                case 0x95:
                    Read(8);
                    break; // FRAME: only a length hint
                case (byte)'.': // STOP
                    if (_stack.Count != 1 || _marks.Count != 0)
                        throw Damaged($"STOP with {_stack.Count} values on the stack");
                    return _stack[0];

                case (byte)'(':
                    _marks.Push(_stack.Count);
                    break; // MARK: where the marked items begin
                case (byte)'0':
                    Pop();
                    break; // POP
                case (byte)'1':
                    PopMark();
                    break; // POP_MARK
                case (byte)'2':
                    Push(Peek());
                    break; // DUP

                case (byte)'N':
                    Push(null);
                    break;
                case 0x88:
                    Push(true);
                    break; // NEWTRUE
                case 0x89:
                    Push(false);
                    break; // NEWFALSE
                case (byte)'J':
                    Push((long)BinaryPrimitives.ReadInt32LittleEndian(Read(4)));
                    break; // BININT
                case (byte)'K':
                    Push((long)ReadByte("BININT1"));
                    break;
                case (byte)'M':
                    Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Read(2)));
                    break; // BININT2
                case 0x8a:
                    Push(ReadLong(ReadByte("LONG1's length")));
                    break;
                case 0x8b:
                    Push(ReadLong(ReadLength(4)));
                    break; // LONG4
                case (byte)'G':
                    Push(BinaryPrimitives.ReadDoubleBigEndian(Read(8)));
                    break; // BINFLOAT

                case (byte)'X':
                    Push(ReadText(ReadLength(4)));
                    break; // BINUNICODE
                case 0x8c:
                    Push(ReadText(ReadByte("a length")));
                    break; // SHORT_BINUNICODE
                case 0x8d:
                    Push(ReadText(ReadLength(8)));
                    break; // BINUNICODE8
                case (byte)'T':
                    Push(Encoding.Latin1.GetString(Read(ReadLength(4))));
                    break; // BINSTRING
                case (byte)'U':
                    Push(Encoding.Latin1.GetString(Read(ReadByte("a length"))));
                    break; // SHORT_BINSTRING
                case (byte)'B':
                    Push(Read(ReadLength(4)).ToArray());
                    break; // BINBYTES
                case (byte)'C':
                    Push(Read(ReadByte("a length")).ToArray());
                    break; // SHORT_BINBYTES
                case 0x8e:
                    Push(Read(ReadLength(8)).ToArray());
                    break; // BINBYTES8

                case (byte)'}':
                    Push(new PickleDict());
                    break; // EMPTY_DICT
                case (byte)']':
                    Push(new List<object?>());
                    break; // EMPTY_LIST
                case (byte)')':
                    Push(new PickleTuple([]));
                    break; // EMPTY_TUPLE
                case 0x85:
                    Push(new PickleTuple(PopMany(1)));
                    break; // TUPLE1
                case 0x86:
                    Push(new PickleTuple(PopMany(2)));
                    break; // TUPLE2
                case 0x87:
                    Push(new PickleTuple(PopMany(3)));
                    break; // TUPLE3
                case (byte)'t':
                    Push(new PickleTuple(PopMark()));
                    break; // TUPLE
                case (byte)'l':
                    Push(new List<object?>(PopMark()));
                    break; // LIST
                case (byte)'d': // DICT
                {
                    var dict = new PickleDict();
                    AddPairs(dict, PopMark());
                    Push(dict);
                    break;
                }
                case (byte)'s': // SETITEM
                {
                    var pair = PopMany(2);
                    AddPairs(PeekAs<PickleDict>("SETITEM"), pair);
                    break;
                }
                case (byte)'u': // SETITEMS
                {
                    var items = PopMark();
                    AddPairs(PeekAs<PickleDict>("SETITEMS"), items);
                    break;
                }
                case (byte)'a': // APPEND
                {
                    var item = Pop();
                    PeekAs<List<object?>>("APPEND").Add(item);
                    break;
                }
                case (byte)'e': // APPENDS
                {
                    var items = PopMark();
                    PeekAs<List<object?>>("APPENDS").AddRange(items);
                    break;
                }

                case (byte)'q':
                    _memo[ReadByte("a memo index")] = Peek();
                    break; // BINPUT
                case (byte)'r':
                    _memo[BinaryPrimitives.ReadUInt32LittleEndian(Read(4))] = Peek();
                    break; // LONG_BINPUT
                case 0x94:
                    _memo[_memo.Count] = Peek();
                    break; // MEMOIZE
                case (byte)'h':
                    Push(Recall(ReadByte("a memo index")));
                    break; // BINGET
                case (byte)'j':
                    Push(Recall(BinaryPrimitives.ReadUInt32LittleEndian(Read(4))));
                    break; // LONG_BINGET

                case (byte)'c': // GLOBAL "module\nname\n"
                {
                    string module = ReadLine();
                    string name = ReadLine();
                    Push(Resolve(module, name));
                    break;
                }
                case 0x93: // STACK_GLOBAL
                {
                    var parts = PopMany(2);
                    if (parts[0] is not string module || parts[1] is not string name)
                    {
                        throw Damaged(
                            $"STACK_GLOBAL with {Describe(parts[0])} and {Describe(parts[1])} instead of two strings"
                        );
                    }
                    Push(Resolve(module, name));
                    break;
                }
                case (byte)'R': // REDUCE: callable(*args)
                case 0x81: // NEWOBJ: cls.__new__(cls, *args); only OrderedDict can get here
                {
                    var args = Pop();
                    var callable = Pop();
                    Push(Call(callable, args));
                    break;
                }
                case (byte)'b': // BUILD: set an object's state
                {
                    var state = Pop();
                    var target = Peek();
                    // An OrderedDict state dict carries _metadata (module versions) as an attribute; not a tensor.
                    if (target is not PickleDict)
                    {
                        throw new PickleException(
                            $"the pickle sets the state of {Describe(target)} (BUILD with {Describe(state)}), which a "
                                + $"tensor checkpoint never does"
                        );
                    }
                    break;
                }
                case (byte)'Q':
                    Push(Storage(Pop()));
                    break; // BINPERSID

                default:
                    throw new PickleException(
                        $"unknown pickle opcode 0x{opcode:x2} at byte {at}; the file is damaged or not a torch.save "
                            + $"checkpoint"
                    );
            }
        }
    }

    private static PickleGlobal Resolve(string module, string name)
    {
        if (PickleGlobal.Find(module, name) is { } global)
            return global;
        // torch's other rebuild functions (tensor subclasses, sparse, quantized) are tensors, just not plain ones.
        string why =
            module == "torch" || module.StartsWith("torch.", StringComparison.Ordinal)
                ? "which Alloy does not read (only plain tensors and parameters; Alloy never executes code from "
                    + "checkpoints)"
                : "which is not a tensor (Alloy never executes code from checkpoints)";
        throw new PickleException($"refusing to load: the pickle calls {module}.{name}, {why}");
    }

    private object? Call(object? callable, object? argsValue)
    {
        if (callable is not PickleGlobal global)
        {
            throw Damaged($"{_opcodeName} calls {Describe(callable)}, which is not callable");
        }
        if (argsValue is not PickleTuple tuple)
            throw Damaged(
                $"{_opcodeName} of {global.FullName} with {Describe(argsValue)} instead of an argument tuple"
            );
        var args = tuple.Items;
        switch (global.What)
        {
            case PickleGlobal.Kind.OrderedDict:
            {
                var dict = new PickleDict();
                if (args.Length == 0)
                    return dict;
                if (args.Length == 1 && args[0] is List<object?> pairs)
                {
                    foreach (var pair in pairs)
                    {
                        if (pair is not PickleTuple { Items.Length: 2 } kv)
                            throw Damaged($"OrderedDict built from {Describe(pair)} instead of a (key, value) pair");
                        dict.Items.Add(new(kv.Items[0], kv.Items[1]));
                    }
                    return dict;
                }
                throw Damaged($"OrderedDict called with {args.Length} arguments");
            }
            case PickleGlobal.Kind.RebuildTensor:
                Arity(global, args, 4, 4);
                return Tensor(global, args, TypedStorage(global, args[0]).DType!.Value);
            case PickleGlobal.Kind.RebuildTensorV2:
                Arity(global, args, 6, 7);
                return Tensor(global, args, TypedStorage(global, args[0]).DType!.Value);
            case PickleGlobal.Kind.RebuildTensorV3:
            {
                Arity(global, args, 7, 8);
                if (args[6] is not PickleGlobal { What: PickleGlobal.Kind.DType, ElementType: { } dtype })
                {
                    throw Damaged($"{global.FullName} expects a dtype as argument 7, got {Describe(args[6])}");
                }
                if (args[0] is not PickleStorage)
                    throw Damaged($"{global.FullName} expects a storage, got {Describe(args[0])}");
                return Tensor(global, args, dtype);
            }
            case PickleGlobal.Kind.RebuildParameter:
                Arity(global, args, 3, 4);
                return args[0] is PickleTensor data
                    ? data
                    : throw Damaged($"{global.FullName} expects a tensor, got {Describe(args[0])}");
            case PickleGlobal.Kind.CodecsEncode:
                if (args is [string text, "latin1" or "latin-1"])
                    return Encoding.Latin1.GetBytes(text);
                throw Damaged("_codecs.encode is used for something other than bytes (text, 'latin1')");
            default:
                throw new PickleException($"the pickle calls {global.FullName}, which a tensor checkpoint never calls");
        }
    }

    private PickleStorage TypedStorage(PickleGlobal global, object? value) =>
        value switch
        {
            PickleStorage { DType: not null } storage => storage,
            PickleStorage storage => throw Damaged(
                $"{global.FullName} is given the untyped storage '{storage.Key}'; only _rebuild_tensor_v3 says which "
                    + $"dtype it holds"
            ),
            _ => throw Damaged($"{global.FullName} expects a storage, got {Describe(value)}"),
        };

    private PickleTensor Tensor(PickleGlobal global, object?[] args, DType dtype)
    {
        var storage = (PickleStorage)args[0]!;
        if (args[1] is not long offset)
            throw Damaged($"{global.FullName} expects an int storage offset, got {Describe(args[1])}");
        return new PickleTensor(
            storage,
            dtype,
            offset,
            Integers(global, "size", args[2]),
            Integers(global, "stride", args[3])
        );
    }

    private long[] Integers(PickleGlobal global, string what, object? value)
    {
        if (value is not PickleTuple tuple)
            throw Damaged($"{global.FullName} expects a {what} tuple, got {Describe(value)}");
        var result = new long[tuple.Items.Length];
        for (int i = 0; i < result.Length; i++)
        {
            result[i] =
                tuple.Items[i] as long?
                ?? throw Damaged($"{global.FullName}: {what} holds {Describe(tuple.Items[i])}, not an int");
        }
        return result;
    }

    private void Arity(PickleGlobal global, object?[] args, int min, int max)
    {
        if (args.Length < min || args.Length > max)
        {
            string expected = min == max ? $"{min}" : $"{min} or {max}";
            throw Damaged($"{global.FullName} is given {args.Length} arguments, expected {expected}");
        }
    }

    /// <summary>torch's persistent id for a storage: ('storage', storage type, key, location, numel).</summary>
    private PickleStorage Storage(object? id)
    {
        if (id is not PickleTuple { Items: ["storage", var type, var key, var location, var numel] })
        {
            throw Damaged($"persistent id is {Describe(id)}, not torch's ('storage', type, key, location, size)");
        }
        if (type is not PickleGlobal { What: PickleGlobal.Kind.Storage } storageType)
        {
            throw Damaged($"persistent id names the storage type {Describe(type)}");
        }
        if (key is not string name || location is not string || numel is not long count || count < 0)
        {
            throw Damaged(
                $"persistent id ('storage', {storageType.FullName}, {Describe(key)}, {Describe(location)}, "
                    + $"{Describe(numel)}) is malformed"
            );
        }
        return new PickleStorage(storageType.FullName, storageType.ElementType, name, count);
    }

    private static void AddPairs(PickleDict dict, IReadOnlyList<object?> items)
    {
        if (items.Count % 2 != 0)
            throw new PickleException($"the pickle adds {items.Count} values to a dict, which needs key-value pairs");
        for (int i = 0; i < items.Count; i += 2)
            dict.Items.Add(new(items[i], items[i + 1]));
    }

    private void Push(object? value) => _stack.Add(value);

    /// <summary>Values below the innermost MARK are not reachable until it is popped.</summary>
    private int Floor => _marks.Count > 0 ? _marks.Peek() : 0;

    private object? Peek()
    {
        if (_stack.Count == Floor)
            throw Damaged($"{_opcodeName} on an empty stack");
        return _stack[^1];
    }

    private T PeekAs<T>(string opcode)
        where T : class => Peek() as T ?? throw Damaged($"{opcode} on {Describe(_stack[^1])}");

    private object? Pop()
    {
        var value = Peek();
        _stack.RemoveAt(_stack.Count - 1);
        return value;
    }

    private object?[] PopMany(int count)
    {
        if (_stack.Count - Floor < count)
            throw Damaged($"{_opcodeName} needs {count} values on the stack");
        var items = _stack.GetRange(_stack.Count - count, count).ToArray();
        _stack.RemoveRange(_stack.Count - count, count);
        return items;
    }

    private object?[] PopMark()
    {
        if (_marks.Count == 0)
            throw Damaged($"{_opcodeName} without a MARK");
        int mark = _marks.Pop();
        var items = _stack.GetRange(mark, _stack.Count - mark).ToArray();
        _stack.RemoveRange(mark, _stack.Count - mark);
        return items;
    }

    private object? Recall(long index) =>
        _memo.TryGetValue(index, out var value)
            ? value
            : throw Damaged($"{_opcodeName} of memo entry {index}, which was never stored");

    private byte ReadByte(string what)
    {
        if (_position >= _data.Length)
            throw Truncated(what);
        return _data[_position++];
    }

    private ReadOnlySpan<byte> Read(long count)
    {
        if (count > _data.Length - _position)
            throw Truncated($"{count} bytes of {_opcodeName}");
        var span = _data.AsSpan(_position, (int)count);
        _position += (int)count;
        return span;
    }

    private long ReadLength(int bytes)
    {
        var span = Read(bytes);
        ulong length =
            bytes == 4 ? BinaryPrimitives.ReadUInt32LittleEndian(span) : BinaryPrimitives.ReadUInt64LittleEndian(span);
        // Checked against what is left so a forged length cannot make us allocate.
        if (length > (ulong)(_data.Length - _position))
            throw Truncated($"{length} bytes of {_opcodeName}");
        return (long)length;
    }

    private string ReadText(long length)
    {
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(Read(length));
        }
        catch (DecoderFallbackException)
        {
            throw Damaged($"{_opcodeName} at byte {_position - length} is not valid UTF-8");
        }
    }

    private string ReadLine()
    {
        int end = Array.IndexOf(_data, (byte)'\n', _position);
        if (end < 0)
            throw Truncated("the name of a GLOBAL");
        string line = Encoding.UTF8.GetString(_data, _position, end - _position);
        _position = end + 1;
        return line;
    }

    /// <summary>LONG1/LONG4: little-endian two's complement; a tensor checkpoint's integers fit in 64 bits.</summary>
    private long ReadLong(long length)
    {
        var bytes = Read(length);
        if (length == 0)
            return 0;
        if (length > 8)
            throw Damaged($"{_opcodeName} holds a {length}-byte integer, larger than any size or offset");
        long value = (sbyte)bytes[^1];
        for (int i = bytes.Length - 2; i >= 0; i--)
            value = (value << 8) | bytes[i];
        return value;
    }

    private PickleException Truncated(string what) =>
        new($"the pickle is truncated: it ends at byte {_data.Length} while reading {what}, before STOP");

    private PickleException Damaged(string what) => new($"damaged pickle: {what} (at byte {_position})");

    private static string Name(byte opcode) =>
        opcode switch
        {
            (byte)'0' => "POP",
            (byte)'1' => "POP_MARK",
            (byte)'2' => "DUP",
            (byte)'R' => "REDUCE",
            0x81 => "NEWOBJ",
            (byte)'b' => "BUILD",
            (byte)'s' => "SETITEM",
            (byte)'u' => "SETITEMS",
            (byte)'a' => "APPEND",
            (byte)'e' => "APPENDS",
            (byte)'t' => "TUPLE",
            (byte)'l' => "LIST",
            (byte)'d' => "DICT",
            (byte)'X' or 0x8c or 0x8d => "a string",
            (byte)'B' or (byte)'C' or 0x8e => "bytes",
            (byte)'h' or (byte)'j' => "GET",
            0x93 => "STACK_GLOBAL",
            (byte)'Q' => "BINPERSID",
            _ => $"opcode 0x{opcode:x2}",
        };
}
