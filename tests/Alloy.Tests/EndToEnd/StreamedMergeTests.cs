using Alloy.Execution;
using Alloy.Methods;
using Alloy.Planning;
using Alloy.Recipes;
using Alloy.Synthetic;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>bf16 models whose largest tensors span several statistics units, so streaming has work to split.</summary>
public sealed class StreamingFamily : IDisposable
{
    private readonly TempFolder _folder = new();

    public StreamingFamily()
    {
        // Embedding and head: 600 × 128 = 76,800 entries, more than one statistics unit; rows of 128 entries.
        var spec = new TinyLlamaSpec
        {
            DType = DType.BF16,
            Layers = 2,
            VocabSize = 600,
            HiddenSize = 128,
            IntermediateSize = 192,
            Heads = 4,
            KeyValueHeads = 2,
        };
        var folders = TinyLlama.WriteFamily(_folder.Path, spec, fineTunes: 3);
        Base = folders[0];
        FineTunes = folders.Skip(1).ToList();
    }

    public string Base { get; }
    public IReadOnlyList<string> FineTunes { get; }

    public void Dispose() => _folder.Dispose();
}

/// <summary>
/// Streamed methods (statistics passes over the inputs, then chunks) give byte-for-byte the output of merging every
/// tensor whole, at chunk sizes that split rows or hold single rows, and at any thread count.
/// </summary>
public sealed class StreamedMergeTests : IClassFixture<StreamingFamily>, IDisposable
{
    private readonly StreamingFamily _models;
    private readonly TempFolder _work = new();

    public StreamedMergeTests(StreamingFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    /// <summary>(chunk elements, threads): tiny chunks, chunks that split rows of 128, and the default.</summary>
    private static readonly (int Chunk, int Threads)[] Runs = [(97, 1), (4099, 3), (1 << 20, 2)];

    [Theory]
    [InlineData("ties", "{weight: 1.0, density: 0.35}", "{}")]
    [InlineData("ties", "{weight: 0.8, density: 0.3}", "{rescale: true}")]
    [InlineData("ties", "{weight: 1.0, density: 0.4}", "{model_wide_trim: true, rescale: true}")]
    [InlineData("dare_ties", "{weight: 1.0, density: 0.5}", "{}")]
    [InlineData("dare_linear", "{weight: 0.7, density: 0.4}", "{}")]
    [InlineData("dare_linear", "{weight: 0.7, density: 0.4}", "{rescale: false}")]
    [InlineData("breadcrumbs", "{weight: 1.0, density: 0.5, gamma: 0.05}", "{}")]
    [InlineData("breadcrumbs_ties", "{weight: 1.0, density: 0.6, gamma: 0.1}", "{rescale: true}")]
    [InlineData("della", "{weight: 1.0, density: 0.5, epsilon: 0.1}", "{}")]
    [InlineData("della_linear", "{weight: 0.6, density: 0.4, epsilon: 0.2}", "{}")]
    [InlineData("consensus_ties", "{weight: 1.0, density: 0.5}", "{}")]
    [InlineData("model_stock", "{}", "{}")]
    [InlineData("model_stock", "{}", "{filter_wise: true}")]
    [InlineData("multislerp", "{weight: 1.0}", "{}")]
    [InlineData("ramplus_tl", "{}", "{}")]
    public void A_streamed_merge_equals_the_whole_tensor_merge_at_any_chunk_size_and_thread_count(
        string method,
        string perModel,
        string globals
    )
    {
        string models = string.Join("\n", _models.FineTunes.Select(m => $"  - model: {m}\n    parameters: {perModel}"));
        var config = _work.Write(
            $"{method}.yml",
            $"merge_method: {method}\nbase_model: {_models.Base}\nmodels:\n{models}\nparameters: {globals}\nout_dtype: "
                + $"bfloat16\n"
        );
        AssertStreamedEqualsWhole(config);
    }

    [Theory]
    [InlineData("slerp", "{t: 0.3}")]
    [InlineData("nuslerp", "{nuslerp_flatten: true}")]
    [InlineData("nuslerp", "{nuslerp_flatten: false}")]
    public void Two_model_interpolations_stream_too(string method, string globals)
    {
        string models =
            method == "slerp"
                ? $"  - model: {_models.FineTunes[0]}"
                : string.Join(
                    "\n",
                    _models.FineTunes.Take(2).Select((m, i) => $"  - model: {m}\n    parameters: {{weight: {i + 1}}}")
                );
        var config = _work.Write(
            $"{method}.yml",
            $"merge_method: {method}\nbase_model: {_models.Base}\nmodels:\n{models}\nparameters: {globals}\n"
        );
        AssertStreamedEqualsWhole(config);
    }

    [Fact]
    public void Streamed_methods_split_large_tensors_and_whole_tensor_methods_do_not()
    {
        var recipe = RecipeParser.ParseFile(
            _work.Write(
                "ties.yml",
                $"""
                merge_method: ties
                base_model: {_models.Base}
                models:
                  - model: {_models.FineTunes[0]}
                    parameters: {"{"}weight: 1.0, density: 0.3{"}"}
                """
            ),
            new Diagnostics()
        );
        using var models = ModelSet.Open(recipe, new Diagnostics());
        var plan = Planner.Create(recipe, models, new PlanOptions(), new Diagnostics());
        var embedding = plan.Jobs.Single(j => j.Output.Name == "model.embed_tokens.weight");
        var chunking = embedding.Method!.Chunking(embedding.Info!, embedding.Output.Shape)!;
        Assert.Equal([1L], chunking.Cuts.Select(c => (long)c.Keep.Count));
        Assert.Equal((long)(0.3 * embedding.Output.ElementCount), chunking.Cuts[0].Keep[0]);
        // Nothing is refused or warned about at a budget far below one tensor: ties streams.
        Assert.Empty(MergeExecutor.OversizedWholeTensors(plan, new ExecutionOptions { MemoryLimitBytes = 1024 }));
        Assert.Null(MethodRegistry.Find("karcher")!.Chunking(embedding.Info!, embedding.Output.Shape));
    }

    /// <summary>
    /// Merges with every tensor whole (one thread), then at each of <see cref="Runs"/>, and compares the bytes.
    /// </summary>
    private void AssertStreamedEqualsWhole(string config)
    {
        var recipe = RecipeParser.ParseFile(config, new Diagnostics());
        Merger.Run(
            recipe,
            _work["whole"],
            new MergeOptions
            {
                Execution = new() { Threads = 1, ChunkElements = 1 << 30 },
            },
            new Diagnostics()
        );
        var whole = File.ReadAllBytes(_work["whole/model.safetensors"]);
        foreach (var (chunk, threads) in Runs)
        {
            string folder = _work[$"streamed-{chunk}-{threads}"];
            Merger.Run(
                recipe,
                folder,
                new MergeOptions
                {
                    Execution = new() { Threads = threads, ChunkElements = chunk },
                },
                new Diagnostics()
            );
            Assert.True(
                whole.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(folder, "model.safetensors"))),
                $"chunks of {chunk} on {threads} threads differ from the whole-tensor merge"
            );
        }
        // The merge did something: the output is not the base model.
        Assert.NotEqual(
            TestCheckpoints.ReadAll(_models.Base)["model.embed_tokens.weight"],
            TestCheckpoints.ReadAll(_work["whole"])["model.embed_tokens.weight"]
        );
    }
}
