using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Alloy.Tensors;

namespace Alloy.Checkpoints;

/// <summary>
/// A low-rank update of one stored matrix, <c>ΔW = Scale · L · R</c> with L [rows, rank] and R [rank, cols] in W's own
/// layout. PEFT stores <c>lora_B</c> [out, r] and <c>lora_A</c> [r, in]: for ordinary linear layers L = B and R = A;
/// for embeddings and fan-in-fan-out (GPT-2 Conv1D) weights, ΔW is the transpose, so L = Aᵀ and R = Bᵀ.
/// </summary>
public sealed record LoraDelta(StoredTensor A, StoredTensor B, double Scale, bool Transposed)
{
    public int Rank => (int)A.Info.Shape[0];

    /// <summary>
    /// Adds rows [firstRow, firstRow + rowCount) of ΔW to <paramref name="rows"/> (row-major, <paramref name="cols"/>
    /// wide).
    /// </summary>
    public void AddRows(long firstRow, int rowCount, int cols, Span<float> rows)
    {
        int rank = Rank;
        var right = (Transposed ? B : A).ReadFloat32(); // A [r, cols] or B [cols, r]
        var left = (Transposed ? A : B).ReadFloat32(); // B [rows, r] or A [r, rows]
        long leftRows = Transposed ? A.Info.Shape[1] : B.Info.Shape[0];
        Span<float> rightRow = cols <= 4096 ? stackalloc float[cols] : new float[cols];
        for (int k = 0; k < rank; k++)
        {
            for (int j = 0; j < cols; j++)
                rightRow[j] = Transposed ? right[j * rank + k] : right[k * cols + j];
            for (int i = 0; i < rowCount; i++)
            {
                long row = firstRow + i;
                float l = Transposed ? left[k * leftRows + row] : left[row * rank + k];
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(
                    rightRow,
                    (float)(Scale * l),
                    rows.Slice(i * cols, cols),
                    rows.Slice(i * cols, cols)
                );
            }
        }
    }
}

/// <summary>
/// A bias update <c>Δb = Scale · lora_B.bias</c> (PEFT's <c>lora_bias</c>: lora_B's bias is added with the module's
/// scale, as PEFT's merge does; mergekit-extract-lora stores a fine-tune's bias change there).
/// </summary>
public sealed record LoraBias(StoredTensor Values, double Scale)
{
    /// <summary>Adds elements [start, start + destination.Length) of Δb to <paramref name="destination"/>.</summary>
    public void Add(long start, Span<float> destination)
    {
        var update = new float[destination.Length];
        Values.ReadFloat32(start, update);
        for (int i = 0; i < destination.Length; i++)
            destination[i] += (float)(Scale * update[i]);
    }
}

/// <summary>
/// A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors), applied to its base model's tensors
/// while they are read, so a <c>model+lora</c> reference never needs a merged copy on disk.
/// </summary>
public sealed partial class LoraAdapter : IDisposable
{
    private const string Prefix = "base_model.model.";
    private readonly Checkpoint _weights;
    private readonly double _alpha;
    private readonly bool _rsLora;
    private readonly bool _fanInFanOut;
    private readonly IReadOnlyList<(Regex Pattern, double Alpha)> _alphaPattern;

    private LoraAdapter(
        string path,
        Checkpoint weights,
        double alpha,
        bool rsLora,
        bool fanInFanOut,
        IReadOnlyList<(Regex, double)> alphaPattern
    )
    {
        Path = path;
        _weights = weights;
        _alpha = alpha;
        _rsLora = rsLora;
        _fanInFanOut = fanInFanOut;
        _alphaPattern = alphaPattern;
    }

    public string Path { get; }

