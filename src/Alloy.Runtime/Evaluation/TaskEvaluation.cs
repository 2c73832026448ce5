using System.Diagnostics;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Runtime.Evaluation;

/// <summary>
/// How a multiple-choice item was answered: each choice's log-likelihood and token count, and the picks.
/// </summary>
public sealed record ChoiceOutcome(
    ChoiceItem Item,
    IReadOnlyList<double> LogLikelihoods,
    IReadOnlyList<int> ChoiceTokens,
    int Predicted,
    int PredictedNormalized
)
{
    public bool Correct => Predicted == Item.Answer;

    public bool CorrectNormalized => PredictedNormalized == Item.Answer;
}

/// <summary>
/// How a generation item was answered: the text (cut at the first stop string) and the tokens generated.
/// </summary>
public sealed record GenerationOutcome(GenerationItem Item, string Output, int GeneratedTokens, bool Correct);

/// <summary>
/// One task's score: accuracy (choice) or exact match (generate) over its items, and the work it took.
/// </summary>
public sealed record TaskResult
{
    public required string Name { get; init; }

    /// <summary><see cref="TaskFile.ChoiceType"/> or <see cref="TaskFile.GenerateType"/>.</summary>
    public required string Type { get; init; }

    public required int Items { get; init; }

    /// <summary>
    /// Choice: the share of items whose highest-likelihood choice is the answer. Generate: the share of exact matches.
    /// </summary>
    public required double Accuracy { get; init; }

    /// <summary>
    /// Choice only: the same with each log-likelihood divided by its choice's length in characters (lm-eval-harness's
    /// acc_norm).
    /// </summary>
    public double? AccuracyNormalized { get; init; }

    /// <summary>Tokens run through the model (contexts, choices, prompts and generated tokens).</summary>
    public required long ForwardTokens { get; init; }

    public required TimeSpan Elapsed { get; init; }

    public double TokensPerSecond => ForwardTokens / Math.Max(Elapsed.TotalSeconds, 1e-9);

    /// <summary>
    /// A mixture of experts' routing over this task's forward passes: per layer, how often each expert was chosen
    /// (null for a dense model).
    /// </summary>
    public RoutingTable? Routing { get; init; }

    public IReadOnlyList<ChoiceOutcome> Choices { get; init; } = [];

    public IReadOnlyList<GenerationOutcome> Generations { get; init; } = [];
}

/// <summary>
/// Runs task items on a model: multiple choice by log-likelihood (lm-eval-harness's loglikelihood requests) and greedy
/// generation scored by exact match. Items are grouped by task, in the order tasks first appear; each task's items are
/// batched across forward passes as <see cref="EvaluationOptions"/> says.
/// </summary>
public sealed class TaskEvaluation
{
    private readonly LlamaModel _model;
    private readonly TextTokenizer _tokenizer;
    private readonly EvaluationOptions _options;
    private readonly int _context;
    private readonly int[] _stopTokens;
    private readonly string _prefixText;

    public TaskEvaluation(LlamaModel model, TextTokenizer tokenizer, EvaluationOptions? options = null)
    {
        _model = model;
        _tokenizer = tokenizer;
        _options = options ?? EvaluationOptions.Default;
        _options.Validate();
        _context = _options.ContextFor(model.Config);
        // Generation ends at generation_config.json's eos_token_id (or the tokenizer's EOS) and at config.json's.
        _stopTokens = [.. tokenizer.Special.Stop.Concat(model.Config.EosTokenIds).Distinct().Order()];
        _prefixText = string.Concat(tokenizer.PrefixTokens.Select(tokenizer.TokenContent));
    }

    public IReadOnlyList<TaskResult> Run(
        IReadOnlyList<TaskItem> items,
        Action<EvaluationProgress>? progress = null,
        CancellationToken cancellation = default
    ) =>
        items
            .GroupBy(item => item.Task, StringComparer.Ordinal)
            .Select(group =>
                group.First() switch
                {
                    ChoiceItem => RunChoices(group.Key, group.Cast<ChoiceItem>().ToList(), progress, cancellation),
                    _ => RunGenerations(group.Key, group.Cast<GenerationItem>().ToList(), progress, cancellation),
                }
            )
            .ToList();

