using System.Diagnostics;
using System.Text.Json.Nodes;
using Alloy.Checkpoints;
using Alloy.Execution;
using Alloy.Methods.DataAware;
using Alloy.Output;
using Alloy.Planning;
using Alloy.Recipes;
using Alloy.Tokenizers;

namespace Alloy;

/// <summary>
/// A recipe with its models opened (headers only, memory-mapped) and its plan made, ready to merge into any sink — a
/// model folder (<see cref="WriteFolder"/>) or a model in memory (Alloy.Runtime's model sink) — as often as needed,
/// with new parameter values in between (<see cref="Reparameterize"/>) and without opening or planning again: what a
/// merge → evaluate loop (coefficient search, evolution, AdaMerging) runs on.
/// </summary>
public sealed class MergeSession : IDisposable
{
    private readonly Diagnostics _diagnostics;

    private MergeSession(ModelSet models, MergePlan plan, MergeOptions options, Diagnostics diagnostics)
    {
        Models = models;
        Plan = plan;
        Options = options;
        _diagnostics = diagnostics;
    }

    /// <summary>
    /// Opens the recipe's models and plans the merge; every mistake in the recipe is found here. A method that learns
    /// its coefficients (AdaMerging) learns them here, through <see cref="MergeOptions.Learner"/>, unless the recipe
    /// names learnt ones.
    /// </summary>
    public static MergeSession Open(
        MergeRecipe recipe,
        MergeOptions? options = null,
        Diagnostics? diagnostics = null,
        CancellationToken cancellation = default
    )
    {
        options ??= new MergeOptions();
        diagnostics ??= new Diagnostics();
        // Mistakes in the recipe itself (the method's name, a parameter's name or range) are errors before any model
        // is looked for; the planner checks the parameters again and reports their warnings then.
        ParameterCheck.Check(recipe, Planner.FindMethod(recipe), new Diagnostics());
        var models = ModelSet.Open(
            recipe,
            diagnostics,
            options.NamedModels,
            raw: options.RawTensors is not null,
            options.HubCache
        );
        models.Statistics.Provider = options.Statistics;
        try
        {
            IReadOnlyList<string>? grams = null;
            if (Planner.FindMethod(recipe) is RegMeanPlusPlus && UsesData(recipe))
            {
                grams = LearnerOf(options, "regmean_plusplus gathers its Gram matrices", "each model's gram: file")
                    .SequentialGrams(recipe, models, cancellation);
                recipe = RegMeanPlusPlus.WithGrams(recipe, grams);
            }
            var plan = Planner.Create(
                recipe,
                models,
                new PlanOptions(options.AllowCrimes, options.Seed, options.RawTensors),
                diagnostics
            );
            var session = new MergeSession(models, plan, options, diagnostics) { _sequentialGrams = grams };
            if (plan.Method is AdaMerging)
                session.SetCoefficients(cancellation);
            if (plan.Method is ConcreteSubspace)
                session.SetSubspace(cancellation);
            return session;
        }
        catch
        {
            models.Dispose();
            throw;
        }
    }

    /// <summary>The runtime's learner, or a one-line refusal saying what needed it and what to give instead.</summary>
    private static IMergeLearner LearnerOf(MergeOptions options, string what, string instead) =>
        options.Learner
        ?? throw new AlloyException(
            $"{what} with Alloy.Runtime, and this merge has no learner (MergeOptions.Learner); or give {instead}"
        );

    private static bool UsesData(MergeRecipe recipe) =>
        recipe.Parameters.Contains(RegMean.Data.Name)
        || recipe.Models?.Any(m => m.Parameters.Contains(RegMean.Data.Name)) == true;

    /// <summary>
    /// An AdaMerging merge's coefficients, learnt or read (written beside the model as
    /// <see cref="LambdaTable.FileName"/>); null for other methods.
    /// </summary>
    public LambdaTable? Coefficients { get; private set; }

