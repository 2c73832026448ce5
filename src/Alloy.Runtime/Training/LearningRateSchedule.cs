namespace Alloy.Runtime.Training;

/// <summary>Linear warmup, then cosine decay to the minimum at the last step.</summary>
public static class LearningRateSchedule
{
    /// <summary>
    /// The learning rate of step <paramref name="step"/> (0-based) of <paramref name="steps"/>: peak·(step + 1)/warmup
    /// during the warmup (so the first step already moves), then min + (peak − min)·(1 + cos(π·progress))/2 with
    /// progress going from 0 at the first step after the warmup to 1 at the last step.
    /// </summary>
    public static double At(int step, int steps, double peak, double minimum, int warmup)
    {
        if (step < warmup)
            return peak * (step + 1) / warmup;
        int decaySteps = steps - warmup - 1;
        double progress = decaySteps <= 0 ? 0 : Math.Min(1, (double)(step - warmup) / decaySteps);
        return minimum + (peak - minimum) * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
