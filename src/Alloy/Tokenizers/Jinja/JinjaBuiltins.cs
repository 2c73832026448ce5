using System.Globalization;
using System.Text;

namespace Alloy.Tokenizers.Jinja;

/// <summary>
/// The filters, tests, global functions and Python methods Alloy's Jinja subset knows: those real chat templates use,
/// each behaving as Jinja2's builtin (tojson as transformers overrides it). Filter and test names are checked when a
/// template is parsed; anything else is refused by name.
/// </summary>
internal static class JinjaBuiltins
{
    private const StringComparison Ordinal = StringComparison.Ordinal;
    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    public delegate object? Filter(object? value, CallArguments args);

    public delegate bool Test(object? value, CallArguments args);

    public static IReadOnlyDictionary<string, Filter> Filters { get; } =
        new Dictionary<string, Filter>(StringComparer.Ordinal)
        {
            ["abs"] = (v, a) => v is double d ? (object)Math.Abs(d) : Math.Abs(Py.ToLong(v)),
            ["capitalize"] = (v, a) => Capitalize(Py.Str(v)),
            ["count"] = (v, a) => Py.Length(v),
            ["length"] = (v, a) => Py.Length(v),
            ["default"] = Default,
            ["d"] = Default,
            ["first"] = (v, a) => Py.Iterate(v) is { Count: > 0 } items ? items[0] : new Undefined("no first item"),
            ["last"] = (v, a) => Py.Iterate(v) is { Count: > 0 } items ? items[^1] : new Undefined("no last item"),
            ["int"] = (v, a) => ToInteger(v, a.Allow(1, "default").Get(0, "default", 0L)),
            ["float"] = (v, a) => ToFloat(v, a.Allow(1, "default").Get(0, "default", 0.0)),
            ["items"] = (v, a) => Items(v, a.Allow(0)),
            ["join"] = Join,
            ["list"] = (v, a) => Py.Iterate(v).ToList(),
            ["lower"] = (v, a) => Py.Str(v).ToLowerInvariant(),
            ["upper"] = (v, a) => Py.Str(v).ToUpperInvariant(),
            ["title"] = (v, a) => TitleWords(Py.Str(v)),
            ["trim"] = (v, a) => Strip(Py.Str(v), a.Allow(1, "chars").Get(0, "chars"), left: true, right: true),
            ["string"] = (v, a) => Py.Str(v),
            ["replace"] = (v, a) => Replace(Py.Str(v), a.Allow(3, "old", "new", "count")),
            ["tojson"] = ToJson,
            ["map"] = Map,
            ["select"] = (v, a) => Select(v, a, keep: true),
            ["reject"] = (v, a) => Select(v, a, keep: false),
            ["selectattr"] = (v, a) => SelectAttribute(v, a, keep: true),
            ["rejectattr"] = (v, a) => SelectAttribute(v, a, keep: false),
        };

