namespace Alloy;

/// <summary>
/// A mistake in the user's input (config, checkpoint, command line). The message is one line that says what is wrong,
/// where (file:line:column, tensor, model) and, where it helps, how to fix it. The CLI prints it without a stack trace.
/// </summary>
public sealed class AlloyException : Exception
{
    public AlloyException(string message)
        : base(message) { }

    public AlloyException(string message, Exception inner)
        : base(message, inner) { }
}