    public static LoraAdapter Open(string folder)
    {
        var configPath = System.IO.Path.Combine(folder, "adapter_config.json");
        var weightsPath = System.IO.Path.Combine(folder, "adapter_model.safetensors");
        if (!File.Exists(configPath))
            throw new AlloyException($"{folder}: not a PEFT LoRA adapter (no adapter_config.json)");
        if (!File.Exists(weightsPath))
            throw new AlloyException(
                File.Exists(System.IO.Path.Combine(folder, "adapter_model.bin"))
                    ? $"{folder}: adapter_model.bin adapters are not read; save the adapter with safe_serialization "
                        + $"(adapter_model.safetensors)"
                    : $"{folder}: no adapter_model.safetensors"
            );
        var config = StrictJson.ReadObjectFile(configPath);
        var type = config.StringField("peft_type", configPath);
        if (type is not null && type != "LORA")
            throw new AlloyException($"{configPath}: peft_type is {type}; only LORA adapters can be applied");

        double alpha = config.NumberField("lora_alpha", configPath) ?? config.NumberField("r", configPath) ?? 8;
        var patterns = Patterns(config, "alpha_pattern", configPath);
        // Each module's rank is read from its stored lora_A, so rank_pattern is only checked, as PEFT would read it.
        Patterns(config, "rank_pattern", configPath);
        return new LoraAdapter(
            folder,
            Checkpoint.Open(weightsPath),
            alpha,
            config.BoolField("use_rslora", configPath) == true,
            config.BoolField("fan_in_fan_out", configPath) == true,
            patterns
        );
    }

    /// <summary>
    /// The adapter's replacement for a whole tensor (modules_to_save, trained biases), if it has one.
    /// </summary>
    public StoredTensor? Replacement(string tensorName)
    {
        var module = ModuleOf(tensorName, out var leaf);
        return _weights.Find(Prefix + tensorName)
            ?? _weights.Find($"{Prefix}{module}.modules_to_save.default.{leaf}")
            ?? _weights.Find($"{Prefix}{module}.modules_to_save.{leaf}");
    }

    /// <summary>
    /// The bias update of a module (<c>lora_B.bias</c>), if the adapter has one. PEFT applies it only when the config
    /// says <c>lora_bias: true</c>; here it is applied whenever present, because mergekit-extract-lora stores it
    /// without setting that flag, and the file holding it means it is part of the update.
    /// </summary>
    public LoraBias? BiasFor(string tensorName, long[] shape)
    {
        var module = ModuleOf(tensorName, out var leaf);
        if (leaf != "bias" || _weights.Find($"{Prefix}{module}.lora_B.bias") is not { } bias)
            return null;
        var a = _weights.Find($"{Prefix}{module}.lora_A.weight");
        if (a is null || !bias.Info.Shape.AsSpan().SequenceEqual(shape))
            throw new AlloyException(
                $"{Path}: '{bias.Name}' is [{string.Join(", ", bias.Info.Shape)}]"
                    + (
                        a is null
                            ? " without a lora_A.weight"
                            : $", which does not fit '{tensorName}' [{string.Join(", ", shape)}]"
                    )
            );
        return new LoraBias(bias, ScaleOf(module, a.Info.Shape[0]));
    }

    /// <summary>The low-rank update of a weight matrix, if the adapter targets its module.</summary>
    public LoraDelta? DeltaFor(string tensorName, long[] shape)
    {
        var module = ModuleOf(tensorName, out var leaf);
        if (leaf != "weight" || shape.Length != 2)
            return null;
        var (a, b, embedding) = (
            _weights.Find($"{Prefix}{module}.lora_A.weight"),
            _weights.Find($"{Prefix}{module}.lora_B.weight"),
            false
        );
        if (a is null || b is null)
            (a, b, embedding) = (
                _weights.Find($"{Prefix}{module}.lora_embedding_A"),
                _weights.Find($"{Prefix}{module}.lora_embedding_B"),
                true
            );
        if (a is null || b is null)
            return null;

        if (a.Info.Shape.Length != 2 || b.Info.Shape.Length != 2)
            throw new AlloyException(
                $"{Path}: the LoRA update of '{tensorName}' has lora_A [{string.Join(", ", a.Info.Shape)}] and "
                    + $"lora_B [{string.Join(", ", b.Info.Shape)}]; both must be matrices"
            );
        bool transposed = embedding || _fanInFanOut;
        long rank = a.Info.Shape[0];
        long rows = transposed ? a.Info.Shape[1] : b.Info.Shape[0];
        long cols = transposed ? b.Info.Shape[0] : a.Info.Shape[1];
        if (b.Info.Shape[1] != rank || rows != shape[0] || cols != shape[1])
            throw new AlloyException(
                $"{Path}: the LoRA update of '{tensorName}' has lora_A [{string.Join(", ", a.Info.Shape)}] and "
                    + $"lora_B [{string.Join(", ", b.Info.Shape)}], which do not fit its shape "
                    + $"[{string.Join(", ", shape)}]; is the adapter for this model?"
            );
        double scale = ScaleOf(module, rank);
        return new LoraDelta(a, b, scale, transposed);
    }

