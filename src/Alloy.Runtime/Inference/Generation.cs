using Alloy.Runtime.Compute;
using Alloy.Runtime.Models;

namespace Alloy.Runtime.Inference;

/// <summary>Text generation on the KV cache.</summary>
public static class Generation
{
    /// <summary>
    /// Greedy decoding of every prompt at once: the prompts are run in one batched pass that fills a KV cache, then
    /// each step feeds every unfinished sequence its last token. The argmax takes the lowest id on ties (as
    /// torch.argmax). A sequence stops after a stop token (included in its output, as transformers does) or after
    /// <paramref name="maxNewTokens"/> tokens. <paramref name="stopTokens"/> defaults to config.json's eos_token_id.
    /// <paramref name="stopWhen"/>(s, new tokens so far) may end sequence s sooner (a stop string, a shorter limit).
    /// Returns the new tokens of each prompt.
    /// </summary>
    public static IReadOnlyList<int[]> Greedy(
        LlamaModel model,
        IReadOnlyList<IReadOnlyList<int>> prompts,
        int maxNewTokens,
        IReadOnlyCollection<int>? stopTokens = null,
        Func<int, IReadOnlyList<int>, bool>? stopWhen = null
    )
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxNewTokens);
        for (int s = 0; s < prompts.Count; s++)
            if (prompts[s].Count == 0)
                throw new AlloyException($"prompt {s} is empty; generation needs at least one token to start from");
        var stops = (stopTokens ?? model.Config.EosTokenIds).ToHashSet();
        var outputs = prompts.Select(_ => new List<int>()).ToArray();
        if (maxNewTokens == 0 || prompts.Count == 0)
            return outputs.Select(o => o.ToArray()).ToArray();

        var cache = model.CreateCache(prompts.Count, prompts.Max(p => p.Count) + maxNewTokens);
        var state = model.CreateState();
        var active = Enumerable.Repeat(true, prompts.Count).ToArray();
        var batch = TokenBatch.FromSequences(prompts);
        while (true)
        {
            var logits = model.Forward(batch, state, LogitSelection.Last, cache);
            var next = new IReadOnlyList<int>[prompts.Count];
            for (int s = 0, row = 0; s < prompts.Count; s++)
            {
                next[s] = [];
                if (!active[s])
                    continue;
                int token = VectorMath.ArgMax(logits.Row(row++));
                outputs[s].Add(token);
                if (
                    stops.Contains(token)
                    || outputs[s].Count == maxNewTokens
                    || stopWhen?.Invoke(s, outputs[s]) == true
                )
                    active[s] = false;
                else
                    next[s] = [token];
            }
            if (!active.Contains(true))
                break;
            batch = TokenBatch.FromSequences(next);
        }
        return outputs.Select(o => o.ToArray()).ToArray();
    }
}
