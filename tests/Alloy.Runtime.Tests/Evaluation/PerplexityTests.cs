using Alloy.Runtime.Evaluation;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Support;

namespace Alloy.Runtime.Tests.Evaluation;

/// <summary>
/// Perplexity against the Hugging Face recipe written out in the test: each window run alone through the forward pass,
/// log-softmax taken by hand in double, and the tokens each window scores chosen as the recipe chooses them.
/// </summary>
public sealed class PerplexityTests
{
    public static TheoryData<string, int, int, int> Cases()
    {
        var data = new TheoryData<string, int, int, int>();
        foreach (var backend in Reference.BackendNames)
        {
            data.Add(backend, 150, 64, 24); // overlapping windows, a short last one
            data.Add(backend, 150, 64, 64); // no overlap: each later window's first token goes unscored
            data.Add(backend, 150, 40, 1); // a window per token
            data.Add(backend, 60, 200, 100); // the text is shorter than one window
            data.Add(backend, 64, 64, 32); // exactly one window
            data.Add(backend, 65, 64, 32); // one token past a window
            data.Add(backend, 2, 64, 32); // the shortest text
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Perplexity_is_exp_of_the_mean_nll_computed_from_each_windows_logits(
        string backend,
        int length,
        int context,
        int stride
    )
    {
        var model = TestModels.Load(backend);
        var tokens = TestModels.Sequences(model.Config.VocabSize, length)[0];
        var result = Perplexity.Measure(
            model,
            tokens,
            new EvaluationOptions
            {
                Context = context,
                Stride = stride,
                BatchSize = 5,
            }
        );

        // The recipe: windows start every stride tokens; a window's targets are the tokens after the previous window's
        // end.
        double nll = 0;
        int scored = 0,
            windows = 0;
        for (int begin = 0, previousEnd = 0; ; begin += stride)
        {
            int end = Math.Min(begin + context, length);
            int targets = end - previousEnd;
            var logits = model.Forward(TokenBatch.FromSequences(tokens[begin..end]));
            windows++;
            // Labels shift by one inside the model, so the window's first token is never a target.
            for (int t = Math.Max(end - targets, begin + 1); t < end; t++)
            {
                nll -= LogSoftmax(logits.Of(0, t - begin - 1), tokens[t]);
                scored++;
            }
            previousEnd = end;
            if (end == length)
                break;
        }

        Assert.Equal(length, result.Tokens);
        Assert.Equal(scored, result.ScoredTokens);
        Assert.Equal(windows, result.Windows);
        Assert.Equal(nll / scored, result.MeanNll, 1e-5);
        Assert.Equal(Math.Exp(nll / scored), result.Value, Math.Exp(nll / scored) * 1e-5);
        Assert.True(result.Value > 1);
    }

    [Fact]
    public void Windows_are_laid_out_as_the_recipe_says()
    {
        Assert.Equal([new(0, 4, 1), new(2, 6, 4), new(4, 8, 6), new(6, 10, 8)], Perplexity.Windows(10, 4, 2));
        Assert.Equal([new(0, 4, 1), new(4, 8, 5), new(8, 10, 9)], Perplexity.Windows(10, 4, 4));
        Assert.Equal([new(0, 4, 1), new(3, 5, 4)], Perplexity.Windows(5, 4, 3));
        Assert.Equal([new PerplexityWindow(0, 3, 1)], Perplexity.Windows(3, 8, 4));
        Assert.Equal([new PerplexityWindow(0, 2, 1)], Perplexity.Windows(2, 2, 1));
    }

    [Fact]
    public void Every_token_is_scored_once_with_at_least_context_minus_stride_tokens_before_it()
    {
        for (int length = 2; length <= 40; length++)
        for (int context = 2; context <= 12; context++)
        for (int stride = 1; stride <= context; stride++)
        {
            var windows = Perplexity.Windows(length, context, stride);
            var scored = new List<int>();
            foreach (var w in windows)
            {
                Assert.True(
                    w.End - w.Begin <= context && w.Begin < w.ScoreFrom && w.ScoreFrom <= w.End,
                    $"{w} ({length}, {context}, {stride})"
                );
                for (int t = w.ScoreFrom; t < w.End; t++)
                {
                    scored.Add(t);
                    Assert.True(
                        t - w.Begin >= Math.Min(t, context - stride),
                        $"token {t} of {w} has too little context"
                    );
                }
            }
            Assert.Equal(length, windows[^1].End);
            Assert.Equal(scored.Distinct().Order(), scored); // once each, in order
            // Overlapping windows score every token after the first; windows that only touch lose each later first
            // token.
            int expected = stride < context ? length - 1 : length - windows.Count;
            Assert.Equal(expected, scored.Count);
        }
    }

    [Theory]
    [InlineData(1, 8, 4, "needs at least 2")]
    [InlineData(0, 8, 4, "needs at least 2")]
    [InlineData(10, 8, 0, "at least 1 token")]
    [InlineData(10, 8, 9, "longer than the context 8")]
    [InlineData(10, 1, 1, "context must be at least 2")]
    public void Impossible_windows_are_refused_in_one_line(int tokens, int context, int stride, string expected)
    {
        var e = Assert.Throws<AlloyException>(() => Perplexity.Windows(tokens, context, stride));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Text_is_scored_after_the_tokenizers_prefix()
    {
        var model = TestModels.Load("managed");
        var tokenizer = Tokenizers.Encoding.TextTokenizer.Load(TestModels.Folder);
        const string text = "Perplexity of a short text, in one window.";
        var ids = tokenizer.PrefixTokens.Concat(tokenizer.Encode(text, addSpecialTokens: false)).ToArray();
        var fromText = Perplexity.Measure(model, tokenizer, text);
        var fromIds = Perplexity.Measure(model, ids);
        Assert.Equal(ids.Length, fromText.Tokens);
        Assert.Equal(fromIds.MeanNll, fromText.MeanNll);
        Assert.Equal(Math.Min(model.Config.MaxPositions!.Value, EvaluationOptions.DefaultContextCap), fromText.Context);
        Assert.Equal(fromText.Context / 2, fromText.Stride);
    }

    /// <summary>log softmax(row)[token], in double.</summary>
    internal static double LogSoftmax(ReadOnlySpan<float> row, int token)
    {
        double max = double.NegativeInfinity;
        foreach (float v in row)
            max = Math.Max(max, v);
        double sum = 0;
        foreach (float v in row)
            sum += Math.Exp(v - max);
        return row[token] - max - Math.Log(sum);
    }
}
