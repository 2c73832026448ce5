using System.Collections.Concurrent;
using System.Text;

namespace Alloy.Tokenizers.Encoding;

/// <summary>
/// The BPE model of a tokenizer.json: a word (one pre-tokenized piece) starts as one symbol per character — or its
/// &lt;0xNN&gt; byte tokens with <c>byte_fallback</c>, or the unknown token — and the pair with the lowest merge rank
/// is merged, leftmost first, until no pair has a merge. Pairs wait in a priority queue over a linked list of symbols,
/// so a word of n characters costs O(n log n), not O(n²). Results are cached per word, as Hugging Face does.
/// </summary>
internal sealed class BpeModel : IPieceSink
{
    private const int CacheCapacity = 10_000,
        MaxCachedLength = 256;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabBySpan;
    private readonly MergeTable _merges;
    private readonly int[] _byteTokens; // id of <0xNN>, or -1
    private readonly string? _unkToken,
        _prefix,
        _suffix;
    private readonly bool _fuseUnk,
        _byteFallback,
        _ignoreMerges;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;
    private readonly string _where;
    private int _cached; // entries in _cache (ConcurrentDictionary.Count takes every lock)

    public BpeModel(TokenizerDocument document)
    {
        _where = document.Source;
        if (document.Kind != TokenizerModelKind.Bpe)
            throw new AlloyException(
                $"{_where}: a {document.Kind} tokenizer model cannot encode text yet (BPE models can)"
            );
        _vocab = new Dictionary<string, int>(document.ModelVocabulary, StringComparer.Ordinal);
        _vocabBySpan = _vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        _unkToken = document.ModelString("unk_token");
        _prefix = NullIfEmpty(document.ModelString("continuing_subword_prefix"));
        _suffix = NullIfEmpty(document.ModelString("end_of_word_suffix"));
        _fuseUnk = document.ModelBool("fuse_unk") ?? false;
        _byteFallback = document.ModelBool("byte_fallback") ?? false;
        _ignoreMerges = document.ModelBool("ignore_merges") ?? false;

        _byteTokens = new int[256];
        for (int b = 0; b < 256; b++)
            _byteTokens[b] = _vocab.GetValueOrDefault(ByteToken((byte)b), -1);

        _merges = new MergeTable(document.Merges.Count);
        int rank = 0;
        foreach (var (left, right) in document.Merges)
        {
            int Id(string token) =>
                _vocab.TryGetValue(token, out int id)
                    ? id
                    : throw new AlloyException(
                        $"{_where}: BPE merge {rank} ('{left}' '{right}') uses '{token}', which is not in the "
                            + $"vocabulary"
                    );
            // A repeated pair keeps its last rank, as tokenizers' map does.
            _merges.Set(Key(Id(left), Id(right)), rank, Id(document.MergeResult(left, right)));
            rank++;
        }
    }

    /// <summary>The &lt;0xNN&gt; token that stands for a byte under <c>byte_fallback</c>.</summary>
    public static string ByteToken(byte value) => $"<0x{value:X2}>";

    public int? TokenToId(ReadOnlySpan<char> token) => _vocabBySpan.TryGetValue(token, out int id) ? id : null;

    public IReadOnlyDictionary<string, int> Vocabulary => _vocab;

    public void Accept(ReadOnlySpan<char> piece, bool atStart, List<int> ids) => Tokenize(piece, ids);

    /// <summary>Appends the ids of one pre-tokenized word.</summary>
    public void Tokenize(ReadOnlySpan<char> word, List<int> ids)
    {
        if (word.IsEmpty)
            return;
        if (_ignoreMerges && _vocabBySpan.TryGetValue(word, out int whole))
        {
            ids.Add(whole);
            return;
        }
        if (_cacheBySpan.TryGetValue(word, out var cached))
        {
            ids.AddRange(cached);
            return;
        }
        var scratch = Scratch.Current;
        int count = Split(word, scratch);
        Merge(scratch, count);
        int start = ids.Count;
        for (int i = 0; i >= 0 && count > 0; i = scratch.Symbols[i].Next)
            ids.Add(scratch.Symbols[i].Id);
        if (
            word.Length < MaxCachedLength
            && Volatile.Read(ref _cached) < CacheCapacity
            && _cache.TryAdd(new string(word), ids.GetRange(start, ids.Count - start).ToArray())
        )
            Interlocked.Increment(ref _cached);
    }

    /// <summary>The word's initial symbols (tokenizers' merge_word before merging); returns how many.</summary>
    private int Split(ReadOnlySpan<char> word, Scratch scratch)
    {
        int count = 0;
        int pendingUnk = -1; // an unknown-token symbol not yet added (fuse_unk joins a run of them)
        Span<char> composed = stackalloc char[2 + (_prefix?.Length ?? 0) + (_suffix?.Length ?? 0)];
        for (int i = 0; i < word.Length; )
        {
            int length =
                char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            var character = word.Slice(i, length);
            bool first = i == 0,
                last = i + length == word.Length;
            i += length;

            scoped ReadOnlySpan<char> symbol = character;
            if ((!first && _prefix is not null) || (last && _suffix is not null))
            {
                int n = 0;
                if (!first && _prefix is not null)
                {
                    _prefix.CopyTo(composed);
                    n = _prefix.Length;
                }
                character.CopyTo(composed[n..]);
                n += length;
                if (last && _suffix is not null)
                {
                    _suffix.CopyTo(composed[n..]);
                    n += _suffix.Length;
                }
                symbol = composed[..n];
            }

            if (_vocabBySpan.TryGetValue(symbol, out int id))
            {
                if (pendingUnk >= 0)
                {
                    scratch.Add(ref count, pendingUnk);
                    pendingUnk = -1;
                }
                scratch.Add(ref count, id);
                continue;
            }
            if (_byteFallback && AddBytes(symbol, scratch, ref count))
                continue;
            if (_unkToken is not null)
            {
                int unk = _vocab.TryGetValue(_unkToken, out int u)
                    ? u
                    : throw new AlloyException($"{_where}: the unknown token '{_unkToken}' is not in the vocabulary");
                if (pendingUnk >= 0 && !_fuseUnk)
                    scratch.Add(ref count, pendingUnk);
                pendingUnk = unk;
            }
        }
        if (pendingUnk >= 0)
            scratch.Add(ref count, pendingUnk);
        return count;
    }

