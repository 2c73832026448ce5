namespace Alloy.Recipes.Yaml;

/// <summary>Models, slices and model references.</summary>
internal sealed partial class RecipeReader
{
    // ---- models and slices ---------------------------------------------------------------------------

    private IReadOnlyList<ModelEntry> ModelEntries(YNode node, string what)
    {
        if (node is not YSequence list)
            throw Error(node, $"{what} must be a list of '- model: NAME' entries, not {Describe(node)}");
        var result = new List<ModelEntry>(list.Items.Count);
        foreach (var item in list.Items)
        {
            if (item is not YMapping)
                throw Error(
                    item,
                    $"each entry of {what} must be a mapping with a 'model' key (write '- model: NAME'), not "
                        + $"{Describe(item)}"
                );
            var fields = Fields(item, "a model entry", ["model", "parameters", "align"], hasParameters: true);
            var modelNode = Value(fields, "model")
                ?? throw Error(item, $"an entry of {what} is missing its 'model' key");
            string? align = null;
            if (Value(fields, "align") is { } alignNode)
            {
                align = StringValue(alignNode, "'align'");
                if (align != ModelEntry.WeightMatching)
                    throw Error(
                        alignNode,
                        $"'align' must be {ModelEntry.WeightMatching} (Git Re-Basin's permutation alignment), not "
                            + $"'{align}'"
                    );
            }
            result.Add(
                new ModelEntry(
                    Model(modelNode, "'model'"),
                    Parameters(Value(fields, "parameters")),
                    item.Location,
                    align
                )
            );
        }
        return result;
    }

    private IReadOnlyList<OutputSlice> Slices(YNode node, string what)
    {
        if (node is not YSequence list)
            throw Error(node, $"{what} must be a list of '- sources: [...]' entries, not {Describe(node)}");
        var result = new List<OutputSlice>(list.Items.Count);
        foreach (var item in list.Items)
        {
            var fields = Fields(
                item,
                "a slice",
                ["sources", "base_model", "parameters", "residual_weight"],
                hasParameters: true
            );
            var sourcesNode = Value(fields, "sources") ?? throw Error(item, "a slice is missing its 'sources' list");
            if (sourcesNode is not YSequence sourceList || sourceList.Items.Count == 0)
                throw Error(
                    sourcesNode,
                    "a slice's 'sources' must be a non-empty list of '- model: NAME, layer_range: [start, end]' entries"
                );

            var sources = new List<InputSlice>(sourceList.Items.Count);
            foreach (var sourceNode in sourceList.Items)
                sources.Add(Source(sourceNode));

            if (
                fields.TryGetValue("residual_weight", out var residual) && !(residual.Value is YScalar { IsNull: true })
            )
            {
                if (!TryNumber(residual.Value, out _))
                    throw Error(residual.Value, $"'residual_weight' must be a number, not {Describe(residual.Value)}");
                Warn(
                    $"{residual.Key.Location}: 'residual_weight' has no effect (mergekit parses it but never uses it)"
                );
            }

            var baseNode = Value(fields, "base_model");
            var slice = new OutputSlice(
                sources,
                baseNode is null ? null : Model(baseNode, "the slice's 'base_model'"),
                Parameters(Value(fields, "parameters")),
                item.Location
            );
            RecipeRules.CheckSlice(slice);
            result.Add(slice);
        }
        return result;
    }

    private InputSlice Source(YNode node)
    {
        var fields = Fields(node, "a slice source", ["model", "layer_range", "parameters"], hasParameters: true);
        var modelNode = Value(fields, "model") ?? throw Error(node, "a slice source is missing its 'model' key");
        var model = Model(modelNode, "'model'");
        var rangeNode = Value(fields, "layer_range")
            ?? throw Error(node, "a slice source is missing its 'layer_range: [start, end]'");
        return new InputSlice(model, Range(rangeNode), Parameters(Value(fields, "parameters")), node.Location);
    }

    private static LayerRange Range(YNode node)
    {
        const string shape = "'layer_range' must be [start, end] with whole numbers 0 <= start <= end";
        if (node is not YSequence { Items.Count: 2 } pair)
            throw Error(node, $"{shape}, not {Describe(node)}");
        var start = Integer(pair.Items[0], "'layer_range' start");
        var end = Integer(pair.Items[1], "'layer_range' end");
        if (start < 0 || end < 0)
            throw Error(node, $"{shape}; got [{start}, {end}]");
        if (start > end)
            throw Error(node, $"{shape}; got [{start}, {end}] (start is after end)");
        if (end > int.MaxValue)
            throw Error(node, $"{shape}; {end} is too large");
        return new LayerRange((int)start, (int)end);
    }

    // ---- model references ------------------------------------------------------------------------------

    /// <summary>
    /// mergekit's ModelReference: a string <c>path[@rev][+lora[@rev]]</c>, or a mapping
    /// <c>{model: path[@rev] | {path, revision}, lora: (same forms), override_architecture: str}</c>.
    /// </summary>
    private ModelReference Model(YNode node, string what)
    {
        if (node is YScalar scalar)
        {
            if (scalar.Kind != ScalarKind.String)
            {
                throw Error(
                    node,
                    $"{what}: a model name must be a string, not {scalar.Describe()}"
                        + (
                            scalar.Plain && scalar.Kind != ScalarKind.Null
                                ? $"; YAML 1.1 reads {scalar.Text} as {KindName(scalar.Kind)}, so put it in quotes: "
                                    + $"\"{scalar.Text}\""
                                : ""
                        )
                );
            }
            if (!ModelReference.TryParse(scalar.Text, out var parsed, out var error))
                throw Error(node, error);
            return parsed;
        }

        var fields = Fields(
            node,
            $"{what} (model reference)",
            ["model", "lora", "override_architecture"],
            hasParameters: false
        );
        var modelNode = Value(fields, "model")
            ?? throw Error(node, $"{what}: a model reference mapping needs a 'model' key");
        var (path, revision) = ModelPath(modelNode, $"{what} 'model'");
        LoraReference? lora = null;
        if (Value(fields, "lora") is { } loraNode)
        {
            var (loraPath, loraRevision) = ModelPath(loraNode, $"{what} 'lora'");
            lora = new LoraReference(loraPath, loraRevision);
        }
        string? arch = null;
        if (Value(fields, "override_architecture") is { } archNode)
        {
            arch = StringValue(archNode, $"{what} 'override_architecture'");
            if (arch.Length == 0)
                throw Error(archNode, $"{what} 'override_architecture' is empty");
        }
        return new ModelReference(path, revision, lora, arch);
    }

    /// <summary>mergekit's ModelPath: <c>path[@rev]</c> (no '+' splitting here) or <c>{path, revision}</c>.</summary>
    private (string Path, string? Revision) ModelPath(YNode node, string what)
    {
        if (node is YScalar)
        {
            var text = StringValue(node, what);
            if (!ModelReference.TryParsePath(text, text, out var path, out var revision, out var error))
                throw Error(node, error);
            return (path, revision);
        }
        var fields = Fields(node, what, ["path", "revision"], hasParameters: false);
        var pathNode = Value(fields, "path") ?? throw Error(node, $"{what} needs a 'path'");
        var p = StringValue(pathNode, $"{what} 'path'");
        if (p.Length == 0)
            throw Error(pathNode, $"{what} 'path' is empty");
        string? rev = null;
        if (Value(fields, "revision") is { } revNode)
        {
            rev = StringValue(revNode, $"{what} 'revision'");
            if (rev.Length == 0)
                throw Error(revNode, $"{what} 'revision' is empty");
        }
        return (p, rev);
    }
}