    public static IReadOnlyDictionary<string, Test> Tests { get; } =
        new Dictionary<string, Test>(StringComparer.Ordinal)
        {
            ["defined"] = (v, a) => v is not Undefined,
            ["undefined"] = (v, a) => v is Undefined,
            ["none"] = (v, a) => v is null,
            ["string"] = (v, a) => v is string,
            ["number"] = (v, a) => Py.IsNumber(v),
            ["integer"] = (v, a) => v is long,
            ["float"] = (v, a) => v is double,
            ["boolean"] = (v, a) => v is bool,
            ["true"] = (v, a) => v is true,
            ["false"] = (v, a) => v is false,
            ["mapping"] = (v, a) => v is OrderedDictionary<string, object?>,
            ["sequence"] = (v, a) => v is string or IList<object?> or OrderedDictionary<string, object?>,
            ["iterable"] = (v, a) => v is string or IList<object?> or OrderedDictionary<string, object?> or Undefined,
            ["callable"] = (v, a) => v is JinjaFunction,
            ["odd"] = (v, a) => Py.ToLong(v) % 2 != 0,
            ["even"] = (v, a) => Py.ToLong(v) % 2 == 0,
            ["divisibleby"] = (v, a) => Py.ToLong(v) % Py.ToLong(a.Required(0, "num")) == 0,
            ["lower"] = (v, a) => v is string s && s == s.ToLowerInvariant(),
            ["upper"] = (v, a) => v is string s && s == s.ToUpperInvariant(),
            ["in"] = (v, a) => Py.Contains(a.Required(0, "seq"), v),
            ["eq"] = Equal,
            ["equalto"] = Equal,
            ["=="] = Equal,
            ["ne"] = (v, a) => !Equal(v, a),
            ["!="] = (v, a) => !Equal(v, a),
            ["lt"] = (v, a) => Order(v, a, "<") < 0,
            ["<"] = (v, a) => Order(v, a, "<") < 0,
            ["le"] = (v, a) => Order(v, a, "<=") <= 0,
            ["<="] = (v, a) => Order(v, a, "<=") <= 0,
            ["gt"] = (v, a) => Order(v, a, ">") > 0,
            [">"] = (v, a) => Order(v, a, ">") > 0,
            ["ge"] = (v, a) => Order(v, a, ">=") >= 0,
            [">="] = (v, a) => Order(v, a, ">=") >= 0,
        };