    /// <summary>
    /// Each choice is scored as lm-eval-harness does: whitespace at the end of the context moves to the front of the
    /// choice; the sequence is the tokenizer's prefix (BOS for Llama) and the ids of context + choice, and the choice's
    /// tokens are those after the ids of the context alone. Sequences longer than the context are cut from the left.
    /// </summary>
    public TaskResult RunChoices(
        string name,
        IReadOnlyList<ChoiceItem> items,
        Action<EvaluationProgress>? progress = null,
        CancellationToken cancellation = default
    )
    {
        var clock = Stopwatch.StartNew();
        var routing = _model.Routing?.Snapshot();
        var requests = new ScoringRequest[items.Sum(i => i.Choices.Count)];
        var firsts = new int[items.Count + 1];
        for (int i = 0; i < items.Count; i++)
            firsts[i + 1] = firsts[i] + items[i].Choices.Count;
        _model.Compute.For(items.Count, i =>
        {
            for (int c = 0; c < items[i].Choices.Count; c++)
                requests[firsts[i] + c] = ChoiceRequest(items[i], c);
        });
        long total = requests.Sum(r => (long)r.Tokens.Length);
        var scores = LogLikelihood.Score(
            _model,
            requests,
            _options,
            done => progress?.Invoke(new EvaluationProgress($"choices: {name}", done, total, "tokens")),
            cancellation
        );

        var outcomes = items
            .Select(
                (item, i) =>
                {
                    var lls = scores[firsts[i]..firsts[i + 1]].Select(s => s.LogLikelihood).ToArray();
                    // lm-eval-harness divides by the bare choice, without the target delimiter our choices carry ("
                    // 4").
                    var normalized = lls.Select((ll, c) => ll / Math.Max(1, CodePoints(item.Choices[c].TrimStart())))
                        .ToArray();
                    return new ChoiceOutcome(
                        item,
                        lls,
                        scores[firsts[i]..firsts[i + 1]].Select(s => s.Tokens).ToArray(),
                        ArgMax(lls),
                        ArgMax(normalized)
                    );
                }
            )
            .ToList();
        return new TaskResult
        {
            Name = name,
            Type = TaskFile.ChoiceType,
            Items = items.Count,
            Accuracy = outcomes.Count(o => o.Correct) / (double)items.Count,
            AccuracyNormalized = outcomes.Count(o => o.CorrectNormalized) / (double)items.Count,
            ForwardTokens = total,
            Elapsed = clock.Elapsed,
            Routing = routing is null ? null : _model.Routing!.Snapshot().Since(routing),
            Choices = outcomes,
        };
    }

    /// <summary>
    /// Greedy generation from the tokenizer's prefix and the prompt's ids (cut from the left to leave room for the new
    /// tokens within the context). A sequence ends at a stop token (not part of the text), at a stop string (the text
    /// is cut before it) or after max_tokens. The text is decoded without special tokens and compared with each answer
    /// after the normalisation the options ask for (trim, case).
    /// </summary>
    public TaskResult RunGenerations(
        string name,
        IReadOnlyList<GenerationItem> items,
        Action<EvaluationProgress>? progress = null,
        CancellationToken cancellation = default
    )
    {
        var clock = Stopwatch.StartNew();
        var routing = _model.Routing?.Snapshot();
        var limits = items.Select(i => i.MaxTokens ?? _options.MaxNewTokens).ToArray();
        var prompts = new int[items.Count][];
        _model.Compute.For(items.Count, i => prompts[i] = PromptTokens(items[i], limits[i]));
        var outputs = new GenerationOutcome[items.Count];
        long forward = 0;
        int done = 0;
        progress?.Invoke(new EvaluationProgress($"generation: {name}", 0, items.Count, "items"));
        foreach (var (start, end) in _options.Batches(prompts.Select((p, i) => p.Length + limits[i]).ToArray()))
        {
            cancellation.ThrowIfCancellationRequested();
            var slice = Enumerable.Range(start, end - start).ToArray();
            // Each item's own limit, and its stop strings checked on the text so far (decoded only when it has some).
            bool Ends(int s, IReadOnlyList<int> tokens) =>
                tokens.Count >= limits[slice[s]]
                || (items[slice[s]].Stop.Count > 0 && StopAt(items[slice[s]].Stop, Text(tokens)) >= 0);
            var generated = Generation.Greedy(
                _model,
                slice.Select(i => (IReadOnlyList<int>)prompts[i]).ToList(),
                slice.Max(i => limits[i]),
                _stopTokens,
                Ends
            );
            for (int s = 0; s < slice.Length; s++)
            {
                var item = items[slice[s]];
                var tokens = generated[s];
                string text = Text(tokens.Length > 0 && _stopTokens.Contains(tokens[^1]) ? tokens[..^1] : tokens);
                int cut = StopAt(item.Stop, text);
                if (cut >= 0)
                    text = text[..cut];
                outputs[slice[s]] = new GenerationOutcome(
                    item,
                    text,
                    tokens.Length,
                    item.Answers.Any(a => Normalize(a) == Normalize(text))
                );
                // Every token but the last generated one went through the model.
                forward += prompts[slice[s]].Length + tokens.Length - 1;
            }
            done += slice.Length;
            progress?.Invoke(new EvaluationProgress($"generation: {name}", done, items.Count, "items"));
        }
        return new TaskResult
        {
            Name = name,
            Type = TaskFile.GenerateType,
            Items = items.Count,
            Accuracy = outputs.Count(o => o.Correct) / (double)items.Count,
            ForwardTokens = forward,
            Elapsed = clock.Elapsed,
            Routing = routing is null ? null : _model.Routing!.Snapshot().Since(routing),
            Generations = outputs,
        };
    }

