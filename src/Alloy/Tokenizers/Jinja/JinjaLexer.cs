using System.Globalization;
using System.Text;

namespace Alloy.Tokenizers.Jinja;

/// <summary>Where something is in a template: 1-based line and column.</summary>
internal readonly record struct Position(int Line, int Column);

internal enum TokenKind
{
    Name,
    String,
    Integer,
    Float,
    Operator,
    End,
}

/// <summary>A token inside a tag. <see cref="Value"/> is the literal's value (string, long or double).</summary>
internal readonly record struct Token(TokenKind Kind, string Text, object? Value, Position At)
{
    public bool Is(string text) => (Kind is TokenKind.Operator or TokenKind.Name) && Text == text;

    public string Describe() => Kind == TokenKind.End ? "the end of the tag" : $"'{Text}'";
}

/// <summary>
/// A piece of a template: literal text, an output tag <c>{{ … }}</c> or a statement tag <c>{% … %}</c>.
/// </summary>
internal abstract record Segment(Position At);

internal sealed record TextSegment(string Text, Position At) : Segment(At);

/// <summary>A tag's tokens, ending with a <see cref="TokenKind.End"/> token.</summary>
internal sealed record TagSegment(bool IsStatement, IReadOnlyList<Token> Tokens, Position At) : Segment(At);

/// <summary>
/// Splits a template into segments as Jinja2's lexer does with the settings transformers renders chat templates with:
/// newlines normalised to \n and one trailing newline dropped (keep_trailing_newline off); <c>{%-</c>/<c>-%}</c>
/// (and the same for <c>{{</c> and <c>{#</c>) strip all whitespace on that side; trim_blocks drops the first newline
/// after a statement or comment; lstrip_blocks drops spaces and tabs between the start of a line and a statement or
/// comment; <c>{%+</c> and <c>+%}</c> turn those two off for one tag.
/// </summary>
internal sealed class JinjaLexer
{
    private static readonly string[] Operators =
    [
        "**",
        "//",
        "==",
        "!=",
        ">=",
        "<=",
        "+",
        "-",
        "*",
        "/",
        "%",
        "~",
        "[",
        "]",
        "(",
        ")",
        "{",
        "}",
        ">",
        "<",
        "=",
        ".",
        ":",
        "|",
        ",",
        ";",
    ];

    private readonly string _source;
    private readonly string _origin;
    private readonly int[] _lineStarts;

    private JinjaLexer(string source, string origin)
    {
        _source = source;
        _origin = origin;
        var starts = new List<int> { 0 };
        for (int i = 0; i < source.Length; i++)
            if (source[i] == '\n')
                starts.Add(i + 1);
        _lineStarts = [.. starts];
    }

    public static IReadOnlyList<Segment> Split(string template, string origin)
    {
        string source = template.ReplaceLineEndings("\n");
        if (source.EndsWith('\n'))
            source = source[..^1];
        return new JinjaLexer(source, origin).Segments();
    }

    private IReadOnlyList<Segment> Segments()
    {
        var segments = new List<Segment>();
        int pos = 0;
        bool lineStarting = true;
        while (pos < _source.Length)
        {
            int open = NextTag(pos);
            string text = _source[pos..(open < 0 ? _source.Length : open)];
            if (open < 0)
            {
                segments.Add(new TextSegment(text, PositionOf(pos)));
                break;
            }
            char kind = _source[open + 1];
            char sign = open + 2 < _source.Length && _source[open + 2] is '-' or '+' ? _source[open + 2] : '\0';
            if (sign == '-')
                text = text.TrimEnd();
            else if (sign != '+' && kind != '{')
                text = LeftStripped(text, lineStarting);
            if (text.Length > 0)
                segments.Add(new TextSegment(text, PositionOf(pos)));

            int body = open + 2 + (sign == '\0' ? 0 : 1);
            int end;
            if (kind == '#')
            {
                int close = _source.IndexOf("#}", body, StringComparison.Ordinal);
                if (close < 0)
                    throw Error(PositionOf(open), "a comment '{#' is never closed with '#}'");
                char closeSign = close > body && _source[close - 1] is '-' or '+' ? _source[close - 1] : '\0';
                end = AfterClose(close + 2, closeSign, trimNewline: true);
            }
            else
            {
                var (tokens, close, closeSign) = Tokens(body, statement: kind == '%', PositionOf(open));
                segments.Add(new TagSegment(kind == '%', tokens, PositionOf(open)));
                end = AfterClose(close, closeSign, trimNewline: kind == '%');
            }
            lineStarting = end > 0 && _source[end - 1] == '\n';
            pos = end;
        }
        return segments;
    }

