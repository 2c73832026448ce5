using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Alloy.Tokenizers.Jinja;

/// <summary>
/// What a missing variable, key or attribute gives, as Jinja2's default Undefined: empty when printed, false, empty
/// when iterated, and an error when used any other way (<see cref="Description"/> says what was missing).
/// </summary>
internal sealed class Undefined(string description)
{
    public string Description { get; } = description;

    public JinjaRuntimeError Error() => new(Description);
}

/// <summary>Jinja2's <c>namespace(…)</c>: attributes a template may set from inside a loop.</summary>
internal sealed class Namespace
{
    public OrderedDictionary<string, object?> Attributes { get; } = new(StringComparer.Ordinal);
}

/// <summary>The <c>loop</c> variable of a for loop.</summary>
internal sealed class LoopInfo(IReadOnlyList<object?> items)
{
    public int Index0 { get; set; }

    public object? Attribute(string name) =>
        name switch
        {
            "index0" => (long)Index0,
            "index" => (long)Index0 + 1,
            "revindex" => (long)(items.Count - Index0),
            "revindex0" => (long)(items.Count - Index0 - 1),
            "first" => Index0 == 0,
            "last" => Index0 == items.Count - 1,
            "length" => (long)items.Count,
            "previtem" => Index0 > 0 ? items[Index0 - 1] : new Undefined("there is no previous item"),
            "nextitem" => Index0 + 1 < items.Count ? items[Index0 + 1] : new Undefined("there is no next item"),
            _ => new Undefined($"'loop' has no attribute '{name}'"),
        };
}

/// <summary>A function a template can call (raise_exception, namespace, range …).</summary>
internal sealed record JinjaFunction(string Name, Func<CallArguments, object?> Invoke);

/// <summary>The arguments of a call, a filter or a test (after the value it applies to).</summary>
internal sealed record CallArguments(
    IReadOnlyList<object?> Positional,
    IReadOnlyDictionary<string, object?> Named,
    string Callee
)
{
    public static CallArguments None(string callee) => new([], new Dictionary<string, object?>(), callee);

    /// <summary>
    /// The argument at <paramref name="index"/> or named <paramref name="name"/>, else <paramref name="fallback"/>.
    /// </summary>
    public object? Get(int index, string name, object? fallback = null) =>
        index < Positional.Count ? Positional[index]
        : Named.TryGetValue(name, out var value) ? value
        : fallback;

    public object? Required(int index, string name) =>
        index < Positional.Count || Named.ContainsKey(name)
            ? Get(index, name)
            : throw new JinjaRuntimeError($"{Callee}() needs its argument '{name}'");

    /// <summary>
    /// Refuses arguments beyond those a callee knows, so an unsupported option never passes silently.
    /// </summary>
    public CallArguments Allow(int positional, params string[] names)
    {
        if (Positional.Count > positional)
            throw new JinjaRuntimeError($"{Callee}() takes at most {positional} positional arguments");
        foreach (var name in Named.Keys)
            if (!names.Contains(name))
                throw new JinjaRuntimeError($"{Callee}() has no argument '{name}' in Alloy's Jinja subset");
        return this;
    }
}

/// <summary>An error while rendering; the template adds where it happened.</summary>
internal sealed class JinjaRuntimeError(string message, Position? at = null) : Exception(message)
{
    public Position? At { get; } = at;
}

/// <summary>
/// Python's semantics for the values templates compute with: null is None, long and double are int and float,
/// List and object?[] are list and tuple, OrderedDictionary is dict (string keys only), plus <see cref="Undefined"/>.
/// </summary>
internal static class Py
{
    /// <summary>A host value (JSON, CLR collections and numbers) as a template value.</summary>
    public static object? FromHost(object? value) =>
        value switch
        {
            null or string or bool or long or double or Undefined or Namespace or JinjaFunction => value,
            int i => (long)i,
            float f => (double)f,
            JsonNode node => FromJson(node),
            IEnumerable<KeyValuePair<string, object?>> pairs => Dict(pairs.Select(p => (p.Key, FromHost(p.Value)))),
            IEnumerable<KeyValuePair<string, string>> pairs => Dict(pairs.Select(p => (p.Key, (object?)p.Value))),
            IEnumerable sequence => sequence.Cast<object?>().Select(FromHost).ToList(),
            _ => throw new ArgumentException($"a {value.GetType().Name} cannot be passed to a template", nameof(value)),
        };

