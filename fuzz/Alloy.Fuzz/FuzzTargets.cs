using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Alloy.Architecture;
using Alloy.Checkpoints;
using Alloy.Planning;
using Alloy.Recipes;
using Alloy.Recipes.Yaml;
using Alloy.Synthetic;
using Alloy.Tensors;
using Alloy.Tokenizers;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Fuzz;

/// <summary>
/// One fuzz target per parser of bytes that come from outside: each hands the bytes to the parser's public entry (as
/// a file where the parser takes a path) and uses the result as a merge or an evaluation would. The contract: a target
/// returns, or fails with what the CLI reports as bad input in one line (<see cref="IsBadInput"/>); any other
/// exception, a hang or a crash is a finding. The fuzz program and the replay test in Alloy.Tests run this same code.
/// </summary>
public sealed class FuzzTargets : IDisposable
{
    public static readonly IReadOnlyList<string> Names =
    [
        "safetensors",
        "index",
        "config",
        "torch",
        "pickle",
        "recipe",
        "tokenizer",
        "lora",
    ];

    /// <summary>The model the folder targets put beside the fuzzed file; tiny, so a run costs little.</summary>
    /// <remarks>
    /// A property, not a field: under afl, instrumented Alloy code must not run before SharpFuzz has set up its shared
    /// memory, and a field would run TinyLlamaSpec's constructor when the program first names a target.
    /// </remarks>
    public static TinyLlamaSpec Model =>
        new()
        {
            VocabSize = ByteTokenizer.MinimumVocabSize,
            HiddenSize = 4,
            IntermediateSize = 8,
            Layers = 2,
            Heads = 2,
            KeyValueHeads = 1,
            TieEmbeddings = true,
            ShardBytes = 1024,
        };

    /// <summary>What the tokenizer target encodes: ASCII, digits, accents, CJK, an emoji, special tokens.</summary>
    public const string SampleText = "Hello, world! It's 2024:\tnaïve café 你好 🙂 <s>x</s> <|im_start|>  end\n";

    private readonly string _root = Directory.CreateTempSubdirectory("alloy-fuzz-").FullName;
    private readonly HashSet<string> _prepared = [];

    /// <summary>What Alloy.Cli's ErrorPolicy prints as a one-line error (exit code 1), not an internal error.</summary>
    public static bool IsBadInput(Exception e) => e is AlloyException or IOException or UnauthorizedAccessException;

