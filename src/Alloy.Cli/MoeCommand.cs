using System.CommandLine;
using Alloy.Moe;
using Alloy.Runtime;
using Alloy.Runtime.Merging;
using Alloy.Runtime.Models;

namespace Alloy.Cli;

/// <summary>
/// <c>alloy moe</c>: mergekit-moe — a mixture of experts from dense models, read from mergekit-moe's config
/// unchanged.
/// </summary>
public static class MoeCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var config = new Argument<string>("CONFIG") { Description = "The mergekit-moe config (YAML)." };
        var output = new Argument<string>("OUT") { Description = "The folder to write the MoE model to." };
        var allowSame = new Option<bool>("--i-understand-this-is-not-useful-without-training")
        {
            Description = "Allow experts that are all the same model (only useful if you will train the model).",
        };
        var layout = new Option<string>("--mixtral-layout")
        {
            Description =
                "fused: transformers' current mlp.experts.gate_up_proj/down_proj; per-expert: the older "
                + "block_sparse_moe.experts.N.w1/w2/w3 that llama.cpp and older transformers read.",
            DefaultValueFactory = _ => "fused",
        };
        layout.AcceptOnlyFromAmong("fused", "per-expert");
        var seed = new Option<ulong>("--seed")
        {
            Description = "Seeds the random gates and noise_scale's noise.",
            DefaultValueFactory = _ => 0,
        };
        var shardSize = new Option<string>("--out-shard-size")
        {
            Description = "Largest output shard (e.g. 5B, 500M).",
            DefaultValueFactory = _ => "5B",
        };
        var threads = new Option<int>("--threads", "-j")
        {
            Description = "Threads for running the base model (hidden gate modes).",
            DefaultValueFactory = _ => Environment.ProcessorCount,
        };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace a non-empty output folder." };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "No progress bar." };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Stack traces with errors." };
        var command = new Command(
            "moe",
            "Build a mixture of experts from dense models (mergekit-moe): attention, norms and embeddings from "
                + "base_model, each expert's MLP from its model, routers from gate_mode (hidden, hidden_avg, "
                + "hidden_last, cheap_embed, random, uniform_random). Writes Mixtral, DeepSeek MoE or Qwen2-MoE as "
                + "mergekit chooses. Experts stream from their checkpoints, so memory does not grow with the model."
        )
        {
            config,
            output,
            allowSame,
            layout,
            seed,
            shardSize,
            threads,
            overwrite,
            quiet,
            verbose,
        };
        command.SetAction(parse => ErrorPolicy.Run(stderr, parse.GetValue(verbose), _ =>
            {
                var diagnostics = new Diagnostics { OnWarning = w => stderr.WriteLine($"warning: {w}") };
                var moe = MoeRecipe.ParseFile(parse.GetValue(config)!, diagnostics);
                int threadCount = parse.GetValue(threads);
                var options = new MoeOptions
                {
                    Seed = parse.GetValue(seed),
                    MixtralLayout =
                        parse.GetValue(layout) == "per-expert" ? MixtralLayout.PerExpert : MixtralLayout.Fused,
                    AllowAllSame = parse.GetValue(allowSame),
                    MaxShardBytes = Checkpoints.ByteSize.Parse(parse.GetValue(shardSize)!),
                    HiddenStates = (folder, tokenizer) =>
                        new PromptHiddenStates(
                            LlamaModel.Load(folder, new RuntimeOptions { Threads = threadCount }),
                            tokenizer
                        ),
                };
                var result = Progress.Run(!parse.GetValue(quiet), "tensors", bar =>
                    MoeBuilder.Build(
                        moe,
                        parse.GetValue(output)!,
                        options,
                        parse.GetValue(overwrite),
                        diagnostics,
                        bar is null
                            ? null
                            : (done, total) => bar.Update(new ProgressUpdate("tensors", done, total, "tensors"))
                    )
                );
                stdout.WriteLine(
                    $"wrote a {result.Architecture} MoE of {result.Experts} experts × {result.Layers} layers "
                        + $"({result.Tensors} tensors) to {parse.GetValue(output)}"
                );
                return ExitCodes.Success;
            }));
        return command;
    }
}
