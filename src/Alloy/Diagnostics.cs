namespace Alloy;

/// <summary>Collects warnings and notes for the person running a merge; the CLI decides how to show them.</summary>
public sealed class Diagnostics
{
    private readonly List<string> _warnings = [];
    private readonly object _gate = new();

    /// <summary>Called for every warning as it happens (the CLI prints them); may be null.</summary>
    public Action<string>? OnWarning { get; init; }

    /// <summary>Called for informational notes (shown with -v); may be null.</summary>
    public Action<string>? OnInfo { get; init; }

    public IReadOnlyList<string> Warnings
    {
        get
        {
            lock (_gate)
                return _warnings.ToArray();
        }
    }

    public void Warn(string message)
    {
        lock (_gate)
            _warnings.Add(message);
        OnWarning?.Invoke(message);
    }

    public void Info(string message) => OnInfo?.Invoke(message);

    /// <summary>A sink that only records, for library use and tests.</summary>
    public static Diagnostics Silent() => new();
}
