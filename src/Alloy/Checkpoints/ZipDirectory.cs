using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace Alloy.Checkpoints;

/// <summary>One entry of a zip central directory, with the offset of its data resolved from its local header.</summary>
internal sealed record ZipEntry(string Name, int Method, long CompressedSize, long Size, long DataStart)
{
    public const int Stored = 0;
    public const int Deflated = 8;

    public string MethodName =>
        Method switch
        {
            Stored => "stored",
            Deflated => "deflate",
            _ => $"method {Method}",
        };
}

/// <summary>
/// The central directory of a zip file (zip64 included), read straight from a memory map. Only what a torch.save
/// archive needs: names, sizes and where each entry's bytes start, so stored entries can be used in place.
/// Problems are <see cref="AlloyException"/>s naming the file.
/// </summary>
internal sealed class ZipDirectory
{
    private const uint LocalHeaderSignature = 0x04034b50;
    private const uint CentralHeaderSignature = 0x02014b50;
    private const uint EndSignature = 0x06054b50;
    private const uint Zip64EndSignature = 0x06064b50;
    private const uint Zip64LocatorSignature = 0x07064b50;
    private const int EndLength = 22;
    private const int LocatorLength = 20;

    private readonly Dictionary<string, ZipEntry> _byName;

    private ZipDirectory(List<ZipEntry> entries)
    {
        Entries = entries;
        _byName = new Dictionary<string, ZipEntry>(entries.Count, StringComparer.Ordinal);
        // A zip may repeat a name; readers take the last one, so does this.
        foreach (var entry in entries)
            _byName[entry.Name] = entry;
    }

    /// <summary>The entries in central-directory order.</summary>
    public IReadOnlyList<ZipEntry> Entries { get; }

    public ZipEntry? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>Whether the file ends with a zip end-of-central-directory record.</summary>
    public static bool LooksLikeZip(MappedFile file) => FindEnd(file) >= 0;

    public static ZipDirectory Read(MappedFile file)
    {
        string where = file.Path;
        long end = FindEnd(file);
        if (end < 0)
            throw new AlloyException($"{where}: not a zip archive (no end-of-central-directory record)");

        var record = file.Span(end, EndLength);
        long count = BinaryPrimitives.ReadUInt16LittleEndian(record[10..]);
        long directorySize = BinaryPrimitives.ReadUInt32LittleEndian(record[12..]);
        long directoryStart = BinaryPrimitives.ReadUInt32LittleEndian(record[16..]);
        int disk = BinaryPrimitives.ReadUInt16LittleEndian(record[4..]);
        if (disk != 0 && disk != 0xFFFF)
        {
            throw new AlloyException($"{where}: zip archive spans several disks, which is not supported");
        }
        if (count == 0xFFFF || directorySize == 0xFFFFFFFF || directoryStart == 0xFFFFFFFF)
        {
            (count, directorySize, directoryStart) = ReadZip64End(file, end);
        }
        if (directoryStart > file.Length || directorySize > file.Length - directoryStart)
        {
            throw new AlloyException(
                $"{where}: damaged zip: the central directory [{directoryStart}, {directoryStart + directorySize}) "
                    + $"lies outside the file ({file.Length} bytes)"
            );
        }

        var entries = new List<ZipEntry>((int)Math.Min(count, 1 << 16));
        long position = directoryStart,
            limit = directoryStart + directorySize;
        for (long i = 0; i < count; i++)
        {
            if (
                limit - position < 46
                || BinaryPrimitives.ReadUInt32LittleEndian(file.Span(position, 4)) != CentralHeaderSignature
            )
            {
                throw new AlloyException(
                    $"{where}: damaged zip: central directory entry {i} of {count} is missing or corrupt"
                );
            }
            var header = file.Span(position, 46);
            int flags = BinaryPrimitives.ReadUInt16LittleEndian(header[8..]);
            int method = BinaryPrimitives.ReadUInt16LittleEndian(header[10..]);
            long compressed = BinaryPrimitives.ReadUInt32LittleEndian(header[20..]);
            long size = BinaryPrimitives.ReadUInt32LittleEndian(header[24..]);
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(header[28..]);
            int extraLength = BinaryPrimitives.ReadUInt16LittleEndian(header[30..]);
            int commentLength = BinaryPrimitives.ReadUInt16LittleEndian(header[32..]);
            long localHeader = BinaryPrimitives.ReadUInt32LittleEndian(header[42..]);
            long entryLength = 46L + nameLength + extraLength + commentLength;
            if (entryLength > limit - position)
            {
                throw new AlloyException($"{where}: damaged zip: central directory entry {i} runs past the directory");
            }
            string name = Encoding.UTF8.GetString(file.Span(position + 46, nameLength));
            if (compressed == 0xFFFFFFFF || size == 0xFFFFFFFF || localHeader == 0xFFFFFFFF)
            {
                ReadZip64Extra(
                    where,
                    name,
                    file.Span(position + 46 + nameLength, extraLength),
                    ref size,
                    ref compressed,
                    ref localHeader
                );
            }
            if ((flags & 1) != 0)
                throw new AlloyException($"{where}: zip entry '{name}' is encrypted");
            long dataStart = DataStart(file, name, localHeader, compressed);
            // Tensors are read in place by Size, so a stored entry must hold exactly what it claims.
            if (method == ZipEntry.Stored && compressed != size)
            {
                throw new AlloyException(
                    $"{where}: damaged zip: stored entry '{name}' claims {size} bytes but holds {compressed}"
                );
            }
            entries.Add(new ZipEntry(name, method, compressed, size, dataStart));
            position += entryLength;
        }
        return new ZipDirectory(entries);
    }

