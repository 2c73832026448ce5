using System.IO.Compression;
using Alloy.Checkpoints;
using Alloy.Synthetic;
using Alloy.Tensors;

namespace Alloy.Fuzz;

/// <summary>
/// Writes the seeds of fuzz/corpus that come from the project itself: files of its tiny-model generator, the
/// torch.save fixtures of tests/fixtures/torch (and their pickles) and the example configs. Their names start with
/// "gen-", "fixture-" or "example-"; hand-written seeds sit beside them under other names.
/// </summary>
internal static class Seeds
{
    private static readonly string[] TorchFixtures =
    [
        "state.bin",
        "state-zip64.bin",
        "state-protocol4.bin",
        "state-parameters.pt",
        "state-wrapped.pt",
        "float8.bin",
        "refused/compressed.bin",
        "refused/non-contiguous.bin",
        "refused/rebuild-from-type.bin",
        "refused/unknown-opcode.bin",
    ];

    public static int Write(string repository)
    {
        string corpus = Path.Combine(repository, "fuzz", "corpus");
        string work = Directory.CreateTempSubdirectory("alloy-fuzz-seeds-").FullName;
        try
        {
            void Save(string target, string name, byte[] bytes)
            {
                Directory.CreateDirectory(Path.Combine(corpus, target));
                File.WriteAllBytes(Path.Combine(corpus, target, name), bytes);
            }

            string single = Path.Combine(work, "single");
            TinyLlama.Write(single, FuzzTargets.Model with { ShardBytes = 0 });
            Save(
                "safetensors",
                "gen-tiny-llama.safetensors",
                File.ReadAllBytes(Path.Combine(single, "model.safetensors"))
            );
            Save("safetensors", "gen-every-dtype.safetensors", EveryDType(Path.Combine(work, "dtypes")));
            Save("config", "gen-tiny-llama.json", File.ReadAllBytes(Path.Combine(single, "config.json")));
            Save("tokenizer", "gen-byte-level.json", File.ReadAllBytes(Path.Combine(single, "tokenizer.json")));

            string sharded = Path.Combine(work, "sharded");
            TinyLlama.Write(sharded, FuzzTargets.Model);
            Save("index", "gen-tiny-llama.json", File.ReadAllBytes(Path.Combine(sharded, Checkpoint.IndexFileName)));

            string extras = Directory.CreateDirectory(Path.Combine(work, "extras")).FullName;
            ByteTokenizer.Write(
                extras,
                ByteTokenizer.MinimumVocabSize + 8,
                new TokenizerExtras
                {
                    Merges = ["h e", "l l", "he ll", "Ġ w"],
                    AddedTokens = ["<|im_start|>", "<|im_end|>"],
                }
            );
            Save("tokenizer", "gen-merges-and-added.json", File.ReadAllBytes(Path.Combine(extras, "tokenizer.json")));

            string fixtures = Path.Combine(repository, "tests", "fixtures", "torch");
            var pickles = new HashSet<string>();
            foreach (var fixture in TorchFixtures)
            {
                var bytes = File.ReadAllBytes(Path.Combine(fixtures, fixture));
                string name = "fixture-" + fixture.Replace('/', '-');
                Save("torch", name, bytes);
                using var zip = new ZipArchive(new MemoryStream(bytes));
                using var pickle = new MemoryStream();
                zip.Entries.Single(e => e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal))
                    .Open()
                    .CopyTo(pickle);
                if (pickles.Add(Convert.ToBase64String(pickle.ToArray()))) // state-zip64.bin repeats state.bin's
                    Save("pickle", Path.ChangeExtension(name, ".pkl"), pickle.ToArray());
            }
            foreach (var example in Directory.GetFiles(Path.Combine(repository, "examples"), "*.yml"))
                Save("recipe", "example-" + Path.GetFileName(example), File.ReadAllBytes(example));
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
        return 0;
    }

    /// <summary>A safetensors file: a small tensor of every dtype, a scalar, an empty tensor, metadata.</summary>
    private static byte[] EveryDType(string folder)
    {
        var tensors = Enum.GetValues<DType>()
            .Select(d => new TensorInfo(d.SafetensorsName().ToLowerInvariant(), d, [2, 3]))
            .Append(new TensorInfo("scalar", DType.F32, []))
            .Append(new TensorInfo("empty", DType.BF16, [0, 4]))
            .ToList();
        var metadata = new Dictionary<string, string> { ["source"] = "Alloy fuzz seed" };
        using (var writer = new ShardedWriter(folder, ShardPlan.SingleFile(tensors, "x.safetensors"), null, metadata))
        {
            foreach (var tensor in tensors)
                writer.Append(tensor.Name, Enumerable.Range(1, (int)tensor.ByteLength).Select(i => (byte)i).ToArray());
            writer.Complete();
        }
        return File.ReadAllBytes(Path.Combine(folder, "x.safetensors"));
    }
}
