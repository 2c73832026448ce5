using System.Runtime.InteropServices;
using System.Text;

namespace Alloy.Tokenizers.Encoding;

/// <summary>
/// Unicode normalization (NFC, NFD, NFKC, NFKD) through ICU's <c>unorm2</c> functions. Alloy runs in .NET's invariant
/// globalization mode, where <see cref="string.Normalize(NormalizationForm)"/> leaves non-ASCII text unchanged, so the
/// ICU library that .NET itself would use (Debian: libicu72) is called directly. Text that a form cannot change (below
/// U+0300 for NFC, ASCII for the others) never reaches ICU.
/// </summary>
public static unsafe class UnicodeNormalization
{
    public static string Normalize(string text, NormalizationForm form)
    {
        char below = form == NormalizationForm.FormC ? '\u0300' : '\u00A0';
        if (text.AsSpan().IndexOfAnyInRange(below, '\uFFFF') < 0)
            return text;
        var icu = Icu.Value
            ?? throw new AlloyException(
                $"{Name(form)} normalization needs the ICU library (libicuuc), which was not found; install it "
                    + $"(Debian: apt-get install libicu72)"
            );
        var instance = form switch
        {
            NormalizationForm.FormC => icu.Nfc,
            NormalizationForm.FormD => icu.Nfd,
            NormalizationForm.FormKC => icu.Nfkc,
            _ => icu.Nfkd,
        };
        int capacity = text.Length * 2 + 16;
        while (true)
        {
            var buffer = new char[capacity];
            int error = 0;
            int length;
            fixed (char* source = text)
            fixed (char* destination = buffer)
                length = icu.Normalize(instance, source, text.Length, destination, capacity, &error);
            if (error == BufferOverflow)
            {
                capacity = length;
                continue;
            }
            if (error > 0)
                throw new AlloyException($"ICU could not {Name(form)}-normalize a text (error {error})");
            return new string(buffer, 0, length);
        }
    }

    /// <summary>Whether ICU was found (tests and messages).</summary>
    public static bool Available => Icu.Value is not null;

    private const int BufferOverflow = 15; // U_BUFFER_OVERFLOW_ERROR

    private static string Name(NormalizationForm form) =>
        form switch
        {
            NormalizationForm.FormC => "NFC",
            NormalizationForm.FormD => "NFD",
            NormalizationForm.FormKC => "NFKC",
            _ => "NFKD",
        };

    private sealed class Library
    {
        public required IntPtr Nfc,
            Nfd,
            Nfkc,
            Nfkd;
        public required delegate* unmanaged<IntPtr, char*, int, char*, int, int*, int> Normalize;
    }

    private static readonly Lazy<Library?> Icu = new(Load);

    /// <summary>
    /// Finds libicuuc (versioned names first, as distributions ship it) and its version-suffixed symbols.
    /// </summary>
    private static Library? Load()
    {
        var names = new List<string>();
        for (int version = 90; version >= 50; version--)
            names.Add($"libicuuc.so.{version}");
        names.AddRange(["libicuuc.so", "libicucore.dylib", "icu.dll", "icuuc.dll"]);
        foreach (var name in names)
        {
            if (!NativeLibrary.TryLoad(name, out var handle))
                continue;
            var suffixes = new List<string> { "" };
            if (name.StartsWith("libicuuc.so.", StringComparison.Ordinal))
                suffixes.Insert(0, "_" + name["libicuuc.so.".Length..]);
            for (int version = 90; version >= 50; version--)
                suffixes.Add($"_{version}");
            foreach (var suffix in suffixes)
            {
                if (!NativeLibrary.TryGetExport(handle, "unorm2_normalize" + suffix, out var normalize))
                    continue;
                IntPtr Instance(string function)
                {
                    if (!NativeLibrary.TryGetExport(handle, function + suffix, out var getter))
                        return IntPtr.Zero;
                    int error = 0;
                    var instance = ((delegate* unmanaged<int*, IntPtr>)getter)(&error);
                    return error > 0 ? IntPtr.Zero : instance;
                }
                var library = new Library
                {
                    Nfc = Instance("unorm2_getNFCInstance"),
                    Nfd = Instance("unorm2_getNFDInstance"),
                    Nfkc = Instance("unorm2_getNFKCInstance"),
                    Nfkd = Instance("unorm2_getNFKDInstance"),
                    Normalize = (delegate* unmanaged<IntPtr, char*, int, char*, int, int*, int>)normalize,
                };
                if (
                    library.Nfc != IntPtr.Zero
                    && library.Nfd != IntPtr.Zero
                    && library.Nfkc != IntPtr.Zero
                    && library.Nfkd != IntPtr.Zero
                )
                    return library;
            }
        }
        return null;
    }
}
