using Alloy.Alignment;
using Alloy.Architecture;
using Alloy.Checkpoints;
using Alloy.Recipes;

namespace Alloy.Planning;

/// <summary>One input model: where it is, its checkpoint (headers only) and its layout.</summary>
/// <param name="Adapter">The PEFT LoRA adapter of a <c>model+lora</c> reference, applied as tensors are read.</param>
/// <param name="Alignment">
/// For a model entry with <c>align:</c>, the permuted view of each tensor that alignment moves (read through it).
/// </param>
public sealed record InputModel(
    ModelReference Reference,
    int Index,
    string Location,
    Checkpoint Checkpoint,
    ModelLayout Layout,
    bool IsHubId = false,
    LoraAdapter? Adapter = null,
    IReadOnlyDictionary<string, TensorGather>? Alignment = null
)
{
    /// <summary>A short name for messages: the reference as written in the recipe.</summary>
    public string Name => Reference.ToString();

    /// <summary>config.json's architecture, or the recipe's override_architecture.</summary>
    public string? Architecture => Reference.OverrideArchitecture ?? Layout.Architecture;
}

/// <summary>The models a recipe references, opened once each, in recipe order.</summary>
public sealed class ModelSet : IDisposable
{
    private readonly Dictionary<ModelReference, InputModel> _models = [];
    private readonly List<InputModel> _ordered = [];
    private readonly Dictionary<ModelReference, string> _tokenizerOnly = [];

    public IReadOnlyList<InputModel> All => _ordered;

    /// <summary>Folders of models named only as a tokenizer source (their weights are not merged).</summary>
    public IReadOnlyDictionary<ModelReference, string> TokenizerOnly => _tokenizerOnly;

    /// <summary>The statistics files data-aware methods read, opened (or computed) as the plan needs them.</summary>
    public ModelStatistics Statistics { get; } = new();

    public InputModel this[ModelReference reference] =>
        _models.TryGetValue(reference, out var m)
            ? m
            : throw new InvalidOperationException($"model {reference} was not opened");

    /// <summary>
    /// Opens every model the recipe references (reading headers only). <paramref name="namedModels"/> maps reference
    /// paths to folders and is consulted first (the stages of a multi-stage merge). <paramref name="raw"/> skips layer
    /// analysis (state dicts merged by name may number their blocks with gaps).
    /// </summary>
    public static ModelSet Open(
        MergeRecipe recipe,
        Diagnostics diagnostics,
        IReadOnlyDictionary<string, string>? namedModels = null,
        bool raw = false,
        string? hubCache = null
    )
    {
        var set = new ModelSet();
        try
        {
            string[] searchDirectories = recipe.Folder is { } folder ? [folder] : [];
            string hub = hubCache ?? ModelLocator.HuggingFaceCacheDirectory();
            string Locate(ModelReference reference, out bool isNamed)
            {
                string? named = null;
                isNamed = namedModels?.TryGetValue(reference.Path, out named) == true;
                return isNamed
                    ? named!
                    : ModelLocator.Resolve(reference.Path, reference.Revision, searchDirectories, hub);
            }
            LoraAdapter? OpenAdapter(ModelReference reference) =>
                reference.Lora is { } lora
                    ? LoraAdapter.Open(ModelLocator.Resolve(lora.Path, lora.Revision, searchDirectories, hub))
                    : null;

            foreach (var reference in recipe.ReferencedModels())
            {
                var location = Locate(reference, out bool isNamed);
                var checkpoint = Checkpoint.Open(location);
                LoraAdapter? adapter;
                try
                {
                    adapter = OpenAdapter(reference);
                }
                catch
                {
                    checkpoint.Dispose();
                    throw;
                }
                // A reference that is not a local path was found in the Hugging Face cache: it is a Hub id (for the
                // model card).
                bool isHubId =
                    !isNamed
                    && !Path.Exists(reference.Path)
                    && !searchDirectories.Any(d => Path.Exists(Path.Combine(d, reference.Path)));
                set.Add(
                    new InputModel(
                        reference,
                        set._ordered.Count,
                        location,
                        checkpoint,
                        raw ? ModelLayout.Flat(checkpoint) : ModelLayout.Analyze(checkpoint),
                        isHubId,
                        adapter
                    )
                );
                diagnostics.Info(
                    $"opened {reference} at {location}: {checkpoint.Tensors.Count} tensors, {checkpoint.TotalBytes:N0} "
                        + $"bytes"
                );
            }
            set.Align(recipe, diagnostics);
            // A tokenizer source that is not merged contributes only its tokenizer files: find its folder, open no
            // weights.
            if (recipe.Tokenizer?.Model is { } source && !set._models.ContainsKey(source))
            {
                var location = Locate(source, out _);
                set._tokenizerOnly[source] = Directory.Exists(location) ? location : Path.GetDirectoryName(location)!;
            }
            return set;
        }
        catch
        {
            set.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Permutes each model entry with <c>align: weight_matching</c> onto the reference (base_model, else the first
    /// model) by weight matching, as index maps its tensors are read through.
    /// </summary>
    private void Align(MergeRecipe recipe, Diagnostics diagnostics)
    {
        var entries = recipe.Models ?? [];
        foreach (var entry in entries.Where(e => e.Align is not null))
        {
            var anchor = recipe.BaseModel ?? entries[0].Model;
            if (entry.Model == anchor)
                throw new AlloyException(
                    $"{entry.Location}: '{entry.Model}' is the model the others are aligned to (base_model, else the "
                        + "first model), so it cannot be aligned itself"
                );
            if (entries.Any(e => e.Model == entry.Model && e.Align != entry.Align))
                throw new AlloyException(
                    $"{entry.Location}: '{entry.Model}' appears both with and without 'align'; give it once"
                );
            var model = this[entry.Model];
            if (model.Alignment is not null)
                continue;
            if (model.Adapter is not null)
                throw new AlloyException(
                    $"{entry.Location}: '{entry.Model}' has a LoRA adapter, and align permutes stored models only; "
                        + "merge the adapter into the model first"
                );
            var reference = this[anchor];
            var (gathers, sweeps) = CheckpointAlignment.Align(
                reference.Checkpoint,
                reference.Name,
                model.Checkpoint,
                model.Name
            );
            var aligned = model with { Alignment = gathers };
            _models[entry.Model] = aligned;
            _ordered[model.Index] = aligned;
            diagnostics.Info(
                $"aligned {model.Name} to {reference.Name} by weight matching ({sweeps} sweeps, {gathers.Count} "
                    + "tensors permuted)"
            );
        }
    }

    private void Add(InputModel model)
    {
        _models[model.Reference] = model;
        _ordered.Add(model);
    }

    public void Dispose()
    {
        Statistics.Dispose();
        foreach (var m in _ordered)
        {
            m.Checkpoint.Dispose();
            m.Adapter?.Dispose();
        }
        _ordered.Clear();
        _models.Clear();
    }
}
