using Alloy.Checkpoints;
using Alloy.Methods;

namespace Alloy.Planning;

/// <summary>
/// The statistics files of a data-aware merge (<see cref="StatisticsUse"/>), each opened once per session, and each
/// computed once from data through the <see cref="Provider"/>, however many tensors and re-merges read them.
/// </summary>
public sealed class ModelStatistics : IDisposable
{
    private readonly Dictionary<string, StatisticsFile> _files = new(StringComparer.Ordinal);
    private readonly Dictionary<StatisticsRequest, string> _computed = [];

    /// <summary>Computes statistics from data; null refuses <c>data:</c>.</summary>
    public IStatisticsProvider? Provider { get; set; }

    /// <summary>
    /// The statistics of <paramref name="model"/>: the file <paramref name="file"/> names, or computed from
    /// <paramref name="data"/>; exactly one of the two must be set.
    /// </summary>
    public StatisticsFile For(
        StatisticsUse use,
        InputModel model,
        string? file,
        string? data,
        int samples,
        string? estimate,
        CancellationToken cancellation = default
    )
    {
        string what = $"model '{model.Name}'";
        string dataName = use.Data?.Name ?? "data";
        if (file is not null && data is not null)
            throw new AlloyException(
                $"{what} sets both '{use.File.Name}' and '{dataName}'; give the statistics file or the data to "
                    + "compute it from, not both"
            );
        if (file is null && data is null)
            throw new AlloyException(
                $"{what} has no statistics: set '{use.File.Name}: FILE' (made by `{StatisticsFile.MadeBy(use.Kind)}`) "
                    + $"or '{dataName}: FILE.jsonl' for it"
            );
        if (data is not null)
        {
            var request = new StatisticsRequest(
                use.Kind,
                model.Location,
                model.Name,
                Path.GetFullPath(data),
                samples,
                estimate
            );
            if (!_computed.TryGetValue(request, out file))
            {
                if (!File.Exists(data))
                    throw new AlloyException($"{what}: data file '{data}' does not exist");
                if (model.Adapter is not null || !Directory.Exists(model.Location))
                    throw new AlloyException(
                        $"{what}: statistics can be computed from data only for a model folder (not an adapter or a "
                            + $"single file); make them with `{StatisticsFile.MadeBy(use.Kind)}` and set "
                            + $"'{use.File.Name}'"
                    );
                var provider = Provider
                    ?? throw new AlloyException(
                        $"{what}: '{dataName}' needs Alloy.Runtime to compute statistics, and this merge has "
                            + "no statistics provider (MergeOptions.Statistics)"
                    );
                file = provider.Provide(request, cancellation);
                _computed[request] = file;
            }
        }
        string full = Path.GetFullPath(file!);
        if (!_files.TryGetValue(full, out var opened))
            _files[full] = opened = StatisticsFile.Open(file!, use.Kind);
        return opened;
    }

    public void Dispose()
    {
        foreach (var file in _files.Values)
            file.Dispose();
        _files.Clear();
    }
}
