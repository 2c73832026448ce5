using System.Text.Json;
using Alloy.Checkpoints;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Runtime.Training;

/// <summary>
/// Training examples from a text file: <c>.txt</c>, one example per non-empty line; or <c>.jsonl</c>, one JSON object
/// per non-empty line with a "text" field (every token scored) or "prompt" and "completion" fields (only the
/// completion's tokens, and the end-of-sequence token, are scored). An example's tokens are the tokenizer's own prefix
/// (what its post-processor puts before a text: BOS for Llama, nothing for Qwen2; evaluation, statistics and generation
/// use the same), the text's tokens, and EOS (when the tokenizer names one) as the last target. An
/// example longer than the maximum length is cut into windows of that length that overlap by one token, so every token
/// is still predicted once.
/// </summary>
public static class TrainingData
{
    /// <param name="vocabularySize">The model's vocabulary: a token id at or above it (a tokenizer that does not
    /// belong to the model) is refused.</param>
    public static IReadOnlyList<TrainingExample> Load(
        string path,
        TextTokenizer tokenizer,
        int maxLength,
        int vocabularySize = int.MaxValue
    )
    {
        if (maxLength < 2)
            throw new AlloyException($"the sequence length must be at least 2 tokens (got {maxLength})");
        var examples = new List<TrainingExample>();
        foreach (var (prompt, completion) in Texts(path))
        {
            var tokens = new List<int>();
            tokens.AddRange(tokenizer.PrefixTokens);
            tokenizer.Encode(prompt, tokens, addSpecialTokens: false);
            int scoredFrom = prompt.Length == 0 ? 1 : tokens.Count;
            tokenizer.Encode(completion, tokens, addSpecialTokens: false);
            if (tokenizer.Special.Eos is int eos)
                tokens.Add(eos);
            Split(new TrainingExample([.. tokens], scoredFrom), maxLength, examples);
        }
        if (examples.Count == 0)
            throw new AlloyException($"data file '{path}' has no examples with tokens to predict");
        CheckVocabulary(examples.Select(e => e.Tokens), vocabularySize);
        return examples;
    }

    /// <summary>
    /// Unlabeled prompts from the same files (AdaMerging), or from task files: the tokenizer's prefix and each line's
    /// "prompt" (a completion or answer is ignored) or whole text, without EOS; a prompt longer than
    /// <paramref name="maxLength"/> keeps its last tokens, the ones next to the prediction.
    /// </summary>
    public static IReadOnlyList<int[]> LoadPrompts(
        string path,
        TextTokenizer tokenizer,
        int maxLength,
        int vocabularySize = int.MaxValue
    )
    {
        var prompts = new List<int[]>();
        foreach (var (prompt, completion) in Texts(path, promptsOnly: true))
        {
            var tokens = new List<int>(tokenizer.PrefixTokens);
            tokenizer.Encode(prompt.Length > 0 ? prompt : completion, tokens, addSpecialTokens: false);
            if (tokens.Count > 0)
                prompts.Add([.. tokens.Skip(Math.Max(0, tokens.Count - maxLength))]);
        }
        if (prompts.Count == 0)
            throw new AlloyException($"data file '{path}' has no prompts");
        CheckVocabulary(prompts, vocabularySize);
        return prompts;
    }

    private static void CheckVocabulary(IEnumerable<int[]> sequences, int vocabularySize)
    {
        int largest = sequences.SelectMany(t => t).DefaultIfEmpty(0).Max();
        if (largest >= vocabularySize)
            throw new AlloyException(
                $"the tokenizer gives token id {largest}, outside the model's vocabulary of {vocabularySize}"
            );
    }

    /// <summary>
    /// Each non-empty line's prompt ("" for plain text) and completion (the text); with
    /// <paramref name="promptsOnly"/> a "prompt" needs no "completion" (task files' items qualify).
    /// </summary>
    private static IEnumerable<(string Prompt, string Completion)> Texts(string path, bool promptsOnly = false)
    {
        if (!File.Exists(path))
            throw new AlloyException($"data file '{path}' does not exist");
        string extension = Path.GetExtension(path).ToLowerInvariant();
        if (extension is not (".txt" or ".jsonl"))
            throw new AlloyException(
                $"data file '{path}': expected a .txt file (one example per line) or a .jsonl file (\"text\", or "
                    + $"\"prompt\" and \"completion\")"
            );
        int lineNumber = 0;
        foreach (var line in InputFile.ReadLines(path))
        {
            lineNumber++;
            if (!string.IsNullOrWhiteSpace(line))
                yield return extension == ".txt"
                    ? ("", line)
                    : ParseJsonLine(line, $"{path}:{lineNumber}", promptsOnly);
        }
    }

    /// <summary>
    /// Windows of at most <paramref name="maxLength"/> tokens, overlapping by one; windows with nothing to predict are
    /// dropped.
    /// </summary>
    public static void Split(TrainingExample example, int maxLength, List<TrainingExample> into)
    {
        var tokens = example.Tokens;
        for (int start = 0; ; start += maxLength - 1)
        {
            int end = Math.Min(tokens.Length, start + maxLength);
            var window = new TrainingExample(tokens[start..end], Math.Max(1, example.ScoredFrom - start));
            if (window.TargetCount > 0)
                into.Add(window);
            if (end == tokens.Length)
                break;
        }
    }

    private static (string Prompt, string Completion) ParseJsonLine(string line, string where, bool promptsOnly)
    {
        using var document = StrictJson.Parse(System.Text.Encoding.UTF8.GetBytes(line), where);
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
            throw new AlloyException(
                $"{where}: expected a JSON object with \"text\", or \"prompt\" and \"completion\""
            );
        string? Field(string name) =>
            root.TryGetProperty(name, out var value)
                ? value.ValueKind == JsonValueKind.String
                    ? value.GetString()
                    : throw new AlloyException($"{where}: \"{name}\" must be a string")
                : null;
        if (Field("text") is { } text)
            return ("", text);
        if (Field("prompt") is { } prompt && (Field("completion") ?? (promptsOnly ? "" : null)) is { } completion)
            return (prompt, completion);
        throw new AlloyException(
            promptsOnly
                ? $"{where}: expected a \"prompt\" or \"text\" field"
                : $"{where}: expected a \"text\" field, or \"prompt\" and \"completion\" fields"
        );
    }
}