    /// <summary>An entry's uncompressed bytes, copied (for small entries such as data.pkl).</summary>
    public static byte[] ReadAll(MappedFile file, ZipEntry entry)
    {
        // data.pkl is kilobytes even for large models; the cap keeps a forged size from allocating gigabytes.
        const long Limit = 256L << 20;
        if (entry.Size > Limit || entry.CompressedSize > Limit)
        {
            throw new AlloyException(
                $"{file.Path}: zip entry '{entry.Name}' is {entry.Size} bytes, too large to read into memory"
            );
        }
        var raw = file.Span(entry.DataStart, (int)entry.CompressedSize);
        switch (entry.Method)
        {
            case ZipEntry.Stored:
                return raw.ToArray();
            case ZipEntry.Deflated:
                var result = new byte[entry.Size];
                try
                {
                    using var inflater = new DeflateStream(new MemoryStream(raw.ToArray()), CompressionMode.Decompress);
                    inflater.ReadExactly(result);
                }
                catch (Exception e) when (e is InvalidDataException or EndOfStreamException)
                {
                    throw new AlloyException(
                        $"{file.Path}: zip entry '{entry.Name}' does not decompress: {Messages.OneLine(e.Message)}",
                        e
                    );
                }
                return result;
            default:
                throw new AlloyException(
                    $"{file.Path}: zip entry '{entry.Name}' uses compression {entry.MethodName}, which is not supported"
                );
        }
    }