    private ScoringRequest ChoiceRequest(ChoiceItem item, int choice)
    {
        string context = item.Context.TrimEnd();
        string continuation = item.Context[context.Length..] + item.Choices[choice];
        var contextTokens = Encoded(context);
        var whole = Encoded(context + continuation);
        if (contextTokens.Count == 0)
        {
            // Nothing to predict the choice's first token from: start both from one token (as lm-eval-harness does).
            contextTokens.Add(StartToken(item));
            whole.Insert(0, contextTokens[0]);
        }
        int choiceTokens = whole.Count - contextTokens.Count;
        if (choiceTokens < 1)
            throw new AlloyException(
                $"{item.Where}: choice {choice} adds no tokens to the context; check the choice text"
            );
        if (choiceTokens >= _context)
            throw new AlloyException(
                $"{item.Where}: choice {choice} is {choiceTokens} tokens, which leaves no room for context in "
                    + $"{_context}; shorten it or raise the context"
            );
        var tokens = whole.Count > _context ? whole.GetRange(whole.Count - _context, _context) : whole;
        return new ScoringRequest([.. tokens], tokens.Count - choiceTokens);
    }

    private int[] PromptTokens(GenerationItem item, int limit)
    {
        var tokens = Encoded(item.Prompt);
        if (tokens.Count == 0)
            tokens.Add(StartToken(item));
        int room = Math.Max(1, _context - limit);
        return tokens.Count > room ? [.. tokens.GetRange(tokens.Count - room, room)] : [.. tokens];
    }

    /// <summary>
    /// The tokenizer's prefix (BOS for Llama) and the text's ids. A text that already starts with the prefix's text (a
    /// chat template that writes bos_token) gets no second one: lm-eval-harness encodes so, and transformers'
    /// apply_chat_template adds no special tokens to the text it renders.
    /// </summary>
    private List<int> Encoded(string text)
    {
        bool prefixed = _prefixText.Length > 0 && text.StartsWith(_prefixText, StringComparison.Ordinal);
        var tokens = prefixed ? new List<int>() : new List<int>(_tokenizer.PrefixTokens);
        _tokenizer.Encode(text, tokens, addSpecialTokens: false);
        return tokens;
    }

    /// <summary>
    /// What an empty context starts from when the tokenizer adds no prefix: EOS (lm-eval-harness's prefix token), else
    /// BOS.
    /// </summary>
    private int StartToken(TaskItem item) =>
        _tokenizer.Special.Eos
        ?? _tokenizer.Special.Bos
        ?? throw new AlloyException(
            $"{item.Where}: the text before the answer is empty and the tokenizer has no BOS or EOS token to start from"
        );

    private string Text(IReadOnlyList<int> tokens) =>
        _tokenizer.Decode(tokens is int[] array ? array : [.. tokens], skipSpecialTokens: true);

    /// <summary>Where the earliest stop string starts in <paramref name="text"/>, or −1.</summary>
    private static int StopAt(IReadOnlyList<string> stops, string text)
    {
        int first = -1;
        foreach (var stop in stops)
        {
            int at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first))
                first = at;
        }
        return first;
    }

    private string Normalize(string text)
    {
        if (_options.Trim)
            text = text.Trim();
        return _options.IgnoreCase ? text.ToLowerInvariant() : text;
    }

    /// <summary>
    /// Length in Unicode code points, as Python's len() counts the characters lm-eval-harness divides by.
    /// </summary>
    private static int CodePoints(string text)
    {
        int count = 0;
        for (int i = 0; i < text.Length; i++, count++)
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                i++;
        return count;
    }

    /// <summary>The index of the largest value, the first on ties (as numpy.argmax).</summary>
    private static int ArgMax(double[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best])
                best = i;
        return best;
    }
}
