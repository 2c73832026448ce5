using Alloy.Tensors;

namespace Alloy.Recipes;

/// <summary>
/// Builds in code any recipe <c>alloy merge</c> accepts, checked by the same rules as YAML (<see cref="RecipeRules"/>;
/// parameters are checked against the method's declarations when the recipe is planned, as for YAML):
/// <code>
/// var recipe = new RecipeBuilder("ties")
///     .BaseModel("models/base")
///     .Model("models/finetune-1", new() { ["weight"] = 1.0, ["density"] = new[] { 1, 0.7, 0.1 } })
///     .Model("models/finetune-2", new() { ["weight"] = 0.5, ["density"] = 0.5 })
///     .Parameter("normalize", true)
///     .DType(DType.BF16)
///     .Build();
/// </code>
/// Model references are written as in YAML (<c>path[@revision][+lora]</c>); relative paths are found from
/// <see cref="RelativeTo"/> (default: the current folder). <see cref="MergeRecipe.ToYaml"/> writes the result as
/// mergekit YAML.
/// </summary>
public sealed class RecipeBuilder(string method)
{
    private ModelReference? _baseModel;
    private List<ModelEntry>? _models;
    private List<OutputSlice>? _slices;
    private readonly ParameterSettings _parameters = new();
    private DType? _dtype,
        _outDType;
    private TokenizerRecipe? _tokenizer;
    private string? _chatTemplate,
        _name,
        _folder;

    public RecipeBuilder BaseModel(string reference) => BaseModel(ModelReference.Parse(reference));

    public RecipeBuilder BaseModel(ModelReference reference)
    {
        _baseModel = reference;
        return this;
    }

    /// <summary>An entry of <c>models:</c>.</summary>
    public RecipeBuilder Model(string reference, ParameterSettings? parameters = null) =>
        Model(ModelReference.Parse(reference), parameters);

    public RecipeBuilder Model(ModelReference reference, ParameterSettings? parameters = null)
    {
        (_models ??= []).Add(new ModelEntry(reference, parameters ?? new ParameterSettings(), SourceLocation.Code));
        return this;
    }

    /// <summary>An entry of <c>slices:</c>: <c>.Slice(s =&gt; s.Source("a", 0, 16).Source("b", 0, 16))</c>.</summary>
    public RecipeBuilder Slice(Action<SliceBuilder> build)
    {
        var slice = new SliceBuilder();
        build(slice);
        (_slices ??= []).Add(slice.Build());
        return this;
    }

    /// <summary>
    /// A top-level parameter (numbers, booleans, texts, gradients as double[], or
    /// <see cref="ParameterValue.Filtered"/>).
    /// </summary>
    public RecipeBuilder Parameter(string name, ParameterValue value)
    {
        _parameters[name] = value;
        return this;
    }

    public RecipeBuilder Parameters(ParameterSettings parameters)
    {
        foreach (var setting in parameters)
            _parameters[setting.Name] = setting.Value;
        return this;
    }

    public RecipeBuilder DType(DType dtype)
    {
        _dtype = dtype;
        return this;
    }

    public RecipeBuilder OutDType(DType dtype)
    {
        _outDType = dtype;
        return this;
    }

    public RecipeBuilder Tokenizer(TokenizerRecipe tokenizer)
    {
        _tokenizer = tokenizer;
        return this;
    }

    /// <summary><c>auto</c>, a built-in template's name, or a Jinja template.</summary>
    public RecipeBuilder ChatTemplate(string template)
    {
        _chatTemplate = template;
        return this;
    }

    /// <summary>The recipe's <c>name:</c> (a stage of a multi-stage merge).</summary>
    public RecipeBuilder Name(string name)
    {
        _name = name;
        return this;
    }

    /// <summary>The folder relative model paths are found from, as a YAML file's folder is for its recipe.</summary>
    public RecipeBuilder RelativeTo(string folder)
    {
        _folder = folder;
        return this;
    }

    /// <summary>
    /// The recipe; a mistake (nothing to merge, uneven slices, a bad chat template, …) is an
    /// <see cref="AlloyException"/>.
    /// </summary>
    public MergeRecipe Build()
    {
        var recipe = new MergeRecipe
        {
            Method = method,
            MethodLocation = SourceLocation.Code,
            BaseModel = _baseModel,
            Models = _models?.ToList(),
            Slices = _slices?.ToList(),
            Parameters = new ParameterSettings(_parameters),
            DType = _dtype,
            OutDType = _outDType,
            Tokenizer = _tokenizer,
            ChatTemplate = _chatTemplate,
            Name = _name,
            SourceName = SourceLocation.Code.File,
            Folder = _folder is null ? null : Path.GetFullPath(_folder),
        };
        RecipeRules.Check(recipe);
        return recipe;
    }
}

/// <summary>
/// One entry of <c>slices:</c> in code: sources with layer ranges, an optional base model and parameters.
/// </summary>
public sealed class SliceBuilder
{
    private readonly List<InputSlice> _sources = [];
    private readonly ParameterSettings _parameters = new();
    private ModelReference? _baseModel;

    /// <summary>Layers [start, end) of <paramref name="model"/>, as <c>layer_range: [start, end]</c>.</summary>
    public SliceBuilder Source(string model, int start, int end, ParameterSettings? parameters = null)
    {
        if (start < 0 || end < start)
            throw new AlloyException(
                $"slice source '{model}': layer_range [{start}, {end}] must have 0 <= start <= end"
            );
        _sources.Add(
            new InputSlice(
                ModelReference.Parse(model),
                new LayerRange(start, end),
                parameters ?? new ParameterSettings(),
                SourceLocation.Code
            )
        );
        return this;
    }

    /// <summary>The slice's own base model.</summary>
    public SliceBuilder BaseModel(string model)
    {
        _baseModel = ModelReference.Parse(model);
        return this;
    }

    public SliceBuilder Parameter(string name, ParameterValue value)
    {
        _parameters[name] = value;
        return this;
    }

    internal OutputSlice Build() =>
        new(_sources.ToList(), _baseModel, new ParameterSettings(_parameters), SourceLocation.Code);
}
