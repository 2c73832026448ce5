using Alloy.Runtime.Compute;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Models;
using Alloy.Runtime.Tests.Support;

namespace Alloy.Runtime.Tests.Inference;

/// <summary>
/// What must not change a token's logits: the other sequences of the batch and their padding, feeding the tokens
/// through a KV cache in pieces, and the number of threads. On the managed backend they are compared bit for bit (each
/// row is computed by the same arithmetic whatever surrounds it). OpenBLAS's kernels sum a row in an order that depends
/// on how many rows share the call and where the row sits among them, so there batch composition and caching agree to
/// float32 rounding (1e-5 relative); the thread count changes nothing on either backend.
/// </summary>
public sealed class BatchingAndCacheTests
{
    public static TheoryData<string> Backends() => Reference.Backends();

    [Theory]
    [MemberData(nameof(Backends))]
    public void Padding_and_batch_neighbours_do_not_change_a_sequences_logits(string backend)
    {
        var model = TestModels.Load(backend);
        var sequences = TestModels.Sequences(model.Config.VocabSize, 70, 9, 140, 1);
        var alone = sequences.Select(s => model.Forward(TokenBatch.FromSequences(s))).ToList();
        foreach (bool left in new[] { false, true })
        {
            var padded = ReferenceLogitsTests.Padded(sequences, left);
            Assert.Equal(left ? 140 - 9 : 0, padded.FirstColumn(1));
            var batched = model.Forward(padded);
            for (int s = 0; s < sequences.Length; s++)
            for (int t = 0; t < sequences[s].Length; t++)
                AssertSame(
                    backend,
                    alone[s].Of(0, t),
                    batched.Of(s, t),
                    $"sequence {s} token {t}, {(left ? "left" : "right")} padding"
                );
        }
    }

