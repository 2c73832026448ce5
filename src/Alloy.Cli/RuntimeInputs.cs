using System.CommandLine;
using Alloy.Recipes;
using Alloy.Runtime;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Cli;

/// <summary>
/// The arguments the commands that run a model over a data set share: the model, the data, threads, verbosity.
/// </summary>
public sealed class RuntimeInputs
{
    public Argument<string> Model { get; } =
        new("model")
        {
            Description =
                "A Hugging Face model folder (Llama, Mistral or Qwen2: config.json, safetensors or .bin, "
                + "tokenizer.json), or MODEL+ADAPTER: the folder with a PEFT LoRA adapter applied.",
        };
    public Option<string> Data { get; } =
        new("--data")
        {
            Description =
                "Examples: a .txt file (one per line) or a .jsonl file with \"text\", or \"prompt\" and "
                + "\"completion\" (only the completion is scored).",
            Required = true,
        };
    public Option<int> SequenceLength { get; } =
        new("--seq-length")
        {
            Description = "Longest sequence in tokens; longer examples are cut into windows overlapping by one token.",
            DefaultValueFactory = _ => 256,
        };
    public Option<int> Threads { get; } =
        new("--threads", "-j")
        {
            Description = "Threads (results do not depend on it).",
            DefaultValueFactory = _ => Environment.ProcessorCount,
        };
    public Option<bool> Quiet { get; } = new("--quiet", "-q") { Description = "No progress output." };
    public Option<bool> Verbose { get; } = new("--verbose", "-v") { Description = "Stack traces with errors." };

    public void AddTo(Command command)
    {
        command.Add(Model);
        command.Add(Data);
        command.Add(SequenceLength);
        command.Add(Threads);
        command.Add(Quiet);
        command.Add(Verbose);
    }

    /// <summary>
    /// A model folder, or <c>MODEL+ADAPTER</c> (a model folder and a PEFT LoRA adapter applied to it, as a merge reads
    /// a <c>model+lora</c> reference), loaded in float32 on <paramref name="threads"/> threads, and its tokenizer, read
    /// first and given to <paramref name="checkTokenizer"/> (which may refuse it) before the weights are read.
    /// </summary>
    public static (LlamaModel Model, TextTokenizer Tokenizer) LoadModel(
        string folder,
        int threads,
        Action<TextTokenizer>? checkTokenizer = null
    )
    {
        if (threads < 1)
            throw new AlloyException($"--threads must be at least 1 (got {threads})");
        if (AdaptedBase(folder) is { } baseFolder)
        {
            checkTokenizer?.Invoke(TextTokenizer.Load(baseFolder));
            // The adapter's update is added in float32 to the base's weights, as the merge of 'model+lora' reads them.
            var recipe = new RecipeBuilder("passthrough").Model(folder).DType(Alloy.Tensors.DType.F32).Build();
            return MergeInMemory(recipe, threads, new Diagnostics(), CancellationToken.None);
        }
        if (!Directory.Exists(folder))
            throw new AlloyException($"model folder '{folder}' does not exist");
        var tokenizer = TextTokenizer.Load(folder);
        checkTokenizer?.Invoke(tokenizer);
        return (LlamaModel.Load(folder, new RuntimeOptions { Threads = threads }), tokenizer);
    }

    /// <summary>
    /// The model folder of a <c>MODEL+ADAPTER</c> path (both folders exist), or null for anything else.
    /// </summary>
    public static string? AdaptedBase(string path) =>
        !Directory.Exists(path)
        && ModelReference.TryParse(path, out var reference)
        && reference is { Lora: { } lora, Revision: null }
        && lora.Revision is null
        && Directory.Exists(reference.Path)
        && Directory.Exists(lora.Path)
            ? reference.Path
            : null;

    /// <summary>
    /// True when <paramref name="path"/> names a merge recipe (a .yml or .yaml file) rather than a model folder.
    /// </summary>
    public static bool IsRecipe(string path) =>
        Path.GetExtension(path).ToLowerInvariant() is ".yml" or ".yaml" && !Directory.Exists(path);

    /// <summary>
    /// The merge <paramref name="recipePath"/> describes, made in memory (no weights are written), and the tokenizer
    /// its folder would have (written to a temporary folder, read, and deleted).
    /// </summary>
    public static (LlamaModel Model, TextTokenizer Tokenizer) MergeInMemory(
        string recipePath,
        int threads,
        Diagnostics diagnostics,
        CancellationToken cancellation
    )
    {
        if (threads < 1)
            throw new AlloyException($"--threads must be at least 1 (got {threads})");
        return MergeInMemory(RecipeParser.ParseFile(recipePath, diagnostics), threads, diagnostics, cancellation);
    }

    private static (LlamaModel Model, TextTokenizer Tokenizer) MergeInMemory(
        MergeRecipe recipe,
        int threads,
        Diagnostics diagnostics,
        CancellationToken cancellation
    )
    {
        var options = MergeOptionSet.WithRuntime(
            new MergeOptions { Execution = new Execution.ExecutionOptions { Threads = threads } },
            null,
            threads,
            diagnostics.Info
        );
        using var session = MergeSession.Open(recipe, options, diagnostics, cancellation);
        var model = MergedModel.Create(session, new RuntimeOptions { Threads = threads }, cancellation: cancellation);
        return (model, MergedModel.Tokenizer(session));
    }

    /// <summary>
    /// The model, loaded in float32, and the data set (and the held-out set at <paramref name="heldOut"/>, if given),
    /// tokenized with the model's tokenizer.
    /// </summary>
    public (LlamaModel Model, IReadOnlyList<TrainingExample> Examples, IReadOnlyList<TrainingExample>? HeldOut) Load(
        ParseResult parse,
        string? heldOut = null
    )
    {
        var folder = parse.GetValue(Model)!;
        var (model, tokenizer) = LoadModel(folder, parse.GetValue(Threads));
        var examples = Read(parse.GetValue(Data)!);
        return (model, examples, heldOut is null ? null : Read(heldOut));

        IReadOnlyList<TrainingExample> Read(string path) =>
            TrainingData.Load(path, tokenizer, parse.GetValue(SequenceLength), model.Config.VocabSize);
    }
}
