using System.Collections;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace Alloy.Recipes;

/// <summary>
/// One value of a parameter for one tensor: a number (booleans are 1 and 0, as pydantic reads them) or a text (the
/// names of a choice, paths). A method's declaration says which it takes (<see cref="Methods.MethodParameter"/>).
/// </summary>
public readonly record struct SettingValue
{
    private SettingValue(double number, string? text)
    {
        Number = number;
        Text = text;
    }

    public static SettingValue Of(double number) => new(number, null);

    public static SettingValue Of(string text) =>
        new(double.NaN, text ?? throw new ArgumentNullException(nameof(text)));

    /// <summary>The number; NaN for a text.</summary>
    public double Number { get; }

    public string? Text { get; }

    [MemberNotNullWhen(true, nameof(Text))]
    public bool IsText => Text is not null;

    public override string ToString() => Text ?? FormatNumber(Number);

    /// <summary>Shortest round-trip form, as YAML would read it back ("0.5", "1e-05", ".inf").</summary>
    public static string FormatNumber(double value) =>
        double.IsPositiveInfinity(value) ? ".inf"
        : double.IsNegativeInfinity(value) ? "-.inf"
        : double.IsNaN(value) ? ".nan"
        : value.ToString("R", CultureInfo.InvariantCulture);
}

/// <summary>
/// A parameter as written in a recipe: a scalar (number or text), a gradient over layers, or filtered entries. In
/// code, numbers, booleans, texts and arrays of numbers convert to values implicitly:
/// <c>["weight"] = new[] { 0.2, 0.8 }</c> is a gradient.
/// </summary>
public abstract record ParameterValue
{
    private ParameterValue() { }

    /// <summary>A plain number (booleans were turned into 1.0/0.0, numeric strings into numbers).</summary>
    public sealed record Scalar(double Value) : ParameterValue
    {
        public override SettingValue? Evaluate(string tensorName, double t) => SettingValue.Of(Value);

        public override IEnumerable<SettingValue> Literals => [SettingValue.Of(Value)];
    }

    /// <summary>A text that is not a number (a choice's name, a path).</summary>
    public sealed record Text(string Value) : ParameterValue
    {
        public override SettingValue? Evaluate(string tensorName, double t) => SettingValue.Of(Value);

        public override IEnumerable<SettingValue> Literals => [SettingValue.Of(Value)];
    }

    /// <summary>Values spread evenly over a slice's layers and interpolated linearly between them.</summary>
    public sealed record Gradient(IReadOnlyList<double> Values) : ParameterValue
    {
        public override SettingValue? Evaluate(string tensorName, double t)
        {
            if (Values.Count == 0)
                throw new InvalidOperationException("a gradient needs at least one value");
            // t outside [0, 1] means a planner bug; mergekit would index past the list (or silently extrapolate).
            if (!(t >= 0 && t <= 1))
                throw new ArgumentOutOfRangeException(nameof(t), t, "layer fraction must be in [0, 1]");
            var last = Values.Count - 1;
            var s = t * last;
            var i0 = (int)Math.Floor(s);
            var i1 = Math.Min(last, i0 + 1);
            var f = s - i0;
            return SettingValue.Of((1 - f) * Values[i0] + f * Values[i1]);
        }

        public override IEnumerable<SettingValue> Literals => Values.Select(SettingValue.Of);

        public bool Equals(Gradient? other) => other is not null && Values.SequenceEqual(other.Values);

        public override int GetHashCode() => Values.Aggregate(Values.Count, (h, v) => HashCode.Combine(h, v));
    }

    /// <summary>Entries tried in order; the first whose filter matches the tensor name gives the value.</summary>
    public sealed record Conditional(IReadOnlyList<ConditionalEntry> Entries) : ParameterValue
    {
        public override SettingValue? Evaluate(string tensorName, double t)
        {
            foreach (var entry in Entries)
            {
                if (entry.Matches(tensorName))
                    return entry.Value.Evaluate(tensorName, t);
            }
            return null;
        }

        public override IEnumerable<SettingValue> Literals => Entries.SelectMany(e => e.Value.Literals);

        public bool Equals(Conditional? other) => other is not null && Entries.SequenceEqual(other.Entries);

        public override int GetHashCode() => Entries.Aggregate(Entries.Count, (h, e) => HashCode.Combine(h, e));
    }

