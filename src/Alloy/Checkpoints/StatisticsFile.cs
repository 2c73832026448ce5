using System.Globalization;
using Alloy.Tensors;

namespace Alloy.Checkpoints;

/// <summary>
/// A file of per-parameter statistics of one model over a data set (made by <c>alloy fisher</c> or
/// <c>alloy regmean</c>, or computed for a recipe's <c>data:</c>): a safetensors file with one tensor per parameter,
/// named after it, whose metadata says what the tensors are (<see cref="KindKey"/>) and over how many examples or
/// tokens they were gathered. Opened lazily like a checkpoint: headers only, data memory-mapped.
/// </summary>
public sealed class StatisticsFile : Methods.IStatisticSummary, IDisposable
{
    /// <summary>The metadata key naming the statistic.</summary>
    public const string KindKey = "alloy_statistic";

    /// <summary>The mean over examples of each parameter's squared gradient (Fisher merging).</summary>
    public const string DiagonalFisher = "diagonal_fisher";

    /// <summary>The sum XᵀX of a linear layer's inputs over tokens, under the layer's weight name (RegMean).</summary>
    public const string RegMeanGram = "regmean_gram";

    /// <summary>
    /// A Concrete subspace's shared mask: per entry, the (rescaled) mask every task vector is multiplied by.
    /// </summary>
    public const string ConcreteMask = "concrete_mask";

    /// <summary>What each kind counts, the metadata key of <see cref="Count"/>.</summary>
    public static string CountName(string kind) =>
        kind switch
        {
            RegMeanGram => "tokens",
            ConcreteMask => "steps",
            _ => "examples",
        };

    /// <summary>What makes each kind, for messages.</summary>
    public static string MadeBy(string kind) =>
        kind switch
        {
            RegMeanGram => "alloy regmean",
            ConcreteMask => "a concrete_subspace merge",
            _ => "alloy fisher",
        };

    private readonly SafetensorsFile _file;
    private readonly Lazy<double> _norm;

    private StatisticsFile(SafetensorsFile file, string kind, long count)
    {
        _file = file;
        Kind = kind;
        Count = count;
        _norm = new Lazy<double>(() => Math.Sqrt(_file.Tensors.Sum(SquaredSum)));
    }

    /// <summary>
    /// Opens <paramref name="path"/> as statistics of kind <paramref name="kind"/>; any other file is refused in one
    /// line that says which command makes the right one.
    /// </summary>
    public static StatisticsFile Open(string path, string kind)
    {
        if (!File.Exists(path))
            throw new AlloyException(
                $"statistics file '{path}' does not exist ("
                    + (
                        kind == ConcreteMask
                            ? "a concrete_subspace merge writes one beside its model)"
                            : $"make it with `{MadeBy(kind)} MODEL --data FILE --out "
                                + $"{System.IO.Path.GetFileName(path)}`)"
                    )
            );
        var file = SafetensorsFile.Open(path);
        try
        {
            string found = file.Metadata.GetValueOrDefault(KindKey) ?? "no statistics";
            if (found != kind)
                throw new AlloyException($"'{path}' holds {found}, not {kind} (made by `{MadeBy(kind)}`)");
            string countName = CountName(kind);
            if (
                !file.Metadata.TryGetValue(countName, out var text)
                || !long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long count)
                || count < 1
            )
                throw new AlloyException($"'{path}': its metadata has no positive '{countName}' count");
            return new StatisticsFile(file, kind, count);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public string Path => _file.Path;

    public string Kind { get; }

    /// <summary>The examples (Fisher) or tokens (Gram) the statistics were gathered over.</summary>
    public long Count { get; }

    /// <summary>The statistic of the parameter called <paramref name="name"/>, or null.</summary>
    public StoredTensor? Find(string name) => _file.Find(name);

    /// <summary>
    /// The L2 norm of all its tensors together (Fisher merging's normalisation), read once, on first use.
    /// </summary>
    public double Norm => _norm.Value;

    private static double SquaredSum(StoredTensor tensor)
    {
        const int Block = 1 << 16;
        var values = new float[Block];
        double sum = 0;
        for (long start = 0; start < tensor.Info.ElementCount; start += Block)
        {
            int n = (int)Math.Min(Block, tensor.Info.ElementCount - start);
            tensor.ReadFloat32(start, values.AsSpan(0, n));
            sum += SpanMath.SumOfSquares(values.AsSpan(0, n));
        }
        return sum;
    }

    public void Dispose() => _file.Dispose();

    public override string ToString() => Path;
}