    /// <summary>RegMean++'s Gram files gathered from data when the session opened, in model order; else null.</summary>
    private IReadOnlyList<string>? _sequentialGrams;

    /// <summary>A Concrete subspace merge's mask file, given or learnt (copied beside the model); else null.</summary>
    public string? SubspaceMask { get; private set; }

    /// <summary>
    /// Gives a Concrete subspace plan its mask — the recipe's <c>mask:</c> file, or learnt now — and, inside it,
    /// AdaMerging's coefficients when the recipe asks for them.
    /// </summary>
    private void SetSubspace(CancellationToken cancellation)
    {
        var info = Plan.FirstMerged;
        if (info[ConcreteSubspace.Mask] is not { } mask)
        {
            mask = LearnerOf(Options, "concrete_subspace learns its mask", "a learnt one with mask:")
                .LearnSubspace(this, cancellation);
        }
        SubspaceMask = Path.GetFullPath(mask);
        Reparameterize(Recipe);
        if (Plan.FirstMerged[ConcreteSubspace.Inside] == "adamerging")
            SetCoefficients(cancellation);
    }

    /// <summary>
    /// Gives an AdaMerging plan its coefficients: those of the recipe's <c>lambdas:</c> file, or learnt now.
    /// </summary>
    private void SetCoefficients(CancellationToken cancellation)
    {
        var info = Plan.FirstMerged;
        LambdaTable table;
        if (info[AdaMerging.Lambdas] is { } path)
        {
            if (!File.Exists(path))
                throw new AlloyException($"{Plan.Method.Name}: lambdas file '{path}' does not exist");
            table = LambdaTable.Read(path);
        }
        else
        {
            table = LearnerOf(Options, $"{Plan.Method.Name} learns its coefficients", "learnt ones with lambdas:")
                .LearnCoefficients(this, cancellation);
        }
        Coefficients = table;
        Reparameterize(Recipe);
    }

    public ModelSet Models { get; }

    public MergePlan Plan { get; private set; }

    public MergeRecipe Recipe => Plan.Recipe;

    public MergeOptions Options { get; }

    /// <summary>
    /// The merged model's config.json as its folder would have it; null when the donor model has none.
    /// </summary>
    public JsonObject? OutputConfig => Plan.Donor.Checkpoint.Config is null ? null : Output.OutputConfig.Build(Plan);

    /// <summary>
    /// Gives the plan <paramref name="recipe"/>'s parameter values; the recipe may differ from this one only in them
    /// (<see cref="Planner.Reparameterize"/>). Cheap: no file is read.
    /// A session keeps what it learnt (AdaMerging's coefficients, a Concrete mask, RegMean++'s Grams): they apply to
    /// <paramref name="recipe"/> too.
    /// </summary>
    public void Reparameterize(MergeRecipe recipe)
    {
        if (Coefficients is { } table)
            recipe = table.ApplyTo(recipe, LambdaTable.FileName);
        if (SubspaceMask is { } mask)
            recipe = recipe.WithParameter(ConcreteSubspace.Mask.Name, new ParameterValue.Text(mask));
        if (_sequentialGrams is { } grams && UsesData(recipe))
            recipe = RegMeanPlusPlus.WithGrams(recipe, grams);
        Plan = Planner.Reparameterize(Plan, recipe, Models, _diagnostics);
    }

    /// <summary>
    /// Merges into <paramref name="sink"/>, tensor by tensor in plan order (side outputs are not computed).
    /// </summary>
    public void Run(
        ITensorSink sink,
        Action<MergeProgress>? progress = null,
        CancellationToken cancellation = default
    ) => MergeExecutor.Run(Plan, sink, sideFolder: null, Options.Execution, progress, cancellation);