    /// <summary>
    /// mergekit semantics: scalar → itself; gradient → piecewise-linear at fraction t in [0,1]
    /// (s = t·(L−1), i0 = floor(s), i1 = min(L−1, i0+1), f = s−i0, (1−f)·g[i0] + f·g[i1], in double);
    /// conditional → the first entry whose filter is null, "*", or a case-sensitive substring of tensorName,
    /// evaluated recursively; no match → null (the caller falls through to the next precedence level).
    /// </summary>
    public abstract SettingValue? Evaluate(string tensorName, double t);

    /// <summary>Every number or text written in the value (a gradient's points, each filter entry's value).</summary>
    public abstract IEnumerable<SettingValue> Literals { get; }

    /// <summary>True when some literal is a gradient (a value that varies across layers).</summary>
    public bool HasGradient => this is Gradient || (this is Conditional c && c.Entries.Any(e => e.Value.HasGradient));

    public static implicit operator ParameterValue(double value) => new Scalar(value);

    public static implicit operator ParameterValue(bool value) => new Scalar(value ? 1 : 0);

    public static implicit operator ParameterValue(string value) => new Text(value);

    public static implicit operator ParameterValue(double[] values) => new Gradient(values);

    /// <summary>Filtered entries in code: <c>ParameterValue.Filtered(("mlp", 0.5), (null, 1.0))</c>.</summary>
    public static ParameterValue Filtered(params (string? Filter, ParameterValue Value)[] entries) =>
        new Conditional(entries.Select(e => new ConditionalEntry(e.Filter, e.Value)).ToList());
}

/// <summary>One <c>{filter, value}</c> entry of a conditional parameter.</summary>
public sealed record ConditionalEntry(string? Filter, ParameterValue Value)
{
    /// <summary>Null and "*" match every tensor; otherwise a case-sensitive substring test, as in mergekit.</summary>
    public bool Matches(string tensorName) =>
        Filter is null
        || Filter == "*"
        || (tensorName.Length > 0 && tensorName.Contains(Filter, StringComparison.Ordinal));
}

/// <summary>One <c>name: value</c> line of a <c>parameters:</c> block; the location is the name's.</summary>
public sealed record ParameterSetting(string Name, ParameterValue Value, SourceLocation Location);

/// <summary>
/// The settings of one <c>parameters:</c> block, in the order they were written. In code, a collection initializer
/// builds one: <c>new ParameterSettings { ["weight"] = 0.5, ["density"] = new[] { 1, 0.5 } }</c>.
/// </summary>
public sealed class ParameterSettings : IEnumerable<ParameterSetting>
{
    private readonly List<ParameterSetting> _settings;
    private readonly Dictionary<string, ParameterSetting> _byName;

    public static ParameterSettings Empty { get; } = new([]);

    /// <summary>
    /// An empty block to fill with the indexer (settings made in code, located at <see cref="SourceLocation.Code"/>).
    /// </summary>
    public ParameterSettings()
        : this([]) { }

    /// <summary>Builds a set; names must be unique (the YAML reader already resolved duplicates).</summary>
    public ParameterSettings(IEnumerable<ParameterSetting> settings)
    {
        _settings = settings.ToList();
        _byName = new Dictionary<string, ParameterSetting>(StringComparer.Ordinal);
        foreach (var s in _settings)
        {
            if (!_byName.TryAdd(s.Name, s))
                throw new ArgumentException($"parameter '{s.Name}' is set twice", nameof(settings));
        }
    }

    public int Count => _settings.Count;

    /// <summary>A setting's value; setting one in code adds it (or replaces it, keeping its place).</summary>
    public ParameterValue this[string name]
    {
        get => _byName[name].Value;
        set
        {
            ArgumentException.ThrowIfNullOrEmpty(name);
            var setting = new ParameterSetting(name, value, SourceLocation.Code);
            int at = _settings.FindIndex(s => s.Name == name);
            if (at >= 0)
                _settings[at] = setting;
            else
                _settings.Add(setting);
            _byName[name] = setting;
        }
    }

    public bool TryGet(string name, [MaybeNullWhen(false)] out ParameterSetting setting) =>
        _byName.TryGetValue(name, out setting);

    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The setting's value evaluated for a tensor, or null when absent or no filter matches.</summary>
    public SettingValue? Evaluate(string name, string tensorName, double t) =>
        _byName.TryGetValue(name, out var s) ? s.Value.Evaluate(tensorName, t) : null;

    public IEnumerator<ParameterSetting> GetEnumerator() => ((IEnumerable<ParameterSetting>)_settings).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
