using System.Globalization;
using Alloy.Recipes;

namespace Alloy.Methods;

/// <summary>Whether a parameter is set once per output tensor or once per (output tensor, input model).</summary>
public enum ParameterScope
{
    Global,
    PerModel,
}

/// <summary>
/// A parameter a method reads, declared once as a typed value: its name, scope, type and allowed values, default and
/// one-line description. The planner validates recipes against these declarations (type and range errors before any
/// data is read), resolves each tensor's values through them, and methods read the values through them
/// (<c>inputs[Density, i]</c>); <c>alloy methods</c>, the docs and the recipe API read the same declarations.
/// </summary>
public abstract class MethodParameter
{
    private protected MethodParameter(string name, ParameterScope scope, string description)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        Name = name;
        Scope = scope;
        Description = description;
    }

    public string Name { get; }

    public ParameterScope Scope { get; }

    public string Description { get; }

    /// <summary>"number", "integer", "boolean", "choice" or "path".</summary>
    public abstract string Kind { get; }

    /// <summary>The values it takes, in words ("a number from 0 to 1", "true or false", "one of: a, b").</summary>
    public abstract string Accepts { get; }

    /// <summary>The default as a recipe would write it; null for a required parameter.</summary>
    public string? DefaultText => DefaultValue is { } value ? Format(value) : null;

    /// <summary>
    /// True when the parameter has no default, so a recipe must set it (for per-model parameters: for every model
    /// except the base of a method that uses one, as in mergekit).
    /// </summary>
    public virtual bool Required => DefaultValue is null;

    /// <summary>
    /// True when a gradient (numbers interpolated across layers) is a value of this parameter: numbers only.
    /// </summary>
    public virtual bool TakesGradients => false;

    /// <summary>The default, as a setting's value; null when required.</summary>
    public abstract SettingValue? DefaultValue { get; }

    /// <summary>
    /// Null when <paramref name="value"/> (one literal of a setting) is a value of this parameter, else why not.
    /// </summary>
    public abstract string? Problem(SettingValue value);

    /// <summary>A value as a recipe writes it.</summary>
    public virtual string Format(SettingValue value) => value.ToString();

    public override string ToString() => Name;

    // ---- declarations ------------------------------------------------------------------------------------------

    /// <summary>
    /// A real number within <paramref name="range"/> (any finite number when null); null default: required.
    /// </summary>
    public static NumberParameter Number(
        string name,
        ParameterScope scope,
        double? defaultValue,
        string description,
        NumberRange? range = null
    ) => new(name, scope, defaultValue, description, range ?? NumberRange.Any);

    /// <summary>A whole number of at least <paramref name="minimum"/>; null default: required.</summary>
    public static IntegerParameter Integer(
        string name,
        ParameterScope scope,
        int? defaultValue,
        string description,
        int minimum = int.MinValue
    ) => new(name, scope, defaultValue, description, minimum);

    /// <summary>true or false (YAML's booleans, or 1 and 0 as pydantic reads them).</summary>
    public static BooleanParameter Boolean(string name, ParameterScope scope, bool? defaultValue, string description) =>
        new(name, scope, defaultValue, description);

    /// <summary>One of a fixed set of names.</summary>
    public static ChoiceParameter Choice(
        string name,
        ParameterScope scope,
        string? defaultValue,
        IReadOnlyList<string> names,
        string description
    ) => new(name, scope, defaultValue, names, description);

    /// <summary>
    /// A file or folder path (relative paths are relative to the recipe's folder, as model paths are); an optional one
    /// reads as null when the recipe does not set it.
    /// </summary>
    public static PathParameter Path(string name, ParameterScope scope, string description, bool required = true) =>
        new(name, scope, description, required);
}

/// <summary>A parameter whose values methods read as <typeparamref name="T"/>.</summary>
public abstract class MethodParameter<T>(string name, ParameterScope scope, string description)
    : MethodParameter(name, scope, description)
{
    /// <summary>The typed value of a setting this parameter accepted.</summary>
    public abstract T Read(SettingValue value);
}

/// <summary>An interval of real numbers, each end open or closed; infinite ends are open.</summary>
public readonly record struct NumberRange(
    double Minimum,
    double Maximum,
    bool MinimumOpen = false,
    bool MaximumOpen = false
)
{
    public static NumberRange Any { get; } = new(double.NegativeInfinity, double.PositiveInfinity, true, true);

    /// <summary>[0, 1].</summary>
    public static NumberRange Fraction { get; } = new(0, 1);

    /// <summary>[0, ∞).</summary>
    public static NumberRange NonNegative { get; } = new(0, double.PositiveInfinity, MaximumOpen: true);

    /// <summary>(0, ∞).</summary>
    public static NumberRange Positive { get; } = new(0, double.PositiveInfinity, true, true);

    public bool Contains(double value) =>
        !double.IsNaN(value)
        && double.IsFinite(value)
        && (MinimumOpen ? value > Minimum : value >= Minimum)
        && (MaximumOpen ? value < Maximum : value <= Maximum);

    public override string ToString()
    {
        bool low = double.IsFinite(Minimum),
            high = double.IsFinite(Maximum);
        string min = SettingValue.FormatNumber(Minimum),
            max = SettingValue.FormatNumber(Maximum);
        return (low, high) switch
        {
            (false, false) => "any number",
            (true, false) => MinimumOpen ? $"a number greater than {min}" : $"a number of at least {min}",
            (false, true) => MaximumOpen ? $"a number less than {max}" : $"a number of at most {max}",
            _ when !MinimumOpen && !MaximumOpen => $"a number from {min} to {max}",
            _ => $"a number in {(MinimumOpen ? "(" : "[")}{min}, {max}{(MaximumOpen ? ")" : "]")}",
        };
    }
}

