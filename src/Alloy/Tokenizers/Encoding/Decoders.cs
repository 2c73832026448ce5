using System.Globalization;
using System.Text;

namespace Alloy.Tokenizers.Encoding;

/// <summary>
/// A tokenizer.json <c>decoder</c>: turns the tokens of ids back into text pieces, which are then concatenated.
/// </summary>
internal abstract class Decoder
{
    public abstract List<string> Decode(List<string> tokens);

    public const string Supported = "ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, BPEDecoder, Sequence";

    public static Decoder? Create(Settings? settings)
    {
        if (settings is not { } s)
            return null;
        var type = s.Type("decoder");
        return type switch
        {
            "Sequence" => new SequenceDecoder(s.List("decoders", "decoder").Select(d => Create(d)!).ToArray()),
            "ByteLevel" => new ByteLevelDecoder(),
            "Metaspace" => new MetaspaceDecoder(
                s.Character("replacement", "Metaspace decoder"),
                MetaspacePreTokenizer.Scheme(s, "Metaspace decoder")
            ),
            "Replace" => new ReplaceDecoder(
                s.Pattern("Replace decoder"),
                s.RequiredString("content", "Replace decoder")
            ),
            "ByteFallback" => new ByteFallbackDecoder(),
            "Fuse" => new FuseDecoder(),
            "Strip" => new StripDecoder(s.Character("content", "Strip decoder"), s.Int("start", 0), s.Int("stop", 0)),
            "BPEDecoder" => new BpeSuffixDecoder(s.String("suffix") ?? "</w>"),
            _ => throw s.Unsupported("decoder", type, Supported),
        };
    }
}

internal sealed class SequenceDecoder(Decoder[] steps) : Decoder
{
    public override List<string> Decode(List<string> tokens)
    {
        foreach (var step in steps)
            tokens = step.Decode(tokens);
        return tokens;
    }
}

/// <summary>All tokens' byte-level characters back to bytes, read as UTF-8 (invalid bytes become U+FFFD).</summary>
internal sealed class ByteLevelDecoder : Decoder
{
    public override List<string> Decode(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (var token in tokens)
        {
            // A token with a character outside the byte alphabet (an added token such as "▁") keeps its own UTF-8.
            if (token.All(c => ByteLevelAlphabet.ToByte(c) >= 0))
                bytes.AddRange(token.Select(c => (byte)ByteLevelAlphabet.ToByte(c)));
            else
                bytes.AddRange(System.Text.Encoding.UTF8.GetBytes(token));
        }
        return [System.Text.Encoding.UTF8.GetString(bytes.ToArray())];
    }
}

/// <summary>
/// The replacement character back to spaces; the first token loses its leading one unless nothing was prepended.
/// </summary>
internal sealed class MetaspaceDecoder(string replacement, PrependScheme scheme) : Decoder
{
    public override List<string> Decode(List<string> tokens) =>
        tokens
            .Select((token, i) => token.Replace(replacement, i == 0 && scheme != PrependScheme.Never ? "" : " "))
            .ToList();
}

internal sealed class ReplaceDecoder(UnicodeRegex pattern, string content) : Decoder
{
    public override List<string> Decode(List<string> tokens) =>
        tokens.Select(t => pattern.Replace(t, content)).ToList();
}

/// <summary>
/// Runs of &lt;0xNN&gt; tokens to the text their bytes spell, or one U+FFFD per byte when they are not valid UTF-8.
/// </summary>
internal sealed class ByteFallbackDecoder : Decoder
{
    public override List<string> Decode(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        var bytes = new List<byte>();
        void Flush()
        {
            if (bytes.Count == 0)
                return;
            var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes);
            if (System.Text.Unicode.Utf8.IsValid(span))
                result.Add(System.Text.Encoding.UTF8.GetString(span));
            else
                result.AddRange(Enumerable.Repeat("\uFFFD", bytes.Count));
            bytes.Clear();
        }
        foreach (var token in tokens)
        {
            if (
                token.Length == 6
                && token.StartsWith("<0x", StringComparison.Ordinal)
                && token[5] == '>'
                && byte.TryParse(
                    token.AsSpan(3, 2),
                    NumberStyles.AllowHexSpecifier,
                    CultureInfo.InvariantCulture,
                    out byte value
                )
            )
            {
                bytes.Add(value);
                continue;
            }
            Flush();
            result.Add(token);
        }
        Flush();
        return result;
    }
}

internal sealed class FuseDecoder : Decoder
{
    public override List<string> Decode(List<string> tokens) => [string.Concat(tokens)];
}

/// <summary>
/// Removes up to <c>start</c> leading and <c>stop</c> trailing copies of one character from each token.
/// </summary>
internal sealed class StripDecoder(string content, int start, int stop) : Decoder
{
    public override List<string> Decode(List<string> tokens) =>
        tokens
            .Select(token =>
            {
                var runes = token.EnumerateRunes().Select(r => r.ToString()).ToList();
                int from = 0,
                    to = runes.Count;
                while (from < Math.Min(start, runes.Count) && runes[from] == content)
                    from++;
                for (int i = 0; i < stop && to > from && runes[to - 1] == content; i++)
                    to--;
                return string.Concat(runes.Skip(from).Take(to - from));
            })
            .ToList();
}

/// <summary>The end-of-word suffix becomes a space between words and disappears after the last token.</summary>
internal sealed class BpeSuffixDecoder(string suffix) : Decoder
{
    public override List<string> Decode(List<string> tokens) =>
        tokens.Select((token, i) => Replace(token, i == tokens.Count - 1 ? "" : " ")).ToList();

    /// <summary>
    /// Rust's str::replace, which Hugging Face's decoder calls: an empty suffix matches at every character boundary
    /// (<c>"ab"</c> becomes <c>" a b "</c>), where .NET's string.Replace refuses an empty pattern.
    /// </summary>
    private string Replace(string token, string with) =>
        suffix.Length > 0
            ? token.Replace(suffix, with)
            : with + string.Concat(token.EnumerateRunes().Select(r => r + with));
}
