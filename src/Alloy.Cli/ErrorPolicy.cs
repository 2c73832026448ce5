namespace Alloy.Cli;

/// <summary>Alloy's error policy for commands: one line per error, a stack trace only with -v.</summary>
public static class ErrorPolicy
{
    /// <summary>Runs a command body, turning exceptions into a one-line message and an exit code.</summary>
    public static int Run(TextWriter stderr, bool verbose, Func<CancellationToken, int> body)
    {
        using var cancellation = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            cancellation.Cancel();
        };
        Console.CancelKeyPress += onCancel;
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
            stderr.WriteLine("cancelled; nothing was written to the output folder");
            return ExitCodes.Cancelled;
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
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }
}
