using System.Diagnostics;
using Alloy.Runtime.Models;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Runtime.Evaluation;

/// <summary>
/// One window of a perplexity run: the model reads tokens [Begin, End) and scores [ScoreFrom, End), the tokens no
/// earlier window scored.
/// </summary>
public readonly record struct PerplexityWindow(int Begin, int End, int ScoreFrom);

/// <summary>The perplexity of a token sequence, and what it took to measure it.</summary>
public sealed record PerplexityResult
{
    /// <summary>Tokens of the text (with the tokenizer's prefix, BOS for Llama).</summary>
    public required int Tokens { get; init; }

    /// <summary>
    /// Tokens whose likelihood was measured: every token after the first, less a window's first token when windows do
    /// not overlap.
    /// </summary>
    public required int ScoredTokens { get; init; }

    public required int Context { get; init; }

    public required int Stride { get; init; }

    public required int Windows { get; init; }

    /// <summary>Mean negative log-likelihood per scored token (nats).</summary>
    public required double MeanNll { get; init; }

    /// <summary>exp(<see cref="MeanNll"/>).</summary>
    public double Value => Math.Exp(MeanNll);

    /// <summary>Tokens run through the model (overlapping windows read some tokens more than once).</summary>
    public required long ForwardTokens { get; init; }

    public required TimeSpan Elapsed { get; init; }

    public double TokensPerSecond => ForwardTokens / Math.Max(Elapsed.TotalSeconds, 1e-9);
}

/// <summary>
/// Perplexity by sliding windows, as in Hugging Face's recipe for fixed-length models: windows of
/// <see cref="EvaluationOptions.Context"/> tokens start every <see cref="EvaluationOptions.Stride"/> tokens, and each
/// window scores only the tokens that no earlier window scored, so every token is scored once with at least
/// context − stride tokens before it (all before it in the first window). The last window ends at the last token.
/// Perplexity = exp(Σ NLL / scored tokens).
/// </summary>
public static class Perplexity
{
    /// <summary>The windows over <paramref name="tokens"/> tokens.</summary>
    public static IReadOnlyList<PerplexityWindow> Windows(int tokens, int context, int stride)
    {
        if (tokens < 2)
            throw new AlloyException(
                $"the text has {tokens} token{(tokens == 1 ? "" : "s")}; perplexity needs at least 2"
            );
        if (context < 2)
            throw new AlloyException($"context must be at least 2 tokens (got {context})");
        if (stride < 1)
            throw new AlloyException($"stride must be at least 1 token (got {stride})");
        if (stride > context)
            throw new AlloyException(
                $"stride {stride} is longer than the context {context}; the tokens between windows would never be "
                    + $"scored"
            );
        var windows = new List<PerplexityWindow>();
        for (int begin = 0, scoredTo = 0; ; begin += stride)
        {
            int end = Math.Min(begin + context, tokens);
            // A window's first token has nothing before it in the window: when windows do not overlap, it goes
            // unscored.
            windows.Add(new PerplexityWindow(begin, end, Math.Max(scoredTo, begin + 1)));
            if (end == tokens)
                return windows;
            scoredTo = end;
        }
    }

    /// <summary>
    /// The perplexity of <paramref name="text"/>: the tokenizer's prefix tokens (BOS for Llama), then its ids.
    /// </summary>
    public static PerplexityResult Measure(
        LlamaModel model,
        TextTokenizer tokenizer,
        string text,
        EvaluationOptions? options = null,
        Action<EvaluationProgress>? progress = null,
        CancellationToken cancellation = default
    )
    {
        var tokens = new List<int>(tokenizer.PrefixTokens);
        tokenizer.Encode(text, tokens, addSpecialTokens: false);
        return Measure(model, tokens, options, progress, cancellation);
    }

    public static PerplexityResult Measure(
        LlamaModel model,
        IReadOnlyList<int> tokens,
        EvaluationOptions? options = null,
        Action<EvaluationProgress>? progress = null,
        CancellationToken cancellation = default
    )
    {
        options ??= EvaluationOptions.Default;
        options.Validate();
        var clock = Stopwatch.StartNew();
        int context = options.ContextFor(model.Config);
        int stride = options.Stride ?? Math.Max(1, context / 2);
        var windows = Windows(tokens.Count, context, stride);
        var all = tokens as int[] ?? [.. tokens];
        var requests = windows.Select(w => new ScoringRequest(all[w.Begin..w.End], w.ScoreFrom - w.Begin)).ToArray();
        long total = requests.Sum(r => (long)r.Tokens.Length);
        var scores = LogLikelihood.Score(
            model,
            requests,
            options,
            done => progress?.Invoke(new EvaluationProgress("perplexity", done, total, "tokens")),
            cancellation
        );
        int scored = scores.Sum(s => s.Tokens);
        return new PerplexityResult
        {
            Tokens = tokens.Count,
            ScoredTokens = scored,
            Context = context,
            Stride = stride,
            Windows = windows.Count,
            MeanNll = -scores.Sum(s => s.LogLikelihood) / scored,
            ForwardTokens = total,
            Elapsed = clock.Elapsed,
        };
    }
}

/// <summary>
/// Where an evaluation is: a stage ("perplexity", "choices: TASK", "generation: TASK") and the work done of the total,
/// in a unit.
/// </summary>
public readonly record struct EvaluationProgress(string Stage, long Done, long Total, string Unit);