    /// <summary>Adds the &lt;0xNN&gt; tokens of the symbol's UTF-8 bytes, if the vocabulary has all of them.</summary>
    private bool AddBytes(ReadOnlySpan<char> symbol, Scratch scratch, ref int count)
    {
        Span<byte> bytes = stackalloc byte[4 * symbol.Length];
        int n = System.Text.Encoding.UTF8.GetBytes(symbol, bytes);
        foreach (var b in bytes[..n])
            if (_byteTokens[b] < 0)
                return false;
        foreach (var b in bytes[..n])
            scratch.Add(ref count, _byteTokens[b]);
        return true;
    }

    private void Merge(Scratch scratch, int count)
    {
        var symbols = scratch.Symbols;
        var queue = scratch.Queue;
        queue.Clear();
        // The first pairs go in at once: the queue builds its heap in linear time.
        var initial = scratch.Initial;
        initial.Clear();
        for (int i = 0; i + 1 < count; i++)
            if (_merges.TryGet(Key(symbols[i].Id, symbols[i + 1].Id), out int rank, out int id))
                initial.Add(((i, id), ((long)rank << 32) | (uint)i));
        queue.EnqueueRange(initial);
        while (queue.TryDequeue(out var top, out _))
        {
            ref var left = ref symbols[top.Position];
            if (left.Removed || left.Next < 0)
                continue;
            ref var right = ref symbols[left.Next];
            // Skip entries made stale by an earlier merge.
            if (!_merges.TryGet(Key(left.Id, right.Id), out _, out int merged) || merged != top.NewId)
                continue;
            left.Id = merged;
            right.Removed = true;
            left.Next = right.Next;
            if (left.Next >= 0)
                symbols[left.Next].Previous = top.Position;
            if (left.Previous >= 0)
                Enqueue(queue, left.Previous, symbols[left.Previous].Id, left.Id);
            if (left.Next >= 0)
                Enqueue(queue, top.Position, left.Id, symbols[left.Next].Id);
        }
    }

    private void Enqueue(PriorityQueue<(int Position, int NewId), long> queue, int position, int left, int right)
    {
        if (_merges.TryGet(Key(left, right), out int rank, out int id))
            queue.Enqueue((position, id), ((long)rank << 32) | (uint)position);
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    private static string? NullIfEmpty(string? text) => string.IsNullOrEmpty(text) ? null : text;

    private struct Symbol
    {
        public int Id,
            Previous,
            Next;
        public bool Removed;
    }

    /// <summary>Per-thread symbol list and queue, reused from word to word.</summary>
    private sealed class Scratch
    {
        [ThreadStatic]
        private static Scratch? _current;

        public static Scratch Current => _current ??= new Scratch();

        public Symbol[] Symbols = new Symbol[64];
        public readonly PriorityQueue<(int Position, int NewId), long> Queue = new();
        public readonly List<((int Position, int NewId), long)> Initial = [];

        public void Add(ref int count, int id)
        {
            if (count == Symbols.Length)
                Array.Resize(ref Symbols, 2 * count);
            Symbols[count] = new Symbol
            {
                Id = id,
                Previous = count - 1,
                Next = -1,
            };
            if (count > 0)
                Symbols[count - 1].Next = count;
            count++;
        }
    }

    /// <summary>
    /// Pair of ids → (rank, merged id) in one open-addressed array: the merge loop looks pairs up several times per
    /// merge, and this is about twice as fast as a Dictionary for it.
    /// </summary>
    private sealed class MergeTable
    {
        private readonly long[] _keys;
        private readonly (int Rank, int Id)[] _values;
        private readonly int _mask,
            _shift;

        public MergeTable(int capacity)
        {
            int size = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, capacity * 2));
            _keys = new long[size];
            Array.Fill(_keys, -1L); // ids are non-negative, so no key is -1
            _values = new (int, int)[size];
            _mask = size - 1;
            _shift = 64 - System.Numerics.BitOperations.Log2((uint)size);
        }

        public void Set(long key, int rank, int id)
        {
            int slot = Slot(key);
            while (_keys[slot] != -1 && _keys[slot] != key)
                slot = (slot + 1) & _mask;
            _keys[slot] = key;
            _values[slot] = (rank, id);
        }

        public bool TryGet(long key, out int rank, out int id)
        {
            for (int slot = Slot(key); ; slot = (slot + 1) & _mask)
            {
                long k = _keys[slot];
                if (k == key)
                {
                    (rank, id) = _values[slot];
                    return true;
                }
                if (k == -1)
                {
                    rank = id = 0;
                    return false;
                }
            }
        }

        // Fibonacci hashing: the top bits of the key times 2⁶⁴/φ.
        private int Slot(long key) => (int)((ulong)(key * unchecked((long)0x9E3779B97F4A7C15)) >> _shift);
    }
}
