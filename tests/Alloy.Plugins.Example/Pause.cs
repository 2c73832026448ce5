using Alloy.Methods;

namespace Alloy.Plugins.Example;

/// <summary>
/// A test fixture rather than an example: the first model's tensor, after a pause of <c>milliseconds</c> per tensor,
/// so that tests can interrupt a merge of tiny models in the middle (SIGTERM, kill -9) at a moment of their choosing.
/// </summary>
public sealed class Pause()
    : MergeMethod(
        new("pause", "Pause", "The first model's tensor, after a pause (a fixture for interruption tests).")
        {
            Parameters = [Milliseconds],
            // Whole tensors, so the pause is once per tensor whatever the chunk size.
            Elementwise = false,
        }
    )
{
    public static readonly IntegerParameter Milliseconds = MethodParameter.Integer(
        "milliseconds",
        ParameterScope.Global,
        100,
        "The pause per tensor.",
        minimum: 0
    );

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        Thread.Sleep(inputs[Milliseconds]);
        inputs[0].CopyTo(output);
    }
}
