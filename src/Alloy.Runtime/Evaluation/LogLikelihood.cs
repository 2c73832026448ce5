using System.Buffers;
using Alloy.Runtime.Compute;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;

namespace Alloy.Runtime.Evaluation;

/// <summary>
/// A token sequence to score: tokens[<see cref="ScoreFrom"/>..] are scored, each given every token before it.
/// ScoreFrom is at least 1 (the first token has nothing to be predicted from).
/// </summary>
public sealed record ScoringRequest(int[] Tokens, int ScoreFrom)
{
    public int ScoredTokens => Tokens.Length - ScoreFrom;
}

/// <summary>
/// Σ log p(token | the tokens before it) over a request's scored tokens (natural log), how many there were, and
/// whether every one was the model's top choice (lm-eval-harness's is_greedy).
/// </summary>
public readonly record struct SequenceScore(double LogLikelihood, int Tokens, bool Greedy);

/// <summary>
/// Log-likelihoods of token sequences under a model: what perplexity and multiple choice are made of.
/// </summary>
public static class LogLikelihood
{
    /// <summary>
    /// Scores every request, several per forward pass (<see cref="EvaluationOptions.Batches"/>); logits are computed
    /// for the rows that predict scored tokens only, and log-softmax is taken in double. A request's score does not
    /// depend on the others in its pass. <paramref name="onPass"/> gets the running count of tokens run through the
    /// model.
    /// </summary>
    public static SequenceScore[] Score(
        LlamaModel model,
        IReadOnlyList<ScoringRequest> requests,
        EvaluationOptions? options = null,
        Action<long>? onPass = null,
        CancellationToken cancellation = default
    )
    {
        options ??= EvaluationOptions.Default;
        foreach (var request in requests)
        {
            if (request.ScoreFrom < 1 || request.ScoreFrom > request.Tokens.Length)
                throw new ArgumentException(
                    $"a request of {request.Tokens.Length} tokens cannot score from token {request.ScoreFrom}",
                    nameof(requests)
                );
        }
        var scores = new SequenceScore[requests.Count];
        var state = model.CreateState();
        long done = 0;
        // Say the stage has begun: a batch of long sequences on a large model can take minutes.
        onPass?.Invoke(0);
        foreach (var (start, end) in options.Batches(requests.Select(r => r.Tokens.Length).ToArray()))
        {
            cancellation.ThrowIfCancellationRequested();
            var slice = Enumerable.Range(start, end - start).Select(i => requests[i]).ToArray();
            var batch = TokenBatch.FromSequences(slice.Select(r => (IReadOnlyList<int>)r.Tokens));
            // The logits at index i predict token i + 1.
            var selection = LogitSelection.At(
                slice
                    .Select(r => (IReadOnlyList<int>)Enumerable.Range(r.ScoreFrom - 1, r.ScoredTokens).ToArray())
                    .ToArray()
            );
            var logits = model.Forward(batch, state, selection);
            model.Compute.For(slice.Length, s => scores[start + s] = ScoreOne(logits, s, slice[s]));
            done += batch.TotalTokens;
            onPass?.Invoke(done);
        }
        return scores;
    }

    private static SequenceScore ScoreOne(Logits logits, int sequence, ScoringRequest request)
    {
        var scratch = ArrayPool<float>.Shared.Rent(logits.VocabSize);
        try
        {
            double sum = 0;
            bool greedy = true;
            for (int t = request.ScoreFrom; t < request.Tokens.Length; t++)
            {
                var row = logits.Of(sequence, t - 1);
                int token = request.Tokens[t];
                sum += row[token] - VectorMath.LogSumExp(row, scratch);
                greedy &= VectorMath.ArgMax(row) == token;
            }
            return new SequenceScore(sum, request.ScoredTokens, greedy);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
    }
}