public sealed class NumberParameter : MethodParameter<double>
{
    internal NumberParameter(
        string name,
        ParameterScope scope,
        double? defaultValue,
        string description,
        NumberRange range
    )
        : base(name, scope, description)
    {
        Range = range;
        Default = defaultValue;
        if (defaultValue is { } d && !range.Contains(d))
            throw new ArgumentException($"parameter '{name}': default {d} is not {range}", nameof(defaultValue));
    }

    public NumberRange Range { get; }

    public double? Default { get; }

    public override string Kind => "number";

    public override string Accepts => Range.ToString();

    public override bool TakesGradients => true;

    public override SettingValue? DefaultValue => Default is { } d ? SettingValue.Of(d) : null;

    public override string? Problem(SettingValue value) =>
        value.IsText ? $"'{value.Text}' is not a number"
        : Range.Contains(value.Number) ? null
        : $"{value} is outside the range";

    public override double Read(SettingValue value) => value.Number;
}

public sealed class IntegerParameter : MethodParameter<int>
{
    internal IntegerParameter(string name, ParameterScope scope, int? defaultValue, string description, int minimum)
        : base(name, scope, description)
    {
        Minimum = minimum;
        Default = defaultValue;
        if (defaultValue < minimum)
            throw new ArgumentException(
                $"parameter '{name}': default {defaultValue} is below {minimum}",
                nameof(defaultValue)
            );
    }

    public int Minimum { get; }

    public int? Default { get; }

    public override string Kind => "integer";

    public override string Accepts =>
        Minimum == int.MinValue ? "a whole number" : $"a whole number of at least {Minimum}";

    public override SettingValue? DefaultValue => Default is { } d ? SettingValue.Of(d) : null;

    public override string? Problem(SettingValue value) =>
        value.IsText ? $"'{value.Text}' is not a whole number"
        : !(Math.Floor(value.Number) == value.Number && value.Number <= int.MaxValue) ? $"{value} is not a whole number"
        : value.Number < Minimum ? $"{value} is too small"
        : null;

    public override int Read(SettingValue value) => (int)value.Number;
}

public sealed class BooleanParameter : MethodParameter<bool>
{
    internal BooleanParameter(string name, ParameterScope scope, bool? defaultValue, string description)
        : base(name, scope, description) => Default = defaultValue;

    public bool? Default { get; }

    public override string Kind => "boolean";

    public override string Accepts => "true or false";

    public override SettingValue? DefaultValue => Default is { } d ? SettingValue.Of(d ? 1 : 0) : null;

    public override string? Problem(SettingValue value) =>
        value.IsText ? $"'{value.Text}' is not true or false"
        : value.Number is 0 or 1 ? null
        : $"{value} is not true or false";

    public override bool Read(SettingValue value) => value.Number != 0;

    public override string Format(SettingValue value) =>
        value.IsText ? value.Text!
        : value.Number != 0 ? "true"
        : "false";
}

public sealed class ChoiceParameter : MethodParameter<string>
{
    internal ChoiceParameter(
        string name,
        ParameterScope scope,
        string? defaultValue,
        IReadOnlyList<string> names,
        string description
    )
        : base(name, scope, description)
    {
        if (names.Count == 0)
            throw new ArgumentException($"parameter '{name}' offers no choices", nameof(names));
        if (defaultValue is not null && !names.Contains(defaultValue))
            throw new ArgumentException(
                $"parameter '{name}': default '{defaultValue}' is not one of its choices",
                nameof(defaultValue)
            );
        Names = names;
        Default = defaultValue;
    }

    public IReadOnlyList<string> Names { get; }

    public string? Default { get; }

    public override string Kind => "choice";

    public override string Accepts => $"one of: {string.Join(", ", Names)}";

    public override SettingValue? DefaultValue => Default is { } d ? SettingValue.Of(d) : null;

    public override string? Problem(SettingValue value) =>
        value.IsText && Names.Contains(value.Text!)
            ? null
            : $"{(value.IsText ? $"'{value.Text}'" : value.ToString())} is not one of the choices";

    public override string Read(SettingValue value) => value.Text!;
}

public sealed class PathParameter : MethodParameter<string?>
{
    private readonly bool _required;

    internal PathParameter(string name, ParameterScope scope, string description, bool required)
        : base(name, scope, description) => _required = required;

    public override bool Required => _required;

    public override string Kind => "path";

    public override string Accepts => "a file or folder path";

    public override SettingValue? DefaultValue => null;

    public override string? Problem(SettingValue value) =>
        value.IsText && value.Text!.Length > 0 ? null : $"{value} is not a path";

    public override string? Read(SettingValue value) => value.Text;
}
