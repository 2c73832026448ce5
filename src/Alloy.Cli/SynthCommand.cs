using System.CommandLine;
using Alloy.Synthetic;
using Alloy.Tensors;

namespace Alloy.Cli;

/// <summary>
/// <c>alloy synth OUT</c>: writes deterministic tiny Llama-style models (a base and fine-tunes) to try merges on.
/// </summary>
public static class SynthCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var defaults = new TinyLlamaSpec();
        var output = new Argument<string>("out")
        {
            Description = "Folder to create; models go to OUT/base and OUT/finetune-1 … OUT/finetune-N.",
        };
        var fineTunes = new Option<int>("--fine-tunes")
        {
            Description = "Number of fine-tunes of the base.",
            DefaultValueFactory = _ => 3,
        };
        var layers = new Option<int>("--layers")
        {
            Description = "Decoder layers.",
            DefaultValueFactory = _ => defaults.Layers,
        };
        var hidden = new Option<int>("--hidden")
        {
            Description = "Hidden size.",
            DefaultValueFactory = _ => defaults.HiddenSize,
        };
        var intermediate = new Option<int>("--intermediate")
        {
            Description = "MLP intermediate size.",
            DefaultValueFactory = _ => defaults.IntermediateSize,
        };
        var vocab = new Option<int>("--vocab")
        {
            Description = $"Vocabulary size (≥ {ByteTokenizer.MinimumVocabSize}).",
            DefaultValueFactory = _ => defaults.VocabSize,
        };
        var heads = new Option<int>("--heads")
        {
            Description = "Attention heads.",
            DefaultValueFactory = _ => defaults.Heads,
        };
        var kvHeads = new Option<int>("--kv-heads")
        {
            Description = "Key/value heads.",
            DefaultValueFactory = _ => defaults.KeyValueHeads,
        };
        var dtype = new Option<string>("--dtype")
        {
            Description = "Stored dtype: bfloat16, float16 or float32.",
            DefaultValueFactory = _ => "bfloat16",
        };
        var tied = new Option<bool>("--tied")
        {
            Description = "Tie lm_head to the input embedding (no lm_head tensor).",
        };
        var shardSize = new Option<string>("--shard-size")
        {
            Description = "Bytes per shard (K/M/B suffixes); 0 writes one file.",
            DefaultValueFactory = _ => "0",
        };
        var seed = new Option<ulong>("--seed")
        {
            Description = "Seed of the base weights.",
            DefaultValueFactory = _ => defaults.Seed,
        };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "No progress bar." };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Stack traces with errors." };

        var command = new Command(
            "synth",
            "Write deterministic tiny Llama-style models (a base and fine-tunes with conflicting task vectors) for "
                + "trying and testing merges."
        )
        {
            output,
            fineTunes,
            layers,
            hidden,
            intermediate,
            vocab,
            heads,
            kvHeads,
            dtype,
            tied,
            shardSize,
            seed,
            quiet,
            verbose,
        };
        command.SetAction(parse => ErrorPolicy.Run(stderr, parse.GetValue(verbose), _ =>
            {
                var dtypeName = parse.GetValue(dtype)!;
                if (
                    !DTypes.TryParseTorch(dtypeName, out var storedType)
                    || storedType is not (DType.BF16 or DType.F16 or DType.F32)
                )
                    throw new AlloyException($"--dtype: '{dtypeName}' is not one of bfloat16, float16, float32");
                var spec = new TinyLlamaSpec
                {
                    Layers = parse.GetValue(layers),
                    HiddenSize = parse.GetValue(hidden),
                    IntermediateSize = parse.GetValue(intermediate),
                    VocabSize = parse.GetValue(vocab),
                    Heads = parse.GetValue(heads),
                    KeyValueHeads = parse.GetValue(kvHeads),
                    DType = storedType,
                    TieEmbeddings = parse.GetValue(tied),
                    Seed = parse.GetValue(seed),
                    ShardBytes = Checkpoints.ByteSize.Parse(parse.GetValue(shardSize)!),
                };
                Validate(spec, parse.GetValue(fineTunes));
                var root = parse.GetValue(output)!;
                if (Directory.Exists(root) && Directory.EnumerateFileSystemEntries(root).Any())
                    throw new AlloyException($"output folder '{root}' is not empty");
                var folders = Progress.Run(!parse.GetValue(quiet), "generating", bar =>
                    TinyLlama.WriteFamily(
                        root,
                        spec,
                        parse.GetValue(fineTunes),
                        bar is null
                            ? null
                            : (model, done, total) =>
                                bar.Update(new ProgressUpdate("generating", done, total, ProgressUpdate.Bytes, model))
                    )
                );
                foreach (var folder in folders)
                    stdout.WriteLine($"wrote {folder}");
                return ExitCodes.Success;
            }));
        return command;
    }

    private static void Validate(TinyLlamaSpec spec, int fineTunes)
    {
        if (fineTunes < 0)
            throw new AlloyException("--fine-tunes must be 0 or more");
        if (
            spec.Layers < 1
            || spec.HiddenSize < 1
            || spec.IntermediateSize < 1
            || spec.Heads < 1
            || spec.KeyValueHeads < 1
        )
            throw new AlloyException("--layers, --hidden, --intermediate, --heads and --kv-heads must be positive");
        if (spec.HiddenSize % spec.Heads != 0 || spec.Heads % spec.KeyValueHeads != 0)
            throw new AlloyException("--hidden must be a multiple of --heads, and --heads a multiple of --kv-heads");
        if (spec.VocabSize < ByteTokenizer.MinimumVocabSize)
            throw new AlloyException(
                $"--vocab must be at least {ByteTokenizer.MinimumVocabSize} (256 bytes and 4 special tokens)"
            );
    }
}
