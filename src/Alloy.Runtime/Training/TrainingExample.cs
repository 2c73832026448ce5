namespace Alloy.Runtime.Training;

/// <summary>
/// One training sequence: its token ids, and from which token on they are predicted. Token i ≥ max(1,
/// <see cref="ScoredFrom"/>) is a target, predicted from the tokens before it; the others (a prompt, whose loss a
/// prompt/completion example ignores, and always the first token, which nothing predicts) are context only.
/// </summary>
public sealed record TrainingExample(int[] Tokens, int ScoredFrom = 1)
{
    /// <summary>The index of the first predicted token.</summary>
    public int FirstTarget => Math.Max(1, ScoredFrom);

    /// <summary>The number of predicted tokens: the terms of this example's loss.</summary>
    public int TargetCount => Math.Max(0, Tokens.Length - FirstTarget);
}