    /// <summary>
    /// Every module the adapter updates by a low-rank product (its weight's name and update), in file order; the shape
    /// each update fits is read from its own factors.
    /// </summary>
    public IReadOnlyList<(string Weight, LoraDelta Delta)> Updates()
    {
        var updates = new List<(string, LoraDelta)>();
        foreach (var a in _weights.Tensors)
        {
            string name = a.Name;
            string? module =
                name.EndsWith(".lora_A.weight", StringComparison.Ordinal) ? name[..^".lora_A.weight".Length]
                : name.EndsWith(".lora_embedding_A", StringComparison.Ordinal) ? name[..^".lora_embedding_A".Length]
                : null;
            if (module is null || !module.StartsWith(Prefix, StringComparison.Ordinal))
                continue;
            string weight = module[Prefix.Length..] + ".weight";
            bool embedding = name.EndsWith(".lora_embedding_A", StringComparison.Ordinal);
            bool transposed = embedding || _fanInFanOut;
            var b = _weights.Find(module + (embedding ? ".lora_embedding_B" : ".lora_B.weight"));
            if (b is null || a.Info.Shape.Length != 2 || b.Info.Shape.Length != 2)
                throw new AlloyException($"{Path}: '{name}' has no matching lora_B matrix");
            long[] shape = transposed ? [a.Info.Shape[1], b.Info.Shape[0]] : [b.Info.Shape[0], a.Info.Shape[1]];
            updates.Add((weight, DeltaFor(weight, shape)!));
        }
        return updates;
    }

    /// <summary>α/r (or α/√r with rsLoRA), α from alpha_pattern when a key matches the module.</summary>
    private double ScaleOf(string module, long rank)
    {
        double alpha;
        try
        {
            alpha = _alphaPattern.FirstOrDefault(p => p.Pattern.IsMatch(module)) is { Pattern: not null } match
                ? match.Alpha
                : _alpha;
        }
        catch (RegexMatchTimeoutException e)
        {
            throw new AlloyException(
                $"{Path}: alpha_pattern key '{e.Pattern}' takes over {e.MatchTimeout.TotalSeconds:0} s to match "
                    + $"'{module}'; simplify the pattern",
                e
            );
        }
        return _rsLora ? alpha / Math.Sqrt(rank) : alpha / rank;
    }

    /// <summary>Adapter tensors no model tensor used: a sign that the adapter belongs to another model.</summary>
    public IEnumerable<string> TensorNames => _weights.Tensors.Select(t => t.Name);

    /// <summary>The stored tensors, under the adapter file's own names.</summary>
    public IReadOnlyList<StoredTensor> Tensors => _weights.Tensors;

    /// <summary>Whether lora_A/lora_B update transposed (GPT-2 Conv1D) weights.</summary>
    public bool FanInFanOut => _fanInFanOut;

    public void Dispose() => _weights.Dispose();

    private static string ModuleOf(string tensorName, out string leaf)
    {
        int dot = tensorName.LastIndexOf('.');
        leaf = dot < 0 ? tensorName : tensorName[(dot + 1)..];
        return dot < 0 ? "" : tensorName[..dot];
    }

    /// <summary>
    /// A {pattern: number} setting; PEFT matches each key as a regular expression against the end of a module's
    /// dotted name.
    /// </summary>
    private static List<(Regex Pattern, double Value)> Patterns(JsonObject config, string key, string where)
    {
        var patterns = new List<(Regex, double)>();
        foreach (var (pattern, value) in config.ObjectField(key, where) ?? [])
        {
            Regex regex;
            try
            {
                // A pattern that backtracks without end must not hang the merge: one second per module name.
                regex = new Regex($"(^|\\.)({pattern})$", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
            }
            catch (ArgumentException e)
            {
                throw new AlloyException(
                    $"{where}: {key} key '{pattern}' is not a valid regular expression: {e.Message}",
                    e
                );
            }
            double number =
                value is JsonValue v && v.TryGetValue(out double d) && double.IsFinite(d)
                    ? d
                    : throw new AlloyException(
                        $"{where}: {key} '{pattern}' must be a number, not {StrictJson.Shorten(value)}"
                    );
            patterns.Add((regex, number));
        }
        return patterns;
    }
}
