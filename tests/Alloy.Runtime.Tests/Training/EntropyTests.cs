using Alloy.Runtime.Compute;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Tests.Training;

/// <summary>The entropy loss against values worked out here in double.</summary>
public sealed class EntropyTests
{
    /// <summary>
    /// Row 1 has p = (1, 2, 3)/6 (logits log 1, log 2, log 3, shifted by 40 to exercise the max shift), row 2 is
    /// uniform: H = ln 4 and a zero gradient. Gradients are scaled by 0.5.
    /// </summary>
    [Fact]
    public void Entropy_and_its_gradient_match_the_definition()
    {
        var logits = new Matrix(4, 2);
        float[] first = [40, 40 + MathF.Log(2), 40 + MathF.Log(3), -1e30f];
        first.CopyTo(logits.Row(0));
        logits.Row(1).Fill(-3);

        var context = new ComputeContext(new RuntimeOptions { Threads = 2 });
        double total = Entropy.LossAndGradient(context, logits, 0.5f);

        double[] p = [1 / 6.0, 2 / 6.0, 3 / 6.0, 0];
        double h = -p.Where(x => x > 0).Sum(x => x * Math.Log(x));
        Assert.Equal(h + Math.Log(4), total, 1e-6);
        for (int j = 0; j < 4; j++)
        {
            double expected = p[j] == 0 ? 0 : -0.5 * p[j] * (Math.Log(p[j]) + h);
            Assert.Equal(expected, logits.Row(0)[j], 1e-6);
            Assert.Equal(0, logits.Row(1)[j], 1e-7);
        }
    }
}
