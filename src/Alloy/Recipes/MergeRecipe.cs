using Alloy.Recipes.Yaml;
using Alloy.Tensors;

namespace Alloy.Recipes;

/// <summary>A half-open range of layer indices <c>[Start, End)</c>, as in <c>layer_range: [start, end]</c>.</summary>
public readonly record struct LayerRange(int Start, int End)
{
    public int Count => End - Start;
}

/// <summary>One entry of <c>models:</c>.</summary>
/// <param name="Align">
/// <c>weight_matching</c>: the model is permuted onto the reference (base_model, else the first model) by Git
/// Re-Basin's weight matching before it is merged; null: read as stored.
/// </param>
public sealed record ModelEntry(
    ModelReference Model,
    ParameterSettings Parameters,
    SourceLocation Location,
    string? Align = null
)
{
    /// <summary>The one value <c>align:</c> takes.</summary>
    public const string WeightMatching = "weight_matching";
}

/// <summary>One entry of <c>slices[].sources</c>.</summary>
public sealed record InputSlice(
    ModelReference Model,
    LayerRange Range,
    ParameterSettings Parameters,
    SourceLocation Location
);

/// <summary>
/// One entry of <c>slices:</c>; <see cref="BaseModel"/> overrides the recipe's base model for this slice.
/// </summary>
public sealed record OutputSlice(
    IReadOnlyList<InputSlice> Sources,
    ModelReference? BaseModel,
    ParameterSettings Parameters,
    SourceLocation Location
)
{
    /// <summary>Number of output layers (every source spans the same count).</summary>
    public int LayerCount => Sources.Count == 0 ? 0 : Sources[0].Range.Count;
}

/// <summary>
/// A parameters block: what it belongs to (for messages), its settings, and whether they are one model's.
/// </summary>
public sealed record ParameterBlock(string Owner, ParameterSettings Settings, bool PerModel);

/// <summary>Where a configured token's embedding row comes from (<c>tokenizer.tokens.*.source</c>).</summary>
public abstract record TokenSource
{
    private TokenSource() { }

    /// <summary>The same token's row in that model.</summary>
    public sealed record FromModel(ModelReference Model) : TokenSource;

    /// <summary>A specific row of that model's original embeddings, by token text or id (exactly one is set).</summary>
    public sealed record ModelToken(ModelReference Model, string? Token, int? TokenId) : TokenSource;

    /// <summary>A row of zeros.</summary>
    public sealed record Zero : TokenSource;
}

/// <summary>Settings of one configured token; a null source means mergekit's default choice of row.</summary>
public sealed record TokenSettings(TokenSource? Source, bool Force);

public enum TokenizerSourceKind
{
    Base,
    Union,
    Model,
}

/// <summary>
/// The output tokenizer: from <c>tokenizer:</c> or the legacy <c>tokenizer_source:</c> (<see cref="Legacy"/>; it has no
/// tokens or padding). <see cref="Model"/> is set when <see cref="Kind"/> is <see cref="TokenizerSourceKind.Model"/>.
/// Tokens keep config order. In code: <c>TokenizerRecipe.Union.WithToken("&lt;|im_start|&gt;").WithPadding(64)</c>.
/// </summary>
public sealed record TokenizerRecipe(
    TokenizerSourceKind Kind,
    ModelReference? Model,
    IReadOnlyDictionary<string, TokenSettings> Tokens,
    int? PadToMultipleOf,
    SourceLocation Location,
    bool Legacy = false
)
{
    /// <summary>The union of every model's vocabulary (mergekit's default source).</summary>
    public static TokenizerRecipe Union { get; } =
        new(TokenizerSourceKind.Union, null, new Dictionary<string, TokenSettings>(), null, SourceLocation.Code);

    /// <summary>The base model's vocabulary.</summary>
    public static TokenizerRecipe Base { get; } = Union with { Kind = TokenizerSourceKind.Base };

    /// <summary>The vocabulary of <paramref name="model"/> (a reference as a recipe writes it).</summary>
    public static TokenizerRecipe From(string model) =>
        Union with
        {
            Kind = TokenizerSourceKind.Model,
            Model = ModelReference.Parse(model),
        };

    /// <summary>This recipe with <paramref name="token"/> added or configured (kept in order).</summary>
    public TokenizerRecipe WithToken(string token, TokenSource? source = null, bool force = false)
    {
        var tokens = new OrderedDictionary<string, TokenSettings>(StringComparer.Ordinal);
        foreach (var (name, settings) in Tokens)
            tokens[name] = settings;
        tokens[token] = new TokenSettings(source, force);
        return this with { Tokens = tokens, Legacy = false };
    }

    /// <summary>This recipe with the vocabulary padded to a multiple of <paramref name="multiple"/>.</summary>
    public TokenizerRecipe WithPadding(int multiple) => this with { PadToMultipleOf = multiple, Legacy = false };
}

/// <summary>
/// A validated mergekit config: read from YAML (<see cref="RecipeParser"/>) or built in code
/// (<see cref="RecipeBuilder"/>), checked by the same rules (<see cref="RecipeRules"/>) either way.
/// </summary>
public sealed record MergeRecipe
{
    public required string Method { get; init; }
    public required SourceLocation MethodLocation { get; init; }
    public ModelReference? BaseModel { get; init; }
    public SourceLocation? BaseModelLocation { get; init; }