    /// <summary>
    /// Writes the merged model as a Hugging Face folder at <paramref name="outputPath"/>: shards and index, side
    /// outputs, config.json, tokenizer and generation files, model card and recipe; into a temporary folder moved into
    /// place when complete.
    /// </summary>
    public MergeResult WriteFolder(
        string outputPath,
        Action<MergeProgress>? progress = null,
        CancellationToken cancellation = default
    )
    {
        var clock = Stopwatch.StartNew();
        using var folder = OutputFolder.Prepare(
            outputPath,
            Options.Overwrite,
            Models.All.Select(m => m.Location),
            _diagnostics
        );
        if (!Options.Execution.StrictMemoryLimit)
            foreach (var need in MergeExecutor.OversizedWholeTensors(Plan, Options.Execution))
                _diagnostics.Warn(
                    $"{need}; it runs alone above the default budget (set --memory-limit to refuse instead)"
                );
        var shards = ShardPlan.Create(Plan.Jobs.Select(j => j.Output).ToList(), Options.OutShardSize);
        using (
            var writer = new ShardedWriter(
                folder.Temporary,
                shards,
                new Dictionary<string, string> { ["alloy_version"] = Merger.Version }
            )
        )
        {
            MergeExecutor.Run(Plan, writer, folder.Temporary, Options.Execution, progress, cancellation);
            writer.Complete();
        }
        WriteFiles(folder);
        folder.Commit();
        return new MergeResult(
            folder.Target,
            Plan.Jobs.Count,
            shards.Shards.Count,
            Plan.InputBytes,
            Plan.OutputBytes,
            clock.Elapsed
        );
    }

    /// <summary>
    /// Writes the files a merged model needs to be run beside its weights — config.json, the tokenizer (the donor's, or
    /// the merged vocabulary's) and generation files — into <paramref name="folder"/>.
    /// </summary>
    public void WriteRunFiles(string folder)
    {
        if (OutputConfig is { } config)
            Output.OutputConfig.Write(config, Path.Combine(folder, "config.json"));
        WriteTokenizer(folder, copyTokenizer: true);
    }

    private void WriteFiles(OutputFolder folder)
    {
        var donor = Plan.Donor;
        if (OutputConfig is { } config)
            Output.OutputConfig.Write(config, Path.Combine(folder.Temporary, "config.json"));
        else if (Options.RawTensors is null)
            _diagnostics.Warn($"donor model '{donor.Name}' has no config.json, so the output has none");
        WriteTokenizer(folder.Temporary, Options.CopyTokenizer);
        if (Options.WriteModelCard)
        {
            File.WriteAllText(
                Path.Combine(folder.Temporary, "README.md"),
                ModelCard.Render(Plan, Path.GetFileName(folder.Target), Models.All)
            );
            // A learnt mask is written beside the model, and the recipe names it there.
            var written = SubspaceMask is null
                ? Plan.Recipe
                : Plan.Recipe.WithParameter(
                    ConcreteSubspace.Mask.Name,
                    new ParameterValue.Text(ConcreteSubspace.MaskFileName)
                );
            File.WriteAllText(Path.Combine(folder.Temporary, "mergekit_config.yml"), written.ToYaml());
        }
        Coefficients?.Write(Path.Combine(folder.Temporary, LambdaTable.FileName));
        if (SubspaceMask is { } mask)
            File.Copy(mask, Path.Combine(folder.Temporary, ConcreteSubspace.MaskFileName));
    }

    private void WriteTokenizer(string folder, bool copyTokenizer)
    {
        var donor = Plan.Donor;
        // With a merged vocabulary the tokenizer is written new (whatever --copy-tokenizer says, as mergekit does).
        copyTokenizer &= Plan.Tokenizer?.Vocabulary is null;
        if (Directory.Exists(donor.Location))
            DonorFiles.Copy(donor.Location, folder, copyTokenizer);
        TokenizerOutput.Write(Plan.Tokenizer, folder, copyTokenizer && Directory.Exists(donor.Location), _diagnostics);
    }

    public void Dispose() => Models.Dispose();
}
