namespace Alloy.Tokenizers.Encoding;

/// <summary>
/// GPT-2's reversible byte ↔ character mapping, used by byte-level BPE vocabularies: printable Latin-1 bytes stand for
/// themselves, the other 68 bytes for the characters U+0100 onwards, in byte order. Every such character is one UTF-16
/// unit, so a mapped word has one char per byte.
/// </summary>
public static class ByteLevelAlphabet
{
    private static readonly char[] ByteToChar = Build();
    private static readonly short[] CharToByte = Invert(ByteToChar);

    /// <summary>The character that stands for <paramref name="value"/>.</summary>
    public static char ToChar(byte value) => ByteToChar[value];

    /// <summary>
    /// The byte a mapped character stands for, or -1 when <paramref name="c"/> is not one of the 256.
    /// </summary>
    public static int ToByte(char c) => c < CharToByte.Length ? CharToByte[c] : -1;

    private static char[] Build()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }

    private static short[] Invert(char[] map)
    {
        var inverse = new short[map.Max() + 1];
        Array.Fill(inverse, (short)-1);
        for (int b = 0; b < map.Length; b++)
            inverse[map[b]] = (short)b;
        return inverse;
    }
}
