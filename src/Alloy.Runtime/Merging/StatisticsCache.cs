using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Alloy.Checkpoints;
using Alloy.Methods;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Runtime.Merging;

/// <summary>
/// Computes the statistics a data-aware merge reads from a recipe's <c>data:</c> (a Fisher, Gram matrices) by running
/// each model in the runtime, and keeps each result in <see cref="Folder"/> under a key of what it depends on — the
/// kind and settings, the data file's contents, and the model's files (path, size and modification time of each, as
/// build tools judge freshness: hashing a large model's weights on every merge would cost as much as the merge) — so a
/// second merge with the same models and data reads the file instead of computing it again.
/// </summary>
public sealed class StatisticsCache(string folder, RuntimeOptions? options = null, Action<string>? report = null)
    : IStatisticsProvider
{
    /// <summary>Tokens per example window, as <c>alloy fisher</c> and <c>alloy regmean</c> default to.</summary>
    public const int SequenceLength = 256;

    /// <summary>Examples per forward pass for Gram matrices (part of the key: batches change float rounding).</summary>
    public const int GramBatchSize = 8;

    /// <summary>Changes whenever what a cached file holds would change for the same inputs.</summary>
    private const string FormatVersion = "alloy-statistics-1";

    /// <summary>~/.cache/alloy/statistics, or below $ALLOY_CACHE or $XDG_CACHE_HOME.</summary>
    public static string DefaultFolder => Path.Combine(ModelLocator.AlloyCacheDirectory(), "statistics");

    public string Folder { get; } = Path.GetFullPath(folder);

    private readonly RuntimeOptions _options = options ?? RuntimeOptions.Default;

    public string Provide(StatisticsRequest request, CancellationToken cancellation = default)
    {
        string path = Path.Combine(Folder, $"{Key(request)}.safetensors");
        string what = $"{request.Kind} of '{request.ModelName}' on {Path.GetFileName(request.DataPath)}";
        if (File.Exists(path))
        {
            report?.Invoke($"using the cached {what} ({path})");
            return path;
        }
        report?.Invoke($"computing the {what} ({request.Samples} examples at most)");
        var (model, examples) = Load(request.ModelLocation, request.DataPath, request.Samples, _options);
        var statistics = request.Kind switch
        {
            StatisticsFile.DiagonalFisher => ParameterStatistics.Fisher(
                model,
                examples,
                cancellation: cancellation,
                estimate: request.Estimate == "empirical" ? FisherEstimate.Empirical : FisherEstimate.Sampled
            ),
            StatisticsFile.RegMeanGram => ParameterStatistics.Grams(
                model,
                examples,
                GramBatchSize,
                cancellation: cancellation
            ),
            _ => throw new AlloyException($"no statistics of kind '{request.Kind}' can be computed from data"),
        };
        statistics.Save(path);
        return path;
    }

    /// <summary>
    /// A model folder and the first <paramref name="samples"/> examples of a data file, tokenized with its tokenizer
    /// into windows of <see cref="SequenceLength"/>.
    /// </summary>
    internal static (LlamaModel Model, IReadOnlyList<TrainingExample> Examples) Load(
        string modelLocation,
        string dataPath,
        int samples,
        RuntimeOptions options
    )
    {
        var tokenizer = TextTokenizer.Load(modelLocation);
        var model = LlamaModel.Load(modelLocation, options);
        var examples = TrainingData.Load(dataPath, tokenizer, SequenceLength, model.Config.VocabSize);
        return (model, [.. examples.Take(samples)]);
    }

    /// <summary>A SHA-256 (hex, 32 digits) of everything the statistics depend on.</summary>
    private static string Key(StatisticsRequest request)
    {
        var text = new StringBuilder();
        text.Append(FormatVersion).Append('\n').Append(request.Kind).Append('\n');
        text.Append(CultureInfo.InvariantCulture, $"samples={request.Samples} estimate={request.Estimate} ");
        text.Append(CultureInfo.InvariantCulture, $"seq={SequenceLength} batch={GramBatchSize}\n");
        text.Append(Identity(request.ModelLocation, request.DataPath));
        return Hash(text.ToString());
    }

    /// <summary>
    /// What statistics of a model on data depend on besides their settings: the data file's contents, and the model
    /// folder's path and each of its files' name, size and modification time (either may be left out).
    /// </summary>
    internal static string Identity(string? modelLocation, string? dataPath)
    {
        var text = new StringBuilder();
        if (dataPath is not null)
            using (var data = File.OpenRead(dataPath))
                text.Append("data ").Append(Convert.ToHexString(SHA256.HashData(data))).Append('\n');
        if (modelLocation is null)
            return text.ToString();
        var model = Path.GetFullPath(modelLocation);
        text.Append("model ").Append(model).Append('\n');
        foreach (var file in Directory.EnumerateFiles(model).Order(StringComparer.Ordinal))
        {
            var info = new FileInfo(file);
            text.Append(CultureInfo.InvariantCulture, $"{info.Name} {info.Length} {info.LastWriteTimeUtc.Ticks}\n");
        }
        return text.ToString();
    }

    /// <summary>A cache key: 32 hex digits of the text's SHA-256.</summary>
    internal static string Hash(string text) =>
        Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..32].ToLowerInvariant();
}
