namespace Alloy.Cli;

/// <summary>Exit codes of the alloy command.</summary>
public static class ExitCodes
{
    public const int Success = 0;

    /// <summary>Bad input: config, checkpoint, paths. The message says what and where.</summary>
    public const int InputError = 1;

    /// <summary>Bad command line.</summary>
    public const int UsageError = 2;

    /// <summary>A bug in Alloy; the message asks for -v and a report.</summary>
    public const int InternalError = 3;

    /// <summary>Ctrl-C (SIGINT), as a shell reports an interrupted command (128 + 2).</summary>
    public const int Cancelled = 130;

    /// <summary>SIGTERM (128 + 15).</summary>
    public const int Terminated = 143;
}