    /// <summary>
    /// Runs one input through a target: null when it parsed, the exception when it was refused as bad input; any other
    /// exception escapes.
    /// </summary>
    public Exception? Run(string target, byte[] input)
    {
        try
        {
            Parse(target, input);
            return null;
        }
        catch (Exception e) when (IsBadInput(e))
        {
            return e;
        }
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException) { }
    }

    private void Parse(string target, byte[] input)
    {
        switch (target)
        {
            case "safetensors":
                OpenCheckpoint(Write(target, "model.safetensors", input));
                break;
            case "index": // the folder is opened, so its index is found the way a model's is
                OpenCheckpoint(Path.GetDirectoryName(Write(target, Checkpoint.IndexFileName, input))!);
                break;
            case "config":
                Config(Path.GetDirectoryName(Write(target, Checkpoint.ConfigFileName, input))!);
                break;
            case "torch":
                OpenCheckpoint(Write(target, "pytorch_model.bin", input));
                break;
            case "pickle":
                OpenCheckpoint(Write(target, "pytorch_model.bin", TorchZip(input)));
                break;
            case "recipe":
                Recipe(input);
                break;
            case "tokenizer":
                Tokenizer(Write(target, ModelTokenizer.TokenizerFile, input));
                break;
            case "lora":
                Lora(Write(target, "adapter_config.json", input));
                break;
            default:
                throw new ArgumentException($"unknown fuzz target '{target}' (targets: {string.Join(", ", Names)})");
        }
    }

    /// <summary>Writes the input as <paramref name="name"/> in the target's folder, beside its fixed files.</summary>
    private string Write(string target, string name, byte[] input)
    {
        var folder = Path.Combine(_root, target);
        if (_prepared.Add(target))
            Prepare(target, folder);
        var path = Path.Combine(folder, name);
        File.WriteAllBytes(path, input);
        return path;
    }

    private static void Prepare(string target, string folder)
    {
        Directory.CreateDirectory(folder);
        switch (target)
        {
            case "index": // the shards the fuzzed index points into
                TinyLlama.Write(folder, Model);
                break;
            case "config": // a single-file model whose config.json is fuzzed
                TinyLlama.Write(folder, Model with { ShardBytes = 0 });
                break;
            case "lora":
                WriteAdapterWeights(folder);
                break;
        }
    }

    /// <summary>Opens a model folder or file as `alloy merge` does, finds its layers and reads every tensor.</summary>
    private static void OpenCheckpoint(string path)
    {
        using var checkpoint = Checkpoint.Open(path);
        Use(checkpoint);
    }

    private static void Use(Checkpoint checkpoint)
    {
        ModelLayout.Analyze(checkpoint);
        foreach (var tensor in checkpoint.Tensors)
            Read(tensor);
    }

    private static float[] Read(StoredTensor tensor)
    {
        var values = new float[tensor.Info.ElementCount];
        TensorConvert.ToFloat32(tensor.Bytes(0, checked((int)tensor.Info.ByteLength)), tensor.Info.DType, values);
        return values;
    }

    /// <summary>Opens the model and reads config.json's vocabulary size, as a merge's tokenizer plan does.</summary>
    private static void Config(string folder)
    {
        using var checkpoint = Checkpoint.Open(folder);
        Use(checkpoint);
        ModelTokenizer.Load("fuzz", folder, checkpoint.Config, readVocabulary: false);
    }

    /// <summary>A torch.save zip around the fuzzed data.pkl, with storages "0" to "15" to point at.</summary>
    private static byte[] TorchZip(byte[] pickle)
    {
        using var stream = new MemoryStream();
        using (var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true))
        {
            void Add(string name, ReadOnlySpan<byte> bytes)
            {
                using var entry = zip.CreateEntry(name, CompressionLevel.NoCompression).Open();
                entry.Write(bytes);
            }
            Add("archive/data.pkl", pickle);
            Add("archive/byteorder", "little"u8);
            for (int key = 0; key < 16; key++)
                Add($"archive/data/{key}", new byte[256]);
            Add("archive/version", "3\n"u8);
        }
        return stream.ToArray();
    }

    /// <summary>
    /// Parses as `alloy multi` (several documents) and `alloy merge` (one) do; checks each recipe's parameters against
    /// its method, as a merge does before it looks for models, and writes it back as the planner does.
    /// </summary>
    private static void Recipe(byte[] input)
    {
        // Decoded as File.ReadAllText decodes a config file.
        string text = new StreamReader(new MemoryStream(input), Encoding.UTF8, true).ReadToEnd();
        foreach (var recipe in RecipeParser.ParseDocuments(text, "fuzz.yml", Diagnostics.Silent()))
        {
            ParameterCheck.Check(recipe, Planner.FindMethod(recipe), Diagnostics.Silent());
            string written = RecipeWriter.Write(recipe);
            try
            {
                RecipeParser.Parse(written, "written.yml", Diagnostics.Silent());
            }
            catch (AlloyException e)
            {
                // RecipeWriter promises YAML the parser reads back; refusing it is a bug, not bad input.
                throw new InvalidOperationException($"RecipeWriter wrote YAML the parser refuses:\n{written}", e);
            }
        }
        RecipeParser.Parse(text, "fuzz.yml", Diagnostics.Silent());
    }

    /// <summary>Reads and writes back as a merge does; loads as `alloy eval` does, then encodes and decodes.</summary>
    private static void Tokenizer(string path)
    {
        var document = TokenizerDocument.Load(path);
        using (var writer = new Utf8JsonWriter(Stream.Null, TokenizerDocument.WriterOptions))
            document.WriteTo(writer);
        var tokenizer = TextTokenizer.Load(Path.GetDirectoryName(path)!);
        var ids = tokenizer.Encode(SampleText);
        tokenizer.Decode(ids);
        tokenizer.Decode(ids, skipSpecialTokens: true);
        tokenizer.Decode(Enumerable.Range(0, Math.Min(tokenizer.IdSpan, 1024)).ToArray());
    }

    private const string AdapterPrefix = "base_model.model.";

    /// <summary>The base model's tensors the adapter fixture targets: a linear layer, an embedding, a norm.</summary>
    private static readonly (string Name, long[] Shape)[] AdaptedTensors =
    [
        ("model.layers.0.self_attn.q_proj.weight", [4, 4]),
        ("model.embed_tokens.weight", [260, 4]),
        ("model.norm.weight", [4]),
    ];

    private static void WriteAdapterWeights(string folder)
    {
        const string Q = AdapterPrefix + "model.layers.0.self_attn.q_proj.";
        const string Embed = AdapterPrefix + "model.embed_tokens.";
        TensorInfo[] tensors =
        [
            new(Q + "lora_A.weight", DType.F32, [2, 4]),
            new(Q + "lora_B.weight", DType.F32, [4, 2]),
            new(Embed + "lora_embedding_A", DType.F32, [2, 260]),
            new(Embed + "lora_embedding_B", DType.F32, [4, 2]),
            new(AdapterPrefix + "model.norm.modules_to_save.default.weight", DType.F32, [4]),
        ];
        using var writer = new ShardedWriter(folder, ShardPlan.SingleFile(tensors, "adapter_model.safetensors"));
        foreach (var tensor in tensors)
        {
            var values = Enumerable.Range(0, (int)tensor.ElementCount).Select(i => 0.01f * (i % 7)).ToArray();
            var bytes = new byte[tensor.ByteLength];
            TensorConvert.FromFloat32(values, tensor.DType, bytes);
            writer.Append(tensor.Name, bytes);
        }
        writer.Complete();
    }

    /// <summary>Opens the adapter and applies it to each base tensor, as a model+lora reference is read.</summary>
    private static void Lora(string path)
    {
        using var adapter = LoraAdapter.Open(Path.GetDirectoryName(path)!);
        foreach (var (name, shape) in AdaptedTensors)
        {
            if (adapter.Replacement(name) is { } replacement)
                Read(replacement);
            if (adapter.DeltaFor(name, shape) is { } delta)
                delta.AddRows(0, 2, (int)shape[1], new float[2 * shape[1]]);
        }
        _ = adapter.TensorNames.Count();
    }
}
