using System.Runtime.InteropServices;

namespace Alloy.Checkpoints;

/// <summary>
/// Every file Alloy reads from outside goes through here, so that only regular files are opened: a named pipe blocks
/// forever on open, and a device such as /dev/zero never ends. A symbolic link is followed, and what it finally
/// points to must be a regular file too. Errors are <see cref="AlloyException"/>s that name the path.
/// </summary>
public static partial class InputFile
{
    /// <summary>Refuses a path that is missing or is not a regular file (after following symbolic links).</summary>
    public static void RequireRegular(string path)
    {
        switch (KindOf(path))
        {
            case FileKind.Regular:
                return;
            case FileKind.Missing:
                throw new AlloyException($"{path}: no such file");
            case FileKind.Folder:
                throw new AlloyException($"{path}: is a folder, not a file");
            case var kind:
                throw new AlloyException(
                    $"{path}: is a {Describe(kind)}, not a regular file; Alloy reads only regular files (a link is "
                        + "followed to one)"
                );
        }
    }

    public static byte[] ReadAllBytes(string path)
    {
        RequireRegular(path);
        return Guarded(path, () => File.ReadAllBytes(path));
    }

    public static string ReadAllText(string path)
    {
        RequireRegular(path);
        return Guarded(path, () => File.ReadAllText(path));
    }

    /// <summary>The lines of a text file, read lazily; the file is checked before the first line is read.</summary>
    public static IEnumerable<string> ReadLines(string path)
    {
        RequireRegular(path);
        return Guarded(path, () => File.ReadLines(path));
    }

    /// <summary>Copies a regular file (never a pipe or a device behind a link) to a new file.</summary>
    public static void Copy(string source, string destination, bool overwrite = false)
    {
        RequireRegular(source);
        Guarded(source, () => File.Copy(source, destination, overwrite));
    }

    private static T Guarded<T>(string path, Func<T> read)
    {
        try
        {
            return read();
        }
        catch (UnauthorizedAccessException)
        {
            throw new AlloyException($"{path}: permission denied");
        }
        catch (IOException e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new AlloyException($"{path}: no such file");
        }
        catch (IOException e)
        {
            throw new AlloyException($"{path}: cannot read: {Messages.OneLine(e.Message)}", e);
        }
    }

    private static void Guarded(string path, Action action) => Guarded(path, () =>
        {
            action();
            return 0;
        });

    public enum FileKind
    {
        Missing,
        Regular,
        Folder,
        NamedPipe,
        CharacterDevice,
        BlockDevice,
        Socket,
        Other,
    }

    /// <summary>What the path finally points to. Off Linux, only the distinctions .NET itself makes.</summary>
    public static FileKind KindOf(string path)
    {
        if (OperatingSystem.IsLinux())
        {
            // statx's buffer has one layout on every Linux architecture (unlike stat's); stx_mode is the u16 at 28.
            Span<byte> buffer = stackalloc byte[256];
            if (!TryStatx(path, buffer))
                return Directory.Exists(path) ? FileKind.Folder
                    : File.Exists(path) ? FileKind.Regular
                    : FileKind.Missing;
            return (BitConverter.ToUInt16(buffer[28..]) & 0xF000) switch
            {
                0x8000 => FileKind.Regular,
                0x4000 => FileKind.Folder,
                0x1000 => FileKind.NamedPipe,
                0x2000 => FileKind.CharacterDevice,
                0x6000 => FileKind.BlockDevice,
                0xC000 => FileKind.Socket,
                _ => FileKind.Other,
            };
        }
        return Directory.Exists(path) ? FileKind.Folder
            : File.Exists(path) ? FileKind.Regular
            : FileKind.Missing;
    }

    private static string Describe(FileKind kind) =>
        kind switch
        {
            FileKind.NamedPipe => "named pipe (FIFO)",
            FileKind.CharacterDevice => "character device",
            FileKind.BlockDevice => "block device",
            FileKind.Socket => "socket",
            _ => "special file",
        };

    private static bool TryStatx(string path, Span<byte> buffer)
    {
        try
        {
            return Statx(AtCurrentFolder, path, 0, StatxType, ref MemoryMarshal.GetReference(buffer)) == 0;
        }
        catch (EntryPointNotFoundException)
        {
            // A C library older than glibc 2.28 has no statx: fall back to what .NET can tell.
            return false;
        }
    }

    private const int AtCurrentFolder = -100;
    private const uint StatxType = 1;

    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int folder, string path, int flags, uint mask, ref byte buffer);
}