    /// <summary>
    /// lstrip_blocks: drop the spaces before a tag when nothing else stands between it and its line's start.
    /// </summary>
    private static string LeftStripped(string text, bool lineStarting)
    {
        int lineStart = text.LastIndexOf('\n') + 1;
        if (lineStart == 0 && !lineStarting)
            return text;
        if (lineStart == text.Length)
            return text;
        for (int i = lineStart; i < text.Length; i++)
            if (!char.IsWhiteSpace(text[i]))
                return text;
        return text[..lineStart];
    }

    /// <summary>Where text resumes after a tag's closing delimiter (which ends at <paramref name="after"/>).</summary>
    private int AfterClose(int after, char sign, bool trimNewline)
    {
        if (sign == '-')
        {
            while (after < _source.Length && char.IsWhiteSpace(_source[after]))
                after++;
        }
        else if (sign != '+' && trimNewline && after < _source.Length && _source[after] == '\n')
        {
            after++;
        }
        return after;
    }

    private int NextTag(int from)
    {
        for (int i = _source.IndexOf('{', from); i >= 0 && i + 1 < _source.Length; i = _source.IndexOf('{', i + 1))
            if (_source[i + 1] is '{' or '%' or '#')
                return i;
        return -1;
    }

    /// <summary>
    /// The tokens of a tag from <paramref name="start"/> to its closing delimiter, which counts only outside brackets
    /// (so <c>{{ {'a': {'b': 1}} }}</c> closes at the last <c>}}</c>). Returns the tokens, the index just past the
    /// delimiter and its whitespace sign.
    /// </summary>
    private (List<Token> Tokens, int After, char Sign) Tokens(int start, bool statement, Position opened)
    {
        string closer = statement ? "%}" : "}}";
        var tokens = new List<Token>();
        var brackets = new Stack<char>();
        int pos = start;
        while (true)
        {
            while (pos < _source.Length && char.IsWhiteSpace(_source[pos]))
                pos++;
            if (pos >= _source.Length)
                throw Error(opened, $"'{(statement ? "{%" : "{{")}' is never closed with '{closer}'");
            if (brackets.Count == 0)
            {
                if (string.CompareOrdinal(_source, pos, closer, 0, 2) == 0)
                    return (Ended(tokens, pos), pos + 2, '\0');
                if (
                    _source[pos] is '-' or '+'
                    && string.CompareOrdinal(_source, pos + 1, closer, 0, 2) == 0
                    && (_source[pos] == '-' || statement)
                )
                    return (Ended(tokens, pos), pos + 3, _source[pos]);
            }
            var at = PositionOf(pos);
            char c = _source[pos];
            if (char.IsAsciiDigit(c))
            {
                pos = Number(pos, at, tokens);
            }
            else if (char.IsLetter(c) || c == '_')
            {
                int begin = pos;
                while (pos < _source.Length && (char.IsLetterOrDigit(_source[pos]) || _source[pos] == '_'))
                    pos++;
                tokens.Add(new Token(TokenKind.Name, _source[begin..pos], null, at));
            }
            else if (c is '\'' or '"')
            {
                pos = StringLiteral(pos, at, tokens);
            }
            else
            {
                string? op = Operators.FirstOrDefault(o => string.CompareOrdinal(_source, pos, o, 0, o.Length) == 0);
                if (op is null)
                    throw Error(at, $"unexpected character '{c}'");
                if (op is "(" or "[" or "{")
                    brackets.Push(op[0]);
                if (op is ")" or "]" or "}")
                {
                    char expected =
                        brackets.Count == 0
                            ? '\0'
                            : brackets.Pop() switch
                            {
                                '(' => ')',
                                '[' => ']',
                                _ => '}',
                            };
                    if (expected != op[0])
                        throw Error(at, $"unexpected '{op}'");
                }
                tokens.Add(new Token(TokenKind.Operator, op, null, at));
                pos += op.Length;
            }
        }
    }

    private List<Token> Ended(List<Token> tokens, int pos)
    {
        tokens.Add(new Token(TokenKind.End, "", null, PositionOf(pos)));
        return tokens;
    }

    /// <summary>An integer or float literal (digits may be grouped with underscores, as in Python).</summary>
    private int Number(int pos, Position at, List<Token> tokens)
    {
        int begin = pos;
        static bool Digit(char c) => char.IsAsciiDigit(c) || c == '_';
        while (pos < _source.Length && Digit(_source[pos]))
            pos++;
        bool isFloat = false;
        if (pos + 1 < _source.Length && _source[pos] == '.' && char.IsAsciiDigit(_source[pos + 1]))
        {
            isFloat = true;
            pos++;
            while (pos < _source.Length && Digit(_source[pos]))
                pos++;
        }
        if (pos < _source.Length && _source[pos] is 'e' or 'E')
        {
            int exponent = pos + 1;
            if (exponent < _source.Length && _source[exponent] is '+' or '-')
                exponent++;
            if (exponent < _source.Length && char.IsAsciiDigit(_source[exponent]))
            {
                isFloat = true;
                pos = exponent;
                while (pos < _source.Length && Digit(_source[pos]))
                    pos++;
            }
        }
        string text = _source[begin..pos];
        string digits = text.Replace("_", "");
        object value =
            isFloat ? (object)double.Parse(digits, NumberStyles.Float, CultureInfo.InvariantCulture)
            : long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long n) ? n
            : throw Error(at, $"the integer {text} is too large");
        tokens.Add(new Token(isFloat ? TokenKind.Float : TokenKind.Integer, text, value, at));
        return pos;
    }

    /// <summary>
    /// A quoted string with Python's escapes (\n, \t, \\, \', \", \xhh, \uhhhh, \Uhhhhhhhh, octal); others stay as
    /// written.
    /// </summary>
    private int StringLiteral(int pos, Position at, List<Token> tokens)
    {
        char quote = _source[pos];
        var value = new StringBuilder();
        int i = pos + 1;
        while (true)
        {
            if (i >= _source.Length)
                throw Error(at, "a string is never closed");
            char c = _source[i];
            if (c == quote)
                break;
            if (c != '\\' || i + 1 >= _source.Length)
            {
                value.Append(c);
                i++;
                continue;
            }
            char e = _source[i + 1];
            i += 2;
            switch (e)
            {
                case 'n':
                    value.Append('\n');
                    break;
                case 't':
                    value.Append('\t');
                    break;
                case 'r':
                    value.Append('\r');
                    break;
                case '\\':
                    value.Append('\\');
                    break;
                case '\'':
                    value.Append('\'');
                    break;
                case '"':
                    value.Append('"');
                    break;
                case '\n':
                    break; // a backslash-newline continues the line
                case 'a':
                    value.Append('\a');
                    break;
                case 'b':
                    value.Append('\b');
                    break;
                case 'f':
                    value.Append('\f');
                    break;
                case 'v':
                    value.Append('\v');
                    break;
                case 'x' or 'u' or 'U':
                    int length =
                        e == 'x' ? 2
                        : e == 'u' ? 4
                        : 8;
                    if (
                        i + length > _source.Length
                        || !int.TryParse(
                            _source.AsSpan(i, length),
                            NumberStyles.HexNumber,
                            CultureInfo.InvariantCulture,
                            out int code
                        )
                        || !Rune.IsValid(code)
                    )
                        throw Error(at, $"a string has a malformed \\{e} escape");
                    value.Append(char.ConvertFromUtf32(code));
                    i += length;
                    break;
                case >= '0' and <= '7':
                    int octal = e - '0';
                    for (int k = 0; k < 2 && i < _source.Length && _source[i] is >= '0' and <= '7'; k++, i++)
                        octal = octal * 8 + (_source[i] - '0');
                    value.Append((char)octal);
                    break;
                default:
                    value.Append('\\').Append(e);
                    break;
            }
        }
        tokens.Add(new Token(TokenKind.String, _source[pos..(i + 1)], value.ToString(), at));
        return i + 1;
    }

    private Position PositionOf(int index)
    {
        int line = Array.BinarySearch(_lineStarts, index);
        if (line < 0)
            line = ~line - 1;
        return new Position(line + 1, index - _lineStarts[line] + 1);
    }

    private AlloyException Error(Position at, string problem) => JinjaTemplate.Error(_origin, at, problem);
}