    /// <summary>
    /// The offset of the end-of-central-directory record, or -1. It sits within the last 64 KiB + 22 bytes.
    /// </summary>
    private static long FindEnd(MappedFile file)
    {
        if (file.Length < EndLength)
            return -1;
        long lowest = Math.Max(0, file.Length - EndLength - 0xFFFF);
        var tail = file.Span(lowest, (int)(file.Length - lowest));
        for (int at = tail.Length - EndLength; at >= 0; at--)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(tail[at..]) != EndSignature)
                continue;
            // The comment length must reach exactly to the end of the file; otherwise the signature is a coincidence.
            int commentLength = BinaryPrimitives.ReadUInt16LittleEndian(tail[(at + 20)..]);
            if (at + EndLength + commentLength == tail.Length)
                return lowest + at;
        }
        return -1;
    }

    private static (long Count, long Size, long Start) ReadZip64End(MappedFile file, long end)
    {
        string where = file.Path;
        long locator = end - LocatorLength;
        if (locator < 0 || BinaryPrimitives.ReadUInt32LittleEndian(file.Span(locator, 4)) != Zip64LocatorSignature)
        {
            throw new AlloyException(
                $"{where}: damaged zip: the end record asks for zip64, but the zip64 locator is missing"
            );
        }
        long record = (long)BinaryPrimitives.ReadUInt64LittleEndian(file.Span(locator + 8, 8));
        if (
            record < 0
            || record > file.Length - 56
            || BinaryPrimitives.ReadUInt32LittleEndian(file.Span(record, 4)) != Zip64EndSignature
        )
        {
            throw new AlloyException($"{where}: damaged zip: the zip64 end-of-central-directory record is missing");
        }
        var span = file.Span(record, 56);
        return (
            Checked(where, BinaryPrimitives.ReadUInt64LittleEndian(span[32..])),
            Checked(where, BinaryPrimitives.ReadUInt64LittleEndian(span[40..])),
            Checked(where, BinaryPrimitives.ReadUInt64LittleEndian(span[48..]))
        );
    }

    /// <summary>
    /// Zip64 extra field (id 1): 8-byte values, in this order, for exactly the fields that are 0xFFFFFFFF.
    /// </summary>
    private static void ReadZip64Extra(
        string where,
        string name,
        ReadOnlySpan<byte> extra,
        ref long size,
        ref long compressed,
        ref long localHeader
    )
    {
        while (extra.Length >= 4)
        {
            int id = BinaryPrimitives.ReadUInt16LittleEndian(extra);
            int length = BinaryPrimitives.ReadUInt16LittleEndian(extra[2..]);
            if (length > extra.Length - 4)
                break;
            var data = extra.Slice(4, length);
            if (id == 1)
            {
                int at = 0;
                if (size == 0xFFFFFFFF)
                    size = Next(data, ref at);
                if (compressed == 0xFFFFFFFF)
                    compressed = Next(data, ref at);
                if (localHeader == 0xFFFFFFFF)
                    localHeader = Next(data, ref at);
                return;
            }
            extra = extra[(4 + length)..];
        }
        throw new AlloyException($"{where}: damaged zip: entry '{name}' needs a zip64 extra field, but has none");

        long Next(ReadOnlySpan<byte> data, ref int at)
        {
            if (at + 8 > data.Length)
                throw new AlloyException($"{where}: damaged zip: entry '{name}' has a short zip64 extra field");
            long value = Checked(where, BinaryPrimitives.ReadUInt64LittleEndian(data[at..]));
            at += 8;
            return value;
        }
    }

    /// <summary>The local header repeats the name and has its own extra field (torch pads it to align data).</summary>
    private static long DataStart(MappedFile file, string name, long localHeader, long compressed)
    {
        string where = file.Path;
        if (
            localHeader > file.Length - 30
            || BinaryPrimitives.ReadUInt32LittleEndian(file.Span(localHeader, 4)) != LocalHeaderSignature
        )
        {
            throw new AlloyException(
                $"{where}: damaged zip: the local header of entry '{name}' is missing (offset {localHeader})"
            );
        }
        var header = file.Span(localHeader, 30);
        long start =
            localHeader
            + 30
            + BinaryPrimitives.ReadUInt16LittleEndian(header[26..])
            + BinaryPrimitives.ReadUInt16LittleEndian(header[28..]);
        if (start > file.Length || compressed > file.Length - start)
        {
            throw new AlloyException(
                $"{where}: damaged zip: entry '{name}' ({compressed} bytes from offset {start}) runs past the end of "
                    + $"the file ({file.Length} bytes); the file is truncated"
            );
        }
        return start;
    }

    private static long Checked(string where, ulong value) =>
        value <= long.MaxValue
            ? (long)value
            : throw new AlloyException($"{where}: damaged zip: a size or offset of {value} is impossible");
}