    private static object? FromJson(JsonNode node) =>
        node switch
        {
            JsonObject o => Dict(o.Select(p => (p.Key, p.Value is null ? null : FromJson(p.Value)))),
            JsonArray a => a.Select(e => e is null ? null : FromJson(e)).ToList(),
            JsonValue v => v.GetValueKind() switch
            {
                JsonValueKind.String => v.GetValue<string>(),
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                JsonValueKind.Number => v.TryGetValue(out long n) ? n : (object)v.GetValue<double>(),
                _ => null,
            },
            _ => null,
        };

    public static OrderedDictionary<string, object?> Dict(IEnumerable<(string Key, object? Value)> pairs)
    {
        var dict = new OrderedDictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (key, value) in pairs)
            dict[key] = value;
        return dict;
    }

    public static string TypeName(object? value) =>
        value switch
        {
            null => "NoneType",
            string => "str",
            bool => "bool",
            long => "int",
            double => "float",
            object?[] => "tuple",
            IList<object?> => "list",
            OrderedDictionary<string, object?> => "dict",
            Undefined => "undefined",
            Namespace => "Namespace",
            LoopInfo => "LoopContext",
            JinjaFunction => "function",
            _ => value.GetType().Name,
        };

    public static bool Truthy(object? value) =>
        value switch
        {
            null or Undefined => false,
            bool b => b,
            long n => n != 0,
            double d => d != 0,
            string s => s.Length > 0,
            ICollection c => c.Count > 0,
            _ => true,
        };

    /// <summary>Python's str(): what <c>{{ value }}</c> prints (Undefined prints nothing).</summary>
    public static string Str(object? value) =>
        value switch
        {
            string s => s,
            Undefined => "",
            _ => Repr(value),
        };

    /// <summary>Python's repr() (strings quoted; lists, tuples and dicts in Python's notation).</summary>
    public static string Repr(object? value) =>
        value switch
        {
            null => "None",
            bool b => b ? "True" : "False",
            long n => n.ToString(CultureInfo.InvariantCulture),
            double d => FloatRepr(d),
            string s => StringRepr(s),
            object?[] tuple => tuple.Length == 1
                ? $"({Repr(tuple[0])},)"
                : $"({string.Join(", ", tuple.Select(Repr))})",
            IList<object?> list => $"[{string.Join(", ", list.Select(Repr))}]",
            OrderedDictionary<string, object?> dict =>
                $"{{{string.Join(", ", dict.Select(p => $"{StringRepr(p.Key)}: {Repr(p.Value)}"))}}}",
            Undefined => "",
            Namespace ns => $"<Namespace {Repr(ns.Attributes)}>",
            _ => $"<{TypeName(value)}>",
        };

    /// <summary>
    /// Python's float repr: the shortest digits that round-trip, fixed notation for exponents −4 to 15.
    /// </summary>
    public static string FloatRepr(double value)
    {
        if (double.IsNaN(value))
            return "nan";
        if (double.IsInfinity(value))
            return value > 0 ? "inf" : "-inf";
        if (value == 0)
            return double.IsNegative(value) ? "-0.0" : "0.0";
        // "E16" would not be the shortest: take .NET's shortest round-trip digits and place the point as Python does.
        string r = Math.Abs(value).ToString("R", CultureInfo.InvariantCulture);
        int e = r.IndexOf('E');
        string mantissa = e < 0 ? r : r[..e];
        int exponent = e < 0 ? 0 : int.Parse(r[(e + 1)..], CultureInfo.InvariantCulture);
        int dot = mantissa.IndexOf('.');
        string digits = mantissa.Replace(".", "");
        int pointAt = (dot < 0 ? mantissa.Length : dot) + exponent; // value = 0.digits × 10^pointAt
        int leading = digits.Length - digits.TrimStart('0').Length;
        digits = digits.Trim('0');
        pointAt -= leading;
        int scientific = pointAt - 1; // value = d.ddd × 10^scientific
        string sign = value < 0 ? "-" : "";
        if (scientific is >= -4 and < 16)
        {
            string whole = pointAt <= 0 ? "0" : digits.PadRight(pointAt, '0')[..pointAt];
            string fraction =
                pointAt <= 0 ? new string('0', -pointAt) + digits
                : digits.Length > pointAt ? digits[pointAt..]
                : "";
            return $"{sign}{whole}.{(fraction.Length == 0 ? "0" : fraction)}";
        }
        string significand = digits.Length == 1 ? digits : $"{digits[0]}.{digits[1..]}";
        return $"{sign}{significand}e{(scientific < 0 ? '-' : '+')}{Math.Abs(scientific):00}";
    }

    private static string StringRepr(string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var text = new StringBuilder().Append(quote);
        foreach (char c in s)
        {
            text.Append(
                c switch
                {
                    '\\' => "\\\\",
                    '\n' => "\\n",
                    '\r' => "\\r",
                    '\t' => "\\t",
                    _ when c == quote => "\\" + c,
                    < ' ' or (>= '\u007f' and <= '\u00a0') => $"\\x{(int)c:x2}",
                    _ => c.ToString(),
                }
            );
        }
        return text.Append(quote).ToString();
    }

    /// <summary>Python's ==: numbers by value (True == 1), sequences and dicts element by element.</summary>
    public static bool Equal(object? a, object? b)
    {
        if (a is Undefined || b is Undefined)
            return a is Undefined && b is Undefined;
        if (IsNumber(a) && IsNumber(b))
            return a is double || b is double ? ToDouble(a) == ToDouble(b) : ToLong(a) == ToLong(b);
        return (a, b) switch
        {
            (null, null) => true,
            (string x, string y) => x == y,
            (object?[] x, object?[] y) => x.Length == y.Length && x.Zip(y).All(p => Equal(p.First, p.Second)),
            (object?[], _) or (_, object?[]) => false,
            (IList<object?> x, IList<object?> y) => x.Count == y.Count && x.Zip(y).All(p => Equal(p.First, p.Second)),
            (OrderedDictionary<string, object?> x, OrderedDictionary<string, object?> y) => x.Count == y.Count
                && x.All(p => y.TryGetValue(p.Key, out var v) && Equal(p.Value, v)),
            _ => ReferenceEquals(a, b),
        };
    }

    /// <summary>
    /// Python's ordering of two numbers, two strings (by code point) or two sequences; anything else is an error.
    /// </summary>
    public static int Compare(object? a, object? b, string op)
    {
        if (IsNumber(a) && IsNumber(b))
            return a is double || b is double ? ToDouble(a).CompareTo(ToDouble(b)) : ToLong(a).CompareTo(ToLong(b));
        if (a is string x && b is string y)
            return string.CompareOrdinal(x, y) switch
            {
                < 0 => -1,
                0 => 0,
                _ => 1,
            };
        if (a is IList<object?> p && b is IList<object?> q && (a is object?[]) == (b is object?[]))
        {
            for (int i = 0; i < Math.Min(p.Count, q.Count); i++)
                if (!Equal(p[i], q[i]))
                    return Compare(p[i], q[i], op);
            return p.Count.CompareTo(q.Count);
        }
        throw Unsupported(op, a, b);
    }

    public static bool Contains(object? container, object? item) =>
        container switch
        {
            string s when item is string part => s.Contains(part, StringComparison.Ordinal),
            string => throw new JinjaRuntimeError($"'in <string>' needs a string on the left, not {TypeName(item)}"),
            IList<object?> list => list.Any(e => Equal(e, item)),
            OrderedDictionary<string, object?> dict => item is string key && dict.ContainsKey(key),
            Undefined => false,
            _ => throw new JinjaRuntimeError($"argument of type '{TypeName(container)}' is not iterable"),
        };

    public static IReadOnlyList<object?> Iterate(object? value) =>
        value switch
        {
            IList<object?> list => [.. list],
            OrderedDictionary<string, object?> dict => [.. dict.Keys],
            string s => [.. CodePoints(s)],
            Undefined => [],
            _ => throw new JinjaRuntimeError($"'{TypeName(value)}' object is not iterable"),
        };

    public static long Length(object? value) =>
        value switch
        {
            string s => CodePoints(s).Count,
            ICollection c => c.Count,
            Undefined => 0,
            _ => throw new JinjaRuntimeError($"object of type '{TypeName(value)}' has no len()"),
        };

    /// <summary>A string's characters as Python counts them: one per code point.</summary>
    public static IReadOnlyList<string> CodePoints(string s)
    {
        var points = new List<string>(s.Length);
        foreach (var rune in s.EnumerateRunes())
            points.Add(rune.ToString());
        return points;
    }

    /// <summary>
    /// <c>obj.name</c>: an attribute, else the item of that name (Jinja2's getattr); a missing one is undefined.
    /// </summary>
    public static object? Attribute(object? obj, string name) =>
        obj switch
        {
            Undefined u => throw u.Error(),
            OrderedDictionary<string, object?> dict => dict.TryGetValue(name, out var value)
                ? value
                : Missing(obj, name),
            Namespace ns => ns.Attributes.TryGetValue(name, out var value) ? value : Missing(obj, name),
            LoopInfo loop => loop.Attribute(name),
            _ => Missing(obj, name),
        };

    /// <summary>
    /// <c>obj[key]</c>: an item (negative indices count from the end), else an attribute of that name.
    /// </summary>
    public static object? Item(object? obj, object? key)
    {
        switch (obj)
        {
            case Undefined u:
                throw u.Error();
            case OrderedDictionary<string, object?> dict:
                return key is string k && dict.TryGetValue(k, out var value) ? value : Missing(obj, Str(key));
            case IList<object?> list when IsInteger(key):
                long index = ToLong(key) < 0 ? ToLong(key) + list.Count : ToLong(key);
                return index >= 0 && index < list.Count
                    ? list[(int)index]
                    : new Undefined($"{TypeName(obj)} index {Repr(key)} is out of range");
            case string s when IsInteger(key):
                var points = CodePoints(s);
                long at = ToLong(key) < 0 ? ToLong(key) + points.Count : ToLong(key);
                return at >= 0 && at < points.Count
                    ? points[(int)at]
                    : new Undefined($"string index {Repr(key)} is out of range");
            default:
                return key is string name ? Attribute(obj, name) : Missing(obj, Repr(key));
        }
    }

    private static Undefined Missing(object? obj, string name) =>
        new($"'{TypeName(obj)} object' has no attribute '{name}'");

    /// <summary>
    /// <c>obj[start:stop:step]</c> on a list, tuple or string, with Python's rules for omitted and negative bounds.
    /// </summary>
    public static object? Slice(object? obj, object? start, object? stop, object? step)
    {
        long stride =
            step is null ? 1
            : IsInteger(step) ? ToLong(step)
            : throw new JinjaRuntimeError("slice step must be an integer");
        if (stride == 0)
            throw new JinjaRuntimeError("slice step cannot be zero");
        IReadOnlyList<object?> items = obj switch
        {
            IList<object?> list => [.. list],
            string s => [.. CodePoints(s)],
            Undefined u => throw u.Error(),
            _ => throw new JinjaRuntimeError($"'{TypeName(obj)}' object is not subscriptable"),
        };
        int n = items.Count;
        long Bound(object? b, long whenMissing, long low, long high)
        {
            if (b is null)
                return whenMissing;
            if (!IsInteger(b))
                throw new JinjaRuntimeError("slice indices must be integers or none");
            long v = ToLong(b);
            if (v < 0)
                v += n;
            return Math.Clamp(v, low, high);
        }
        var picked = new List<object?>();
        if (stride > 0)
        {
            for (long i = Bound(start, 0, 0, n), end = Bound(stop, n, 0, n); i < end; i += stride)
                picked.Add(items[(int)i]);
        }
        else
        {
            for (long i = Bound(start, n - 1, -1, n - 1), end = Bound(stop, -1, -1, n - 1); i > end; i += stride)
                picked.Add(items[(int)i]);
        }
        return obj switch
        {
            string => string.Concat(picked.Cast<string>()),
            object?[] => picked.ToArray(),
            _ => picked,
        };
    }

    public static object? Add(object? a, object? b) =>
        (a, b) switch
        {
            (Undefined u, _) => throw u.Error(),
            (_, Undefined u) => throw u.Error(),
            (string x, string y) => x + y,
            (object?[] x, object?[] y) => x.Concat(y).ToArray(),
            (IList<object?> x, IList<object?> y) when a is not object?[] && b is not object?[] => x.Concat(y).ToList(),
            _ when IsNumber(a) && IsNumber(b) => a is double || b is double
                ? (object)(ToDouble(a) + ToDouble(b))
                : checked(ToLong(a) + ToLong(b)),
            _ => throw Unsupported("+", a, b),
        };

    /// <summary>−, *, /, //, % and ** (Python's floor division and modulo; * also repeats a string or list).</summary>
    public static object? Arithmetic(string op, object? a, object? b)
    {
        if (a is Undefined u)
            throw u.Error();
        if (b is Undefined v)
            throw v.Error();
        if (op == "*" && IsInteger(b) && a is string or IList<object?>)
            return Repeat(a, ToLong(b));
        if (op == "*" && IsInteger(a) && b is string or IList<object?>)
            return Repeat(b, ToLong(a));
        if (!IsNumber(a) || !IsNumber(b))
            throw Unsupported(op, a, b);
        bool floating = a is double || b is double;
        if (op is "/" or "//" or "%" && ToDouble(b) == 0)
            throw new JinjaRuntimeError("division by zero");
        if (floating || op == "/" || (op == "**" && ToLong(b) < 0))
        {
            double x = ToDouble(a),
                y = ToDouble(b);
            return op switch
            {
                "-" => x - y,
                "*" => x * y,
                "/" => x / y,
                "//" => Math.Floor(x / y),
                "%" => x - y * Math.Floor(x / y),
                _ => Math.Pow(x, y),
            };
        }
        long p = ToLong(a),
            q = ToLong(b);
        return op switch
        {
            "-" => checked(p - q),
            "*" => checked(p * q),
            "//" => p / q - ((p % q != 0) && ((p < 0) != (q < 0)) ? 1 : 0),
            "%" => ((p % q) + q) % q,
            _ => IntegerPower(p, q),
        };
    }

    private static long IntegerPower(long value, long exponent)
    {
        long result = 1;
        for (long i = 0; i < exponent; i++)
            result = checked(result * value);
        return result;
    }

    private static object Repeat(object? sequence, long times)
    {
        int count = (int)Math.Max(0, times);
        return sequence is string s
            ? string.Concat(Enumerable.Repeat(s, count))
            : Enumerable.Repeat((IList<object?>)sequence!, count).SelectMany(x => x).ToList();
    }

    public static object? Negate(object? value) =>
        value switch
        {
            Undefined u => throw u.Error(),
            double d => (object)(-d),
            _ when IsNumber(value) => checked(-ToLong(value)),
            _ => throw new JinjaRuntimeError($"bad operand type for unary -: '{TypeName(value)}'"),
        };

    public static bool IsNumber(object? value) => value is long or double or bool;

    public static bool IsInteger(object? value) => value is long or bool;

    public static long ToLong(object? value) =>
        value switch
        {
            long n => n,
            bool b => b ? 1 : 0,
            double d => (long)d,
            _ => throw new JinjaRuntimeError($"expected a number, not {TypeName(value)}"),
        };

    public static double ToDouble(object? value) => value is double d ? d : ToLong(value);

    private static JinjaRuntimeError Unsupported(string op, object? a, object? b) =>
        new($"unsupported operand types for {op}: '{TypeName(a)}' and '{TypeName(b)}'");

    /// <summary>
    /// json.dumps as transformers' tojson calls it (ensure_ascii off): ", " and ": " separators, or with
    /// <paramref name="indent"/> one item per line; keys in insertion order unless sorted.
    /// </summary>
    public static string Json(object? value, int? indent, bool sortKeys)
    {
        var text = new StringBuilder();
        WriteJson(text, value, indent, sortKeys, 0);
        return text.ToString();
    }

    private static void WriteJson(StringBuilder text, object? value, int? indent, bool sortKeys, int depth)
    {
        switch (value)
        {
            case null:
                text.Append("null");
                break;
            case bool b:
                text.Append(b ? "true" : "false");
                break;
            case long n:
                text.Append(n.ToString(CultureInfo.InvariantCulture));
                break;
            case double d:
                text.Append(
                    double.IsNaN(d) ? "NaN"
                    : double.IsInfinity(d) ? (d > 0 ? "Infinity" : "-Infinity")
                    : FloatRepr(d)
                );
                break;
            case string s:
                JsonString(text, s);
                break;
            case IList<object?> list:
                WriteContainer(text, '[', ']', list.Select(e => ((string?)null, e)).ToList(), indent, sortKeys, depth);
                break;
            case OrderedDictionary<string, object?> dict:
                var pairs = dict.Select(p => ((string?)p.Key, p.Value));
                if (sortKeys)
                    pairs = pairs.OrderBy(p => p.Item1, StringComparer.Ordinal);
                WriteContainer(text, '{', '}', pairs.ToList(), indent, sortKeys, depth);
                break;
            case Undefined u:
                throw u.Error();
            default:
                throw new JinjaRuntimeError($"Object of type {TypeName(value)} is not JSON serializable");
        }
    }

    private static void WriteContainer(
        StringBuilder text,
        char open,
        char close,
        List<(string? Key, object? Value)> entries,
        int? indent,
        bool sortKeys,
        int depth
    )
    {
        text.Append(open);
        if (entries.Count == 0)
        {
            text.Append(close);
            return;
        }
        for (int i = 0; i < entries.Count; i++)
        {
            if (indent is { } step)
                text.Append(i == 0 ? "\n" : ",\n").Append(' ', step * (depth + 1));
            else if (i > 0)
                text.Append(", ");
            if (entries[i].Key is { } key)
                JsonString(text, key).Append(": ");
            WriteJson(text, entries[i].Value, indent, sortKeys, depth + 1);
        }
        if (indent is { } last)
            text.Append('\n').Append(' ', last * depth);
        text.Append(close);
    }

    /// <summary>
    /// A JSON string as Python writes it with ensure_ascii off: only quotes, backslashes and controls escaped.
    /// </summary>
    private static StringBuilder JsonString(StringBuilder text, string s)
    {
        text.Append('"');
        foreach (char c in s)
        {
            text.Append(
                c switch
                {
                    '"' => "\\\"",
                    '\\' => "\\\\",
                    '\n' => "\\n",
                    '\r' => "\\r",
                    '\t' => "\\t",
                    '\b' => "\\b",
                    '\f' => "\\f",
                    < ' ' => $"\\u{(int)c:x4}",
                    _ => c.ToString(),
                }
            );
        }
        return text.Append('"');
    }
}