    /// <summary>Exactly one of <see cref="Models"/>, <see cref="Slices"/> is non-null (and non-empty).</summary>
    public IReadOnlyList<ModelEntry>? Models { get; init; }
    public IReadOnlyList<OutputSlice>? Slices { get; init; }

    public required ParameterSettings Parameters { get; init; }
    public DType? DType { get; init; }
    public DType? OutDType { get; init; }

    /// <summary>
    /// From <c>tokenizer:</c> or legacy <c>tokenizer_source:</c>; null means "copy the donor's tokenizer".
    /// </summary>
    public TokenizerRecipe? Tokenizer { get; init; }

    /// <summary>
    /// <c>auto</c>, a built-in name (see <see cref="RecipeRules.BuiltInChatTemplates"/>) or a literal Jinja template.
    /// </summary>
    public string? ChatTemplate { get; init; }

    /// <summary>Every parameters block of the recipe, in config order.</summary>
    public IEnumerable<ParameterBlock> ParameterBlocks()
    {
        yield return new("the recipe's parameters", Parameters, PerModel: false);
        foreach (var entry in Models ?? [])
            yield return new($"model '{entry.Model}'", entry.Parameters, PerModel: true);
        for (int s = 0; s < (Slices?.Count ?? 0); s++)
        {
            yield return new($"slice {s + 1}", Slices![s].Parameters, PerModel: false);
            foreach (var source in Slices[s].Sources)
                yield return new($"slice {s + 1}, source '{source.Model}'", source.Parameters, PerModel: true);
        }
    }

    /// <summary>The document's <c>name:</c> (multi-document configs, as mergekit-multi reads them).</summary>
    public string? Name { get; init; }

    /// <summary>
    /// The YAML the recipe was read from, verbatim (written to the output as the model's config); null for a recipe
    /// built in code, whose YAML <see cref="ToYaml"/> writes.
    /// </summary>
    public string? Text { get; init; }

    /// <summary>
    /// File path, or "&lt;string&gt;", used in locations; for a recipe built in code, where its models are found.
    /// </summary>
    public required string SourceName { get; init; }

    /// <summary>
    /// A folder where relative model paths are also looked for (after the current folder): the YAML file's folder, as
    /// mergekit does, or the folder a recipe built in code names; null when there is none.
    /// </summary>
    public string? Folder { get; init; }

    /// <summary>The recipe as mergekit YAML: the text it was read from, else written from the recipe.</summary>
    public string ToYaml() => Text ?? RecipeWriter.Write(this);

    /// <summary>This recipe with the global parameter <paramref name="name"/> set (its text is written anew).</summary>
    public MergeRecipe WithParameter(string name, ParameterValue value) =>
        this with
        {
            Parameters = new ParameterSettings(Parameters) { [name] = value },
            Text = null,
        };

    /// <summary>
    /// A path the recipe names (a statistics file, data): as written when it exists from the current folder or is
    /// absolute, else from the recipe's folder when it exists there (mergekit's rule for model paths).
    /// </summary>
    public string Locate(string path) =>
        Path.IsPathRooted(path)
        || Path.Exists(path)
        || Folder is not { } folder
        || !Path.Exists(Path.Combine(folder, path))
            ? path
            : Path.Combine(folder, path);

    /// <summary>
    /// Every model the recipe merges, deduplicated, in config order: base_model first (if any), then models / slice
    /// sources in order of appearance; a slice's own base_model follows that slice's sources. mergekit returns a Python
    /// set here, so its "first model" (the donor when there is no base) is arbitrary; config order makes it
    /// deterministic. Models named only by the tokenizer settings are in <see cref="TokenizerModels"/>.
    /// </summary>
    public IReadOnlyList<ModelReference> ReferencedModels()
    {
        var seen = new HashSet<ModelReference>();
        var result = new List<ModelReference>();
        void Add(ModelReference? m)
        {
            if (m is not null && seen.Add(m))
                result.Add(m);
        }

        Add(BaseModel);
        foreach (var entry in Models ?? [])
            Add(entry.Model);
        foreach (var slice in Slices ?? [])
        {
            foreach (var source in slice.Sources)
                Add(source.Model);
            Add(slice.BaseModel);
        }
        return result;
    }

    /// <summary>
    /// Models named only by the tokenizer settings (a tokenizer source model, token row donors), in config order,
    /// excluding those already in <see cref="ReferencedModels"/>. They supply tokenizers or embedding rows, not layers.
    /// </summary>
    public IReadOnlyList<ModelReference> TokenizerModels()
    {
        var seen = new HashSet<ModelReference>(ReferencedModels());
        var result = new List<ModelReference>();
        if (Tokenizer is null)
            return result;
        void Add(ModelReference? m)
        {
            if (m is not null && seen.Add(m))
                result.Add(m);
        }
        Add(Tokenizer.Model);
        foreach (var settings in Tokenizer.Tokens.Values)
        {
            Add(
                settings.Source switch
                {
                    TokenSource.FromModel f => f.Model,
                    TokenSource.ModelToken t => t.Model,
                    _ => null,
                }
            );
        }
        return result;
    }
}
