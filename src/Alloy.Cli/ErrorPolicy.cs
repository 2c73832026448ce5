using System.Runtime.InteropServices;

namespace Alloy.Cli;

/// <summary>Alloy's error policy for commands: one line per error, a stack trace only with -v.</summary>
public static class ErrorPolicy
{
    /// <summary>Runs a command body, turning exceptions into a one-line message and an exit code.</summary>
    /// <remarks>
    /// Ctrl-C (SIGINT) and SIGTERM (what timeout, docker stop and systemd send) cancel the command, which then cleans
    /// up and exits 130 or 143 like a shell's interrupted command. A second signal ends the process at once.
    /// </remarks>
    public static int Run(TextWriter stderr, bool verbose, Func<CancellationToken, int> body)
    {
        using var cancellation = new CancellationTokenSource();
        PosixSignal? received = null;
        void OnSignal(PosixSignalContext context)
        {
            if (received is not null)
                return; // the second signal: let it end the process
            received = context.Signal;
            context.Cancel = true;
            cancellation.Cancel();
        }
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        try
        {
            return body(cancellation.Token);
        }
        catch (AlloyException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            if (verbose)
                stderr.WriteLine(e);
            return ExitCodes.InputError;
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            bool terminated = received == PosixSignal.SIGTERM;
            stderr.WriteLine(
                $"{(terminated ? "terminated (SIGTERM)" : "cancelled")}; nothing was written to the output folder"
            );
            return terminated ? ExitCodes.Terminated : ExitCodes.Cancelled;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"error: {e.Message}");
            if (verbose)
                stderr.WriteLine(e);
            return ExitCodes.InputError;
        }
        catch (Exception e)
        {
            stderr.WriteLine(
                $"internal error: {e.GetType().Name}: {e.Message}"
                    + (verbose ? "" : " (run with -v for details, and please report it)")
            );
            if (verbose)
                stderr.WriteLine(e);
            return ExitCodes.InternalError;
        }
    }
}
