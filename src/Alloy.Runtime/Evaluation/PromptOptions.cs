namespace Alloy.Runtime.Evaluation;

/// <summary>
/// How task items' prompts are built, as lm-eval-harness builds its contexts: <see cref="FewShot"/> solved examples of
/// the same task before each item, and the model's chat template around the whole (<see cref="TaskPrompts"/>).
/// </summary>
public sealed record PromptOptions
{
    /// <summary>lm-eval-harness's default seed for the few-shot draw.</summary>
    public const int DefaultSeed = 1234;

    /// <summary>Solved examples before each item (lm-eval-harness's num_fewshot).</summary>
    public int FewShot { get; init; }

    /// <summary>Seeds the few-shot draw, which depends on nothing else but the item (its task and line).</summary>
    public int Seed { get; init; } = DefaultSeed;

    /// <summary>The text after each example (lm-eval-harness's fewshot_delimiter); an item may set its own.</summary>
    public string FewShotDelimiter { get; init; } = "\n\n";

    /// <summary>
    /// The text between a question and its answer (lm-eval-harness's target_delimiter); an item may set its own.
    /// Choices carry it at their front already (" 4"), as lm-eval-harness scores them; a generate example's answer
    /// gets it.
    /// </summary>
    public string TargetDelimiter { get; init; } = " ";

    /// <summary>Wrap each prompt in the model's chat template (lm-eval-harness's --apply_chat_template).</summary>
    public bool ChatTemplate { get; init; }

    /// <summary>
    /// With the chat template, each example a user turn and an assistant turn (--fewshot_as_multiturn).
    /// </summary>
    public bool FewShotAsMultiturn { get; init; }

    public static PromptOptions Default { get; } = new();

    /// <summary>Whether these options change any prompt from the tasks file's text.</summary>
    public bool ChangesPrompts => FewShot > 0 || ChatTemplate;

    /// <summary>Refuses settings that cannot work, in words naming the setting.</summary>
    public void Validate()
    {
        if (FewShot < 0)
            throw new AlloyException($"the number of few-shot examples must be 0 or more (got {FewShot})");
        if (FewShotAsMultiturn && !ChatTemplate)
            throw new AlloyException("few-shot examples as chat turns need the chat template (add --chat-template)");
    }
}
