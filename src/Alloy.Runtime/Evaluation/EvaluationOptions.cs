using Alloy.Runtime.Models;

namespace Alloy.Runtime.Evaluation;

/// <summary>How evaluation batches its work and reads its answers. Results do not depend on the batching.</summary>
public sealed record EvaluationOptions
{
    /// <summary>
    /// The longest context a sequence may have when none is given: max_position_embeddings, capped at this.
    /// </summary>
    public const int DefaultContextCap = 4096;

    /// <summary>Sequences (text windows, context + choice pairs, prompts) per forward pass.</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>
    /// Tokens per forward pass (a single longer sequence still runs, alone): bounds activation and logit memory.
    /// </summary>
    public int MaxBatchTokens { get; init; } = 8192;

    /// <summary>
    /// Tokens of context the model sees at once: the perplexity window, and the length to which longer choice and
    /// prompt sequences are cut (from the left). Null: config.json's max_position_embeddings, at most
    /// <see cref="DefaultContextCap"/> (2048 when the config does not say).
    /// </summary>
    public int? Context { get; init; }

    /// <summary>Perplexity: tokens between the starts of consecutive windows. Null: half the context.</summary>
    public int? Stride { get; init; }

    /// <summary>Generation: new tokens per prompt, unless a task item sets its own max_tokens.</summary>
    public int MaxNewTokens { get; init; } = 32;

    /// <summary>Exact match: compare answers with surrounding whitespace removed.</summary>
    public bool Trim { get; init; } = true;

    /// <summary>Exact match: compare answers case-insensitively.</summary>
    public bool IgnoreCase { get; init; }

    public static EvaluationOptions Default { get; } = new();

    /// <summary>The context length for <paramref name="config"/>.</summary>
    public int ContextFor(ModelConfig config) => Context ?? Math.Min(config.MaxPositions ?? 2048, DefaultContextCap);

    /// <summary>Refuses settings that cannot work, in words naming the setting.</summary>
    public void Validate()
    {
        if (BatchSize < 1)
            throw new AlloyException($"batch size must be at least 1 (got {BatchSize})");
        if (MaxBatchTokens < 1)
            throw new AlloyException($"tokens per batch must be at least 1 (got {MaxBatchTokens})");
        if (Context is < 2)
            throw new AlloyException($"context must be at least 2 tokens (got {Context})");
        if (Stride is < 1)
            throw new AlloyException($"stride must be at least 1 token (got {Stride})");
        if (MaxNewTokens < 1)
            throw new AlloyException($"max new tokens must be at least 1 (got {MaxNewTokens})");
    }

    /// <summary>
    /// Consecutive ranges [start, end) of sequences with the given lengths, each a forward pass: at most
    /// <see cref="BatchSize"/> sequences and <see cref="MaxBatchTokens"/> tokens, and never empty.
    /// </summary>
    public IEnumerable<(int Start, int End)> Batches(IReadOnlyList<int> lengths)
    {
        int start = 0;
        while (start < lengths.Count)
        {
            int end = start + 1;
            long tokens = lengths[start];
            while (end < lengths.Count && end - start < BatchSize && tokens + lengths[end] <= MaxBatchTokens)
                tokens += lengths[end++];
            yield return (start, end);
            start = end;
        }
    }
}
