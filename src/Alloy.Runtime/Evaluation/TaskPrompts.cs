using Alloy.Tokenizers;

namespace Alloy.Runtime.Evaluation;

/// <summary>
/// Builds task items' prompts as lm-eval-harness's fewshot_context does. Each example is its question followed by its
/// gold answer and the few-shot delimiter: a choice example is its context and its right choice (which carries the
/// target delimiter at its front, " 4"), a generate example its prompt, the target delimiter and its first answer.
/// The item's own context or prompt follows the examples. With the chat template, that text becomes one user message
/// (or, as multiturn, each example a user and an assistant message, answers without delimiters) rendered with the
/// generation prompt, and choices are scored without their leading target delimiter, right after the assistant's
/// header, as lm-eval-harness scores them under --apply_chat_template.
/// </summary>
public static class TaskPrompts
{
    /// <summary>Every item with its prompt built; the items keep their task, file, line and id.</summary>
    public static IReadOnlyList<TaskItem> Build(
        IReadOnlyList<TaskItem> items,
        PromptOptions options,
        FewShotSampler? sampler,
        ChatPrompt? chat
    )
    {
        options.Validate();
        if (options.FewShot > 0 && sampler is null)
            throw new ArgumentException("few-shot prompts need a sampler", nameof(sampler));
        if (options.ChatTemplate && chat is null)
            throw new ArgumentException("the chat template option needs the model's chat prompt", nameof(chat));
        return items
            .Select(item =>
                Build(item, options.FewShot > 0 ? sampler!.Draw(item) : [], options, options.ChatTemplate ? chat : null)
            )
            .ToList();
    }

    /// <summary>
    /// One item with <paramref name="examples"/> before it, in the chat template when <paramref name="chat"/> is given.
    /// </summary>
    public static TaskItem Build(
        TaskItem item,
        IReadOnlyList<TaskItem> examples,
        PromptOptions options,
        ChatPrompt? chat
    )
    {
        string fewShotDelimiter = item.FewShotDelimiter ?? options.FewShotDelimiter;
        string targetDelimiter = item.TargetDelimiter ?? options.TargetDelimiter;
        var solved = examples.Select(e => Solved(e, targetDelimiter)).ToList();
        string question = Question(item);
        string prompt;
        if (chat is null)
        {
            prompt = Plain(solved, fewShotDelimiter, question);
        }
        else if (options.FewShotAsMultiturn)
        {
            var turns = solved.SelectMany(s =>
                new[] { new ChatMessage("user", s.Question), new ChatMessage("assistant", s.BareAnswer) }
            );
            prompt = chat.Render([.. turns, new ChatMessage("user", question)], addGenerationPrompt: true);
        }
        else
        {
            var single = new ChatMessage("user", Plain(solved, fewShotDelimiter, question));
            prompt = chat.Render([single], addGenerationPrompt: true);
        }
        return item switch
        {
            ChoiceItem c => c with
            {
                Context = prompt,
                Choices = chat is null
                    ? c.Choices
                    : c.Choices.Select(choice => WithoutPrefix(choice, targetDelimiter)).ToList(),
            },
            GenerationItem g => g with { Prompt = prompt },
            _ => throw new ArgumentException($"unknown item type {item.GetType().Name}", nameof(item)),
        };
    }

    /// <summary>
    /// An example as question, answer with its delimiter (as it follows the question in text) and bare answer.
    /// </summary>
    private readonly record struct SolvedExample(string Question, string Answer, string BareAnswer);

    private static SolvedExample Solved(TaskItem example, string targetDelimiter) =>
        example switch
        {
            ChoiceItem c => new(c.Context, c.Choices[c.Answer], WithoutPrefix(c.Choices[c.Answer], targetDelimiter)),
            GenerationItem g => new(g.Prompt, targetDelimiter + g.Answers[0], g.Answers[0]),
            _ => throw new ArgumentException($"unknown item type {example.GetType().Name}", nameof(example)),
        };

    private static string Question(TaskItem item) =>
        item switch
        {
            ChoiceItem c => c.Context,
            GenerationItem g => g.Prompt,
            _ => throw new ArgumentException($"unknown item type {item.GetType().Name}", nameof(item)),
        };

    private static string Plain(IReadOnlyList<SolvedExample> solved, string fewShotDelimiter, string question) =>
        string.Concat(solved.Select(s => s.Question + s.Answer + fewShotDelimiter)) + question;

    private static string WithoutPrefix(string text, string prefix) =>
        prefix.Length > 0 && text.StartsWith(prefix, StringComparison.Ordinal) ? text[prefix.Length..] : text;
}