    public static TheoryData<string, bool> BackendsAndWindows()
    {
        var data = new TheoryData<string, bool>();
        foreach (var backend in Reference.BackendNames)
        {
            data.Add(backend, false);
            data.Add(backend, true);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(BackendsAndWindows))]
    public void Decoding_through_the_cache_gives_the_logits_of_a_full_forward(string backend, bool windowed)
    {
        // The windowed model (Mistral, 300 tokens) sums over more than 256 keys, where window ranges are aligned.
        var model = TestModels.Load(backend, windowed: windowed);
        int[] lengths = windowed ? [600, 33] : [90, 33];
        var sequences = TestModels.Sequences(model.Config.VocabSize, lengths);
        var full = model.Forward(TokenBatch.FromSequences(sequences));

        // Feed both sequences in uneven pieces (a prompt, then chunks, then single tokens), one sequence sometimes
        // idle.
        var cache = model.CreateCache(2, capacity: 4); // small on purpose: it must grow mid-sequence
        var state = model.CreateState();
        int[] done = [0, 0];
        int[][] pieces = windowed
            ?
            [
                [40, 10],
                [0, 7],
                [515, 1],
                [1, 1],
                [1, 0],
                [43, 14],
            ]
            :
            [
                [40, 10],
                [0, 7],
                [25, 1],
                [1, 1],
                [1, 0],
                [23, 14],
            ];
        foreach (var piece in pieces)
        {
            var batch = TokenBatch.FromSequences(
                Enumerable
                    .Range(0, 2)
                    .Select(s => (IReadOnlyList<int>)sequences[s][done[s]..(done[s] + piece[s])])
                    .ToList()
            );
            var logits = model.Forward(batch, state, LogitSelection.All, cache);
            for (int s = 0; s < 2; s++)
            {
                for (int i = 0; i < piece[s]; i++)
                    AssertSame(backend, full.Of(s, done[s] + i), logits.Of(s, i), $"sequence {s} token {done[s] + i}");
                done[s] += piece[s];
                Assert.Equal(done[s], cache.Length(s));
            }
        }
        Assert.Equal(lengths, done);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Results_do_not_depend_on_the_thread_count(string backend)
    {
        var sequences = TestModels.Sequences(TestModels.Spec.VocabSize, 150, 20, 61);
        var batch = TokenBatch.FromSequences(sequences);
        var one = TestModels.Load(backend, threads: 1).Forward(batch);
        foreach (int threads in new[] { 2, 5 })
        {
            var many = TestModels.Load(backend, threads).Forward(batch);
            for (int i = 0; i < one.Count; i++)
                AssertIdentical(one.Row(i), many.Row(i), $"row {i} with {threads} threads");
        }
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Selected_logits_are_those_rows_of_all_logits(string backend)
    {
        var model = TestModels.Load(backend);
        var sequences = TestModels.Sequences(model.Config.VocabSize, 12, 5, 30);
        var batch = TokenBatch.FromSequences(sequences);
        var all = model.Forward(batch);
        var last = model.Forward(batch, LogitSelection.Last);
        Assert.Equal(3, last.Count);
        for (int s = 0; s < 3; s++)
            AssertSame(
                backend,
                all.Of(s, sequences[s].Length - 1),
                last.Of(s, sequences[s].Length - 1),
                $"last of {s}"
            );
        var chosen = model.Forward(
            batch,
            LogitSelection.At([
                [3, 0],
                [],
                [29, 7, 7],
            ])
        );
        Assert.Equal(4, chosen.Count);
        foreach (var (s, t) in new[] { (0, 0), (0, 3), (2, 7), (2, 29) })
            AssertSame(backend, all.Of(s, t), chosen.Of(s, t), $"{s}/{t}");
        Assert.Equal(0, model.Forward(batch, LogitSelection.None).Count);
        Assert.Throws<AlloyException>(() =>
            model.Forward(
                batch,
                LogitSelection.At([
                    [12],
                    [],
                    [],
                ])
            )
        );
    }

    [Fact]
    public void Batched_greedy_generation_equals_generating_each_prompt_alone_and_decoding_without_a_cache()
    {
        var model = TestModels.Load("managed");
        var prompts = TestModels.Sequences(model.Config.VocabSize, 7, 1, 19);
        var together = Generation.Greedy(model, prompts, 12, stopTokens: []);
        for (int s = 0; s < prompts.Length; s++)
        {
            Assert.Equal(Generation.Greedy(model, [prompts[s]], 12, stopTokens: [])[0], together[s]);
            // Without a cache: the whole text through a full forward pass at every step.
            var text = prompts[s].ToList();
            for (int step = 0; step < 12; step++)
            {
                var logits = model.Forward(TokenBatch.FromSequences(text), LogitSelection.Last);
                text.Add(VectorMath.ArgMax(logits.Row(0)));
            }
            Assert.Equal(text.Skip(prompts[s].Length), together[s]);
        }
    }

    [Fact]
    public void A_stop_token_ends_its_sequence_and_is_kept()
    {
        var model = TestModels.Load("managed");
        var prompts = TestModels.Sequences(model.Config.VocabSize, 5, 8);
        var free = Generation.Greedy(model, prompts, 10, stopTokens: []);
        int stop = free[0][3];
        int firstStop = Array.IndexOf(free[0], stop);
        var stopped = Generation.Greedy(model, prompts, 10, stopTokens: [stop]);
        Assert.Equal(free[0][..(firstStop + 1)], stopped[0]);
        int otherStop = Array.IndexOf(free[1], stop);
        Assert.Equal(otherStop < 0 ? free[1] : free[1][..(otherStop + 1)], stopped[1]);
        Assert.Empty(Generation.Greedy(model, prompts, 0)[0]);
        Assert.Throws<AlloyException>(() =>
            Generation.Greedy(
                model,
                [
                    [],
                ],
                3
            )
        );
    }

    /// <summary>Bit for bit on the managed backend; within 1e-5 relative (row norm) on OpenBLAS.</summary>
    internal static void AssertSame(
        string backend,
        ReadOnlySpan<float> expected,
        ReadOnlySpan<float> actual,
        string what
    )
    {
        if (backend == "managed")
        {
            AssertIdentical(expected, actual, what);
            return;
        }
        double error = Reference.WorstRowError(actual, expected, expected.Length);
        Assert.True(error <= 1e-5, $"{what}: relative error {error:E2}");
    }

    internal static void AssertIdentical(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: logit {i} is {actual[i]:R}, expected {expected[i]:R}");
    }
}
