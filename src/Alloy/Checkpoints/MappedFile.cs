using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace Alloy.Checkpoints;

/// <summary>
/// A read-only memory map of a whole file. Reading a span touches only the pages it covers, so opening a 100 GB
/// checkpoint costs nothing until its tensors are read. Spans are valid until the file is disposed.
/// Thread-safe for reading.
/// </summary>
public sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _pointer;
    private bool _disposed;

    private MappedFile(string path, long length, MemoryMappedFile? map, MemoryMappedViewAccessor? view)
    {
        Path = path;
        Length = length;
        _map = map;
        _view = view;
        if (view is not null)
        {
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            // The view may start before offset 0 when the OS aligns it; PointerOffset corrects for that.
            _pointer = pointer + view.PointerOffset;
        }
    }

    /// <summary>Maps the file read-only. A missing or unreadable file is an <see cref="AlloyException"/>.</summary>
    public static MappedFile Open(string path)
    {
        var fullPath = System.IO.Path.GetFullPath(path);
        InputFile.RequireRegular(fullPath);
        FileStream stream;
        try
        {
            stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        }
        catch (FileNotFoundException)
        {
            throw new AlloyException($"{fullPath}: no such file");
        }
        catch (DirectoryNotFoundException)
        {
            throw new AlloyException($"{fullPath}: no such file");
        }
        catch (UnauthorizedAccessException)
        {
            throw new AlloyException($"{fullPath}: permission denied");
        }
        catch (IOException e)
        {
            throw new AlloyException($"{fullPath}: cannot open: {Messages.OneLine(e.Message)}", e);
        }

        long length = stream.Length;
        if (length == 0)
        {
            // The OS cannot map an empty file; an empty map serves only zero-length reads.
            stream.Dispose();
            return new MappedFile(fullPath, 0, null, null);
        }

        MemoryMappedFile? map = null;
        try
        {
            map = MemoryMappedFile.CreateFromFile(
                stream,
                mapName: null,
                capacity: 0,
                MemoryMappedFileAccess.Read,
                HandleInheritability.None,
                leaveOpen: false
            );
            var view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            return new MappedFile(fullPath, length, map, view);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            map?.Dispose();
            stream.Dispose();
            throw new AlloyException($"{fullPath}: cannot memory-map: {Messages.OneLine(e.Message)}", e);
        }
    }

    /// <summary>The full path of the file.</summary>
    public string Path { get; }

    /// <summary>The file's length in bytes when it was opened.</summary>
    public long Length { get; }

    /// <summary>The bytes [offset, offset + length) of the file.</summary>
    public ReadOnlySpan<byte> Span(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (offset < 0 || length < 0 || offset > Length - length)
        {
            throw new ArgumentOutOfRangeException(
                nameof(offset),
                $"{Path}: bytes [{offset}, {offset + length}) are outside the file ({Length} bytes)"
            );
        }
        return length == 0 ? ReadOnlySpan<byte>.Empty : new ReadOnlySpan<byte>(_pointer + offset, length);
    }

    /// <summary>
    /// Tells the OS the file will be read front to back (Linux madvise MADV_SEQUENTIAL: aggressive read-ahead, early
    /// page release). Only a hint: returns false where unsupported or refused.
    /// </summary>
    public bool AdviseSequential()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_pointer is null || !OperatingSystem.IsLinux())
            return false;
        // madvise needs a page-aligned start; round down (the view itself starts on a page boundary).
        long page = Environment.SystemPageSize;
        byte* start = (byte*)((nint)_pointer & ~(nint)(page - 1));
        try
        {
            return Native.madvise(start, (nuint)(Length + (_pointer - start)), Native.MADV_SEQUENTIAL) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>
    /// Drops the pages of [offset, offset + length) from this process's memory (Linux madvise MADV_DONTNEED). The
    /// data stays in the OS page cache and a later read faults it back in, so this only keeps resident memory from
    /// growing with the bytes read. Only a hint: returns false where unsupported.
    /// </summary>
    public bool Release(long offset, long length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_pointer is null || !OperatingSystem.IsLinux() || length <= 0)
            return false;
        // Only whole pages inside the range may be dropped (neighbouring tensors may share the boundary pages).
        long page = Environment.SystemPageSize;
        nint first = ((nint)(_pointer + offset) + (nint)(page - 1)) & ~(nint)(page - 1);
        nint end = (nint)(_pointer + Math.Min(offset + length, Length)) & ~(nint)(page - 1);
        if (end <= first)
            return false;
        try
        {
            return Native.madvise((void*)first, (nuint)(end - first), Native.MADV_DONTNEED) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
        _pointer = null;
    }

    public override string ToString() => Path;

    private static class Native
    {
        public const int MADV_SEQUENTIAL = 2;
        public const int MADV_DONTNEED = 4;

        [DllImport("libc", SetLastError = true)]
        public static extern int madvise(void* address, nuint length, int advice);
    }
}