    /// <summary>
    /// The globals transformers gives chat templates (raise_exception, strftime_now) and Jinja2's own.
    /// </summary>
    public static IReadOnlyDictionary<string, object?> Globals(Func<DateTime> now) =>
        new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["raise_exception"] = new JinjaFunction("raise_exception", a =>
                throw new JinjaRuntimeError(
                    $"the template raised an error: {Py.Str(a.Allow(1).Required(0, "message"))}"
                )
            ),
            ["namespace"] = new JinjaFunction("namespace", a =>
            {
                var ns = new Namespace();
                if (a.Positional.Count > 0)
                    throw new JinjaRuntimeError("namespace() takes keyword arguments only in Alloy's Jinja subset");
                foreach (var (name, value) in a.Named)
                    ns.Attributes[name] = value;
                return ns;
            }),
            ["dict"] = new JinjaFunction("dict", a =>
                a.Positional.Count > 0
                    ? throw new JinjaRuntimeError("dict() takes keyword arguments only in Alloy's Jinja subset")
                    : Py.Dict(a.Named.Select(p => (p.Key, p.Value)))
            ),
            ["range"] = new JinjaFunction("range", Range),
            ["strftime_now"] = new JinjaFunction("strftime_now", a =>
                StrfTime(now(), Py.Str(a.Allow(1).Required(0, "format")))
            ),
        };

    /// <summary>
    /// <c>receiver.name(args)</c> for the Python methods of strings and dicts that templates call; null when
    /// <paramref name="receiver"/> is not a string or dict (then the call is an ordinary one).
    /// </summary>
    public static Func<object?>? Method(object? receiver, string name, CallArguments a) =>
        receiver switch
        {
            string s => name switch
            {
                "strip" => () => Strip(s, a.Allow(1).Get(0, "chars"), left: true, right: true),
                "lstrip" => () => Strip(s, a.Allow(1).Get(0, "chars"), left: true, right: false),
                "rstrip" => () => Strip(s, a.Allow(1).Get(0, "chars"), left: false, right: true),
                "split" => () =>
                    Split(s, a.Allow(2, "sep", "maxsplit").Get(0, "sep"), Py.ToLong(a.Get(1, "maxsplit", -1L))),
                "startswith" => () => Affix(s, a.Allow(1).Required(0, "prefix"), (x, p) => x.StartsWith(p, Ordinal)),
                "endswith" => () => Affix(s, a.Allow(1).Required(0, "suffix"), (x, p) => x.EndsWith(p, Ordinal)),
                "upper" => () => s.ToUpperInvariant(),
                "lower" => () => s.ToLowerInvariant(),
                "title" => () => Title(s),
                "capitalize" => () => Capitalize(s),
                "replace" => () => Replace(s, a.Allow(3, "old", "new", "count")),
                "find" => () => Find(s, Py.Str(a.Allow(1).Required(0, "sub"))),
                "join" => () => string.Join(s, Py.Iterate(a.Allow(1).Required(0, "iterable")).Select(Py.Str)),
                _ => throw NoMethod(receiver, name),
            },
            OrderedDictionary<string, object?> dict => name switch
            {
                "items" => () => Items(dict, a.Allow(0)),
                "keys" => () => Items(dict, a.Allow(0)).Select(pair => ((object?[])pair!)[0]).ToList(),
                "values" => () => Items(dict, a.Allow(0)).Select(pair => ((object?[])pair!)[1]).ToList(),
                "get" => () =>
                    a.Allow(2, "key", "default").Required(0, "key") is string key
                    && dict.TryGetValue(key, out var value)
                        ? value
                        : a.Get(1, "default"),
                _ => throw NoMethod(receiver, name),
            },
            IList<object?> => throw NoMethod(receiver, name),
            _ => null,
        };

    private static JinjaRuntimeError NoMethod(object? receiver, string name) =>
        new($"'{Py.TypeName(receiver)}' has no method '{name}' in Alloy's Jinja subset");

    private static object? Default(object? value, CallArguments a)
    {
        a.Allow(2, "default_value", "boolean");
        bool boolean = Py.Truthy(a.Get(1, "boolean", false));
        return value is Undefined || (boolean && !Py.Truthy(value)) ? a.Get(0, "default_value", "") : value;
    }

    private static bool Equal(object? value, CallArguments a) => Py.Equal(value, a.Required(0, "other"));

    private static int Order(object? value, CallArguments a, string op) =>
        Py.Compare(value, a.Required(0, "other"), op);

    private static List<object?> Items(object? value, CallArguments _) =>
        value switch
        {
            OrderedDictionary<string, object?> dict => dict.Select(p => (object?)new object?[] { p.Key, p.Value })
                .ToList(),
            Undefined => [],
            _ => throw new JinjaRuntimeError($"items needs a dict, not {Py.TypeName(value)}"),
        };

    private static object? Join(object? value, CallArguments a)
    {
        a.Allow(2, "d", "attribute");
        var items = Py.Iterate(value);
        if (a.Get(1, "attribute") is { } attribute)
            items = items.Select(i => Py.Item(i, attribute)).ToList();
        return string.Join(Py.Str(a.Get(0, "d", "")), items.Select(Py.Str));
    }

    /// <summary>transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).</summary>
    private static object? ToJson(object? value, CallArguments a)
    {
        a.Allow(4, "ensure_ascii", "indent", "separators", "sort_keys");
        if (Py.Truthy(a.Get(0, "ensure_ascii", false)) || a.Get(2, "separators") is not null)
            throw new JinjaRuntimeError("tojson's ensure_ascii and separators are outside Alloy's Jinja subset");
        object? indent = a.Get(1, "indent");
        return Py.Json(value, indent is null ? null : (int)Py.ToLong(indent), Py.Truthy(a.Get(3, "sort_keys", false)));
    }

    /// <summary><c>map(attribute='x')</c> or <c>map('filter', args…)</c>.</summary>
    private static object? Map(object? value, CallArguments a)
    {
        var items = Py.Iterate(value);
        if (a.Named.TryGetValue("attribute", out var attribute))
        {
            a.Allow(0, "attribute", "default");
            var fallback = a.Named.GetValueOrDefault("default");
            return items
                .Select(i =>
                    Py.Item(i, attribute) is var v && v is Undefined && a.Named.ContainsKey("default") ? fallback : v
                )
                .ToList();
        }
        if (a.Positional.Count == 0 || a.Positional[0] is not string name || !Filters.TryGetValue(name, out var filter))
            throw new JinjaRuntimeError("map needs a filter name or attribute= in Alloy's Jinja subset");
        var rest = new CallArguments([.. a.Positional.Skip(1)], a.Named, name);
        return items.Select(i => filter(i, rest)).ToList();
    }

    /// <summary><c>select('test', args…)</c> / <c>reject(…)</c>; without a test, the truthy items.</summary>
    private static object? Select(object? value, CallArguments a, bool keep)
    {
        var predicate = TestFrom(a, 0);
        return Py.Iterate(value).Where(i => predicate(i) == keep).ToList();
    }

    private static object? SelectAttribute(object? value, CallArguments a, bool keep)
    {
        object? attribute = a.Required(0, "attribute");
        var predicate = TestFrom(a, 1);
        return Py.Iterate(value).Where(i => predicate(Py.Item(i, attribute)) == keep).ToList();
    }

    private static Func<object?, bool> TestFrom(CallArguments a, int at)
    {
        if (a.Positional.Count <= at)
            return Py.Truthy;
        if (a.Positional[at] is not string name || !Tests.TryGetValue(name, out var test))
            throw new JinjaRuntimeError($"no test named {Py.Repr(a.Positional[at])} in Alloy's Jinja subset");
        var rest = new CallArguments([.. a.Positional.Skip(at + 1)], a.Named, name);
        return v => test(v, rest);
    }

    private static object? Range(CallArguments a)
    {
        a.Allow(3);
        long start = 0,
            stop,
            step = 1;
        if (a.Positional.Count == 1)
            stop = Py.ToLong(a.Required(0, "stop"));
        else
        {
            start = Py.ToLong(a.Required(0, "start"));
            stop = Py.ToLong(a.Required(1, "stop"));
            step = Py.ToLong(a.Get(2, "step", 1L));
        }
        if (step == 0)
            throw new JinjaRuntimeError("range() step must not be zero");
        var numbers = new List<object?>();
        for (long i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            numbers.Add(i);
            if (numbers.Count > 100_000)
                throw new JinjaRuntimeError("range() is limited to 100000 numbers");
        }
        return numbers;
    }

    private static object? ToInteger(object? value, object? fallback) =>
        value switch
        {
            long or bool => Py.ToLong(value),
            double d => (long)Math.Truncate(d),
            string s when long.TryParse(s.Trim(), NumberStyles.AllowLeadingSign, Invariant, out long n) => n,
            string s when double.TryParse(s.Trim(), NumberStyles.Float, Invariant, out double d) => (long)
                Math.Truncate(d),
            _ => fallback,
        };

    private static object? ToFloat(object? value, object? fallback) =>
        value switch
        {
            long or bool or double => Py.ToDouble(value),
            string s when double.TryParse(s.Trim(), NumberStyles.Float, Invariant, out double d) => d,
            _ => fallback,
        };

    private static string Strip(string s, object? chars, bool left, bool right)
    {
        char[]? set = chars switch
        {
            null => null,
            string c => c.ToCharArray(),
            _ => throw new JinjaRuntimeError($"strip characters must be a string, not {Py.TypeName(chars)}"),
        };
        if (set is null)
            return left && right ? s.Trim()
                : left ? s.TrimStart()
                : s.TrimEnd();
        return left && right ? s.Trim(set)
            : left ? s.TrimStart(set)
            : s.TrimEnd(set);
    }

    /// <summary>
    /// Python's str.split: on runs of whitespace without a separator (no empty parts), else on the separator.
    /// </summary>
    private static List<object?> Split(string s, object? separator, long maxSplit)
    {
        int limit = maxSplit < 0 ? int.MaxValue : (int)Math.Min(maxSplit + 1, int.MaxValue);
        if (separator is null)
        {
            var words = new List<object?>();
            string rest = s.TrimStart();
            while (rest.Length > 0)
            {
                if (words.Count == limit - 1)
                {
                    words.Add(rest);
                    break;
                }
                int end = 0;
                while (end < rest.Length && !char.IsWhiteSpace(rest[end]))
                    end++;
                words.Add(rest[..end]);
                rest = rest[end..].TrimStart();
            }
            return words;
        }
        string sep =
            separator as string
            ?? throw new JinjaRuntimeError($"split separator must be a string, not {Py.TypeName(separator)}");
        if (sep.Length == 0)
            throw new JinjaRuntimeError("empty separator");
        return s.Split(sep, limit).Cast<object?>().ToList();
    }

    private static bool Affix(string s, object? affix, Func<string, string, bool> test) =>
        affix switch
        {
            string one => test(s, one),
            object?[] tuple => tuple.Any(t => t is string one && test(s, one)),
            _ => throw new JinjaRuntimeError(
                $"startswith/endswith needs a string or tuple of strings, not {Py.TypeName(affix)}"
            ),
        };

    private static string Replace(string s, CallArguments a)
    {
        string old = Py.Str(a.Required(0, "old")),
            replacement = Py.Str(a.Required(1, "new"));
        long count = Py.ToLong(a.Get(2, "count", -1L));
        if (count < 0 && old.Length == 0)
            return string.Join(replacement, ["", .. Py.CodePoints(s), ""]);
        if (count < 0)
            return s.Replace(old, replacement, Ordinal);
        var text = new StringBuilder();
        int from = 0;
        for (long done = 0; done < count; done++)
        {
            int at = s.IndexOf(old, from, StringComparison.Ordinal);
            if (at < 0 || old.Length == 0)
                break;
            text.Append(s, from, at - from).Append(replacement);
            from = at + old.Length;
        }
        return text.Append(s, from, s.Length - from).ToString();
    }

    /// <summary>Python's str.find: the index in code points of the first occurrence, or −1.</summary>
    private static long Find(string s, string part) =>
        s.IndexOf(part, StringComparison.Ordinal) is var at && at < 0 ? -1 : Py.CodePoints(s[..at]).Count;

    private static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    /// <summary>
    /// Jinja2's title filter: each word (split at whitespace, '-', '(', '{', '[', '&lt;') capitalised.
    /// </summary>
    private static string TitleWords(string s)
    {
        var text = new StringBuilder(s.Length);
        bool wordStart = true;
        foreach (char c in s)
        {
            bool separator = char.IsWhiteSpace(c) || c is '-' or '(' or '{' or '[' or '<';
            text.Append(
                separator ? c
                : wordStart ? char.ToUpperInvariant(c)
                : char.ToLowerInvariant(c)
            );
            wordStart = separator;
        }
        return text.ToString();
    }

    /// <summary>Python's str.title: a letter after a non-letter is upper case, every other letter lower case.</summary>
    private static string Title(string s)
    {
        var text = new StringBuilder(s.Length);
        bool afterLetter = false;
        foreach (char c in s)
        {
            text.Append(char.IsLetter(c) ? (afterLetter ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)) : c);
            afterLetter = char.IsLetter(c);
        }
        return text.ToString();
    }

    /// <summary>Python's time.strftime for the directives chat templates use to print today's date.</summary>
    private static string StrfTime(DateTime now, string format)
    {
        var text = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 == format.Length)
            {
                text.Append(format[i]);
                continue;
            }
            char directive = format[++i];
            text.Append(
                directive switch
                {
                    'd' => now.ToString("dd", Invariant),
                    'm' => now.ToString("MM", Invariant),
                    'Y' => now.ToString("yyyy", Invariant),
                    'y' => now.ToString("yy", Invariant),
                    'b' => now.ToString("MMM", Invariant),
                    'B' => now.ToString("MMMM", Invariant),
                    'a' => now.ToString("ddd", Invariant),
                    'A' => now.ToString("dddd", Invariant),
                    'H' => now.ToString("HH", Invariant),
                    'M' => now.ToString("mm", Invariant),
                    'S' => now.ToString("ss", Invariant),
                    'j' => now.DayOfYear.ToString("000", Invariant),
                    '%' => "%",
                    _ => throw new JinjaRuntimeError($"strftime_now: %{directive} is outside Alloy's Jinja subset"),
                }
            );
        }
        return text.ToString();
    }
}
