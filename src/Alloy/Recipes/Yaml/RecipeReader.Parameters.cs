namespace Alloy.Recipes.Yaml;

/// <summary>Parameters blocks: scalars, gradients and filtered entries.</summary>
internal sealed partial class RecipeReader
{
    // ---- parameters ------------------------------------------------------------------------------------

    private ParameterSettings Parameters(YNode? node)
    {
        if (node is null)
            return new ParameterSettings();
        if (node is not YMapping map)
            throw Error(node, $"'parameters' must be a mapping of 'name: value' lines, not {Describe(node)}");
        var settings = new List<ParameterSetting>(map.Entries.Count);
        foreach (var (key, value) in map.Entries)
        {
            var name = StringValue(key, "a parameter name");
            settings.Add(new ParameterSetting(name, ParseValue(value, name), key.Location));
        }
        return new ParameterSettings(settings);
    }

    /// <summary>
    /// mergekit's ParameterSetting = filter entry | list of filter entries | number | list of numbers, where pydantic
    /// coerces booleans and numeric strings to floats.
    /// </summary>
    private ParameterValue ParseValue(YNode node, string name)
    {
        switch (node)
        {
            case YScalar when TryNumber(node, out var v):
                return new ParameterValue.Scalar(v);
            case YScalar { Kind: ScalarKind.String } text:
                // A name (a choice) or a path; the method's declaration decides, when the recipe is planned.
                return new ParameterValue.Text(text.Text);
            case YSequence { Items.Count: 0 }:
                throw Error(node, $"parameter '{name}': a gradient list needs at least one value");
            case YSequence seq when seq.Items.All(i => i is YMapping):
                return new ParameterValue.Conditional(seq.Items.Select(i => Conditional(i, name)).ToList());
            case YSequence seq:
                return Gradient(seq, name);
            case YMapping:
                return new ParameterValue.Conditional([Conditional(node, name)]);
            default:
                throw Error(node, $"parameter '{name}': {ParameterShape} (got {Describe(node)})");
        }
    }

    private static ParameterValue.Gradient Gradient(YSequence seq, string name)
    {
        var values = new double[seq.Items.Count];
        for (var i = 0; i < values.Length; i++)
        {
            if (!TryNumber(seq.Items[i], out values[i]))
                throw Error(
                    seq.Items[i],
                    $"parameter '{name}': {ParameterShape} (a gradient list holds only numbers; got "
                        + $"{Describe(seq.Items[i])})"
                );
        }
        return new ParameterValue.Gradient(values);
    }

    private ConditionalEntry Conditional(YNode node, string name)
    {
        var map = (YMapping)node;
        string? filter = null;
        YNode? value = null;
        foreach (var (key, v) in map.Entries)
        {
            switch (key is { Kind: ScalarKind.String } ? key.Text : null)
            {
                case "filter":
                    if (v is YScalar { IsNull: true })
                        break;
                    filter = v is YScalar { Kind: ScalarKind.String } s
                        ? s.Text
                        : throw Error(
                            v,
                            $"parameter '{name}': 'filter' must be a string, not "
                                + $"{Describe(v)}{(v is YScalar vs ? QuoteHint(vs) : "")}"
                        );
                    break;
                case "value":
                    value = v;
                    break;
                default:
                    // pydantic ignores extra keys here too; we say so.
                    Warn(
                        $"{key.Location}: unknown key '{key.Text}' in a filter entry of parameter '{name}' (ignored; "
                            + $"it has only 'filter' and 'value')"
                    );
                    break;
            }
        }
        if (value is null)
            throw Error(node, $"parameter '{name}': a filter entry needs a 'value'");
        ParameterValue parsed = value switch
        {
            YScalar when TryNumber(value, out var d) => new ParameterValue.Scalar(d),
            YScalar { Kind: ScalarKind.String } text => new ParameterValue.Text(text.Text),
            YSequence { Items.Count: > 0 } seq => Gradient(seq, name),
            YSequence => throw Error(value, $"parameter '{name}': a gradient list needs at least one value"),
            _ => throw Error(
                value,
                $"parameter '{name}': a filter entry's 'value' must be a number, a text or a gradient list, not "
                    + $"{Describe(value)}"
            ),
        };
        return new ConditionalEntry(filter, parsed);
    }
}
