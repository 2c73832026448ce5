using Alloy.Checkpoints;
using Alloy.Planning;
using Alloy.Recipes;

namespace Alloy.Tokenizers;

/// <summary>
/// The output vocabulary of a merge with <c>tokenizer_source</c> / <c>tokenizer</c> (mergekit's tokenizer mode): the
/// output tokenizer.json, and for every merged model the permutation output id → that model's id (−1 when it lacks
/// the token or has no embedding row for it). <see cref="Relayout"/> turns one embedding-like tensor's inputs into
/// [<see cref="Rows"/>, hidden] matrices over this vocabulary, ready to be merged like any other tensor.
/// </summary>
public sealed class MergedVocabulary
{
    private readonly IReadOnlyDictionary<ModelReference, int[]> _permutations;
    private readonly IReadOnlyDictionary<ModelReference, ModelTokenizer> _tokenizers;
    private readonly string?[] _tokens;

    private MergedVocabulary(
        TokenizerRecipe settings,
        TokenizerDocument document,
        ModelTokenizer source,
        bool unchanged,
        IReadOnlyDictionary<ModelReference, int[]> permutations,
        IReadOnlyDictionary<ModelReference, ModelTokenizer> tokenizers
    )
    {
        Settings = settings;
        Document = document;
        Source = source;
        Unchanged = unchanged;
        _permutations = permutations;
        _tokenizers = tokenizers;
        _tokens = new string?[document.IdSpan];
        foreach (var (token, id) in document.Vocabulary)
            _tokens[id] = token;
        int pad = settings.PadToMultipleOf ?? 1;
        Rows = (int)Math.Min(int.MaxValue, (TokenRows + (long)pad - 1) / pad * pad);
    }

    public TokenizerRecipe Settings { get; }

    /// <summary>The output tokenizer.json.</summary>
    public TokenizerDocument Document { get; }

    /// <summary>The tokenizer the output starts from (its tokenizer_config.json and special tokens are kept).</summary>
    public ModelTokenizer Source { get; }

    /// <summary>True when the output vocabulary is exactly the source's: its files can be copied as they are.</summary>
    public bool Unchanged { get; }

    /// <summary>Rows that hold a token: one past the largest output id.</summary>
    public int TokenRows => _tokens.Length;

    /// <summary>
    /// Rows of every re-laid-out embedding, and the output vocab_size: <see cref="TokenRows"/> rounded up to
    /// pad_to_multiple_of.
    /// </summary>
    public int Rows { get; }

    /// <summary>The output token with this id, or null (a hole in the ids, or padding).</summary>
    public string? Token(int id) => id < _tokens.Length ? _tokens[id] : null;

    /// <summary>
    /// Output id → the model's id, or −1 (the model lacks the token, or its id has no embedding row).
    /// </summary>
    public IReadOnlyList<int> Permutation(ModelReference model) => _permutations[model];

    // ---- building -----------------------------------------------------------------------------------------------

    /// <summary>
    /// Builds the output vocabulary. <paramref name="tokenizers"/> holds every merged model's tokenizer in config
    /// order (base first); <paramref name="externalSource"/> the tokenizer of a <c>source</c> model that is not merged.
    /// </summary>
    public static MergedVocabulary Build(
        TokenizerRecipe settings,
        ModelReference baseModel,
        IReadOnlyList<(ModelReference Reference, ModelTokenizer Tokenizer)> tokenizers,
        ModelTokenizer? externalSource,
        Diagnostics diagnostics
    )
    {
        var byModel = tokenizers.ToDictionary(t => t.Reference, t => t.Tokenizer);
        var baseTokenizer = byModel[baseModel];
        var baseDocument = baseTokenizer.Document ?? throw NoTokenizerJson(baseTokenizer, "the base model's");
        CheckTokenSettings(settings, byModel);

        // Models without a tokenizer.json are taken to share the base's vocabulary, as mergekit does.
        var vocabularies = new List<(ModelReference Reference, ModelTokenizer Tokenizer, TokenizerDocument Document)>();
        foreach (var (reference, tokenizer) in tokenizers)
        {
            if (tokenizer.Document is null)
                diagnostics.Warn(
                    $"model '{tokenizer.Name}' has no {ModelTokenizer.TokenizerFile}; assuming it has the same "
                        + $"vocabulary as '{baseTokenizer.Name}'"
                );
            vocabularies.Add((reference, tokenizer, tokenizer.Document ?? baseDocument));
        }

        TokenizerDocument output;
        ModelTokenizer source;
        int stripped = 0;
        switch (settings.Kind)
        {
            case TokenizerSourceKind.Model:
                source = byModel.GetValueOrDefault(settings.Model!)
                    ?? externalSource
                    ?? throw new InvalidOperationException($"tokenizer source {settings.Model} was not loaded");
                // mergekit uses a source model's tokenizer as it is: only the base's is stripped.
                output = (source.Document ?? throw NoTokenizerJson(source, "the tokenizer source's")).Clone();
                break;
            case TokenizerSourceKind.Base:
                source = baseTokenizer;
                output = baseDocument.Clone();
                stripped = output.Strip(baseTokenizer.VocabSize);
                break;
            default:
                source = baseTokenizer;
                output = baseDocument.Clone();
                stripped = output.Strip(baseTokenizer.VocabSize);
                AddUnion(output, vocabularies, diagnostics);
                break;
        }
        if (stripped > 0)
            diagnostics.Info(
                $"tokenizer: removed {stripped} token(s) of '{baseTokenizer.Name}' with ids ≥ its vocab_size "
                    + $"{baseTokenizer.VocabSize}"
            );

        foreach (var token in settings.Tokens.Keys)
            if (!output.Vocabulary.ContainsKey(token))
                output.AddAddedToken(AddedToken.Plain(0, token));

        bool unchanged = stripped == 0 && SameVocabulary(output, source.Document!);
        var permutations = new Dictionary<ModelReference, int[]>();
        var vocabulary = new MergedVocabulary(settings, output, source, unchanged, permutations, byModel);
        foreach (var (reference, tokenizer, document) in vocabularies)
            permutations[reference] = vocabulary.BuildPermutation(tokenizer, document, diagnostics);
        diagnostics.Info(
            $"tokenizer: output vocabulary of {vocabulary.TokenRows} token(s) "
                + $"({output.Vocabulary.Count - baseDocument.Vocabulary.Count:+0;-0;0} against "
                + $"'{baseTokenizer.Name}'), embeddings of {vocabulary.Rows} rows"
        );
        // Models often carry more embedding rows than tokens (padding to a multiple of 64, 128 …); the output keeps
        // only the rows its vocabulary needs, as mergekit does (its issue #425). Say so, and how to keep a padded size.
        if (
            vocabularies.MaxBy(v => v.Tokenizer.VocabSize) is { } widest
            && widest.Tokenizer.VocabSize > vocabulary.Rows
        )
            diagnostics.Warn(
                $"tokenizer: the merged embeddings have {vocabulary.Rows} rows, fewer than the "
                    + $"{widest.Tokenizer.VocabSize} of '{widest.Tokenizer.Name}' (its vocab_size; rows past its "
                    + $"tokens are padding): the padding rows are dropped, as mergekit does; "
                    + "set 'pad_to_multiple_of' under 'tokenizer:' (e.g. 64) to keep a padded size"
            );
        return vocabulary;
    }

    private static bool SameVocabulary(TokenizerDocument a, TokenizerDocument b) =>
        a.Vocabulary.Count == b.Vocabulary.Count
        && a.Vocabulary.All(e => b.Vocabulary.TryGetValue(e.Key, out var id) && id == e.Value)
        && a.AddedTokens.SequenceEqual(b.AddedTokens);

    private static AlloyException NoTokenizerJson(ModelTokenizer tokenizer, string whose) =>
        new(
            $"tokenizer merging needs {whose} {ModelTokenizer.TokenizerFile}, and '{tokenizer.Name}' has none in "
                + $"{tokenizer.Folder}; "
                + "save the tokenizer with transformers (a fast tokenizer) first"
        );

    /// <summary>
    /// mergekit's union, in config order so ids are reproducible: every model's vocabulary tokens (ids below its
    /// vocab_size, in id order) that the output lacks, then every model's added tokens (first settings seen win).
    /// </summary>
    private static void AddUnion(
        TokenizerDocument output,
        List<(ModelReference Reference, ModelTokenizer Tokenizer, TokenizerDocument Document)> models,
        Diagnostics diagnostics
    )
    {
        // Tokens some model adds as added tokens join in the second pass, with their flags.
        var addedSomewhere = models
            .SelectMany(m => m.Document.AddedTokens.Where(t => t.Id < m.Tokenizer.VocabSize))
            .Select(t => t.Content)
            .ToHashSet(StringComparer.Ordinal);
        var fromUnion = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (_, tokenizer, document) in models)
        {
            if (
                document.Kind != output.Kind
                && document
                    .ModelTokensById()
                    .Any(t => t.Id < tokenizer.VocabSize && !output.Vocabulary.ContainsKey(t.Token))
            )
                diagnostics.Warn(
                    $"tokenizer union: '{tokenizer.Name}' has a {document.Kind} tokenizer and the output a "
                        + $"{output.Kind} one; its extra tokens are added, but the output tokenizer may never produce "
                        + $"them"
                );
            foreach (var (token, id) in document.ModelTokensById())
            {
                if (id >= tokenizer.VocabSize || addedSomewhere.Contains(token) || output.Vocabulary.ContainsKey(token))
                    continue;
                // A Unigram vocabulary is positional, so new pieces can only be added tokens there (mergekit adds all
                // this way).
                if (output.Kind == TokenizerModelKind.Unigram)
                    output.AddAddedToken(AddedToken.Plain(0, token));
                else
                    output.AddModelToken(token);
                fromUnion.Add(token);
            }
        }
        // Merges that make the new tokens, so the output tokenizer can produce them; the source's merges keep priority.
        if (output.Kind == TokenizerModelKind.Bpe && fromUnion.Count > 0)
        {
            foreach (var (_, _, document) in models)
            {
                if (
                    document.Kind != TokenizerModelKind.Bpe
                    || document.ContinuingSubwordPrefix != output.ContinuingSubwordPrefix
                )
                    continue;
                foreach (var (left, right) in document.Merges)
                    if (fromUnion.Contains(output.MergeResult(left, right)))
                        output.AddMerge(left, right);
            }
        }

        var firstSeen = new Dictionary<string, (AddedToken Token, string Model)>(StringComparer.Ordinal);
        foreach (var token in output.AddedTokens)
            firstSeen[token.Content] = (token, models[0].Tokenizer.Name);
        var warned = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (_, tokenizer, document) in models)
        {
            foreach (var token in document.AddedTokens)
            {
                if (token.Id >= tokenizer.VocabSize)
                    continue;
                if (firstSeen.TryGetValue(token.Content, out var first))
                {
                    if (!first.Token.SameFlags(token) && warned.Add(token.Content))
                        diagnostics.Warn(
                            $"tokenizer union: token '{token.Content}' is added by '{first.Model}' with "
                                + $"{first.Token.DescribeFlags()} and by '{tokenizer.Name}' with "
                                + $"{token.DescribeFlags()}; using the first"
                        );
                    continue;
                }
                firstSeen[token.Content] = (output.AddAddedToken(token), tokenizer.Name);
            }
        }
    }

    /// <summary>
    /// mergekit rejects token sources that are not merged models only when it meets them; check up front.
    /// </summary>
    private static void CheckTokenSettings(TokenizerRecipe settings, Dictionary<ModelReference, ModelTokenizer> models)
    {
        foreach (var (token, entry) in settings.Tokens)
        {
            var model = entry.Source switch
            {
                TokenSource.FromModel f => f.Model,
                TokenSource.ModelToken t => t.Model,
                _ => null,
            };
            if (model is null)
                continue;
            if (!models.TryGetValue(model, out var tokenizer))
                throw new AlloyException(
                    $"{settings.Location}: tokenizer token '{token}' takes its embedding from '{model}', which is not "
                        + $"one of the merged models; list it under models: or slices:"
                );
            if (
                entry.Source is TokenSource.ModelToken { Token: { } text }
                && (tokenizer.Document is null || !tokenizer.Document.Vocabulary.ContainsKey(text))
            )
                throw new AlloyException(
                    $"{settings.Location}: tokenizer token '{token}': model '{model}' has no token '{text}' in its "
                        + $"{ModelTokenizer.TokenizerFile}"
                );
        }
    }

    private int[] BuildPermutation(ModelTokenizer tokenizer, TokenizerDocument document, Diagnostics diagnostics)
    {
        var permutation = new int[TokenRows];
        var vocabulary = document.Vocabulary;
        var unembedded = new List<string>();
        for (int id = 0; id < TokenRows; id++)
        {
            permutation[id] = -1;
            if (_tokens[id] is not { } token || !vocabulary.TryGetValue(token, out var original))
                continue;
            if (original >= tokenizer.VocabSize)
                unembedded.Add(token);
            else
                permutation[id] = original;
        }
        if (unembedded.Count > 0)
            diagnostics.Warn(
                $"model '{tokenizer.Name}': {unembedded.Count} output token(s) have ids ≥ its vocab_size "
                    + $"{tokenizer.VocabSize} (no embedding row), so it counts as not having them: {Sample(unembedded)}"
            );
        return permutation;
    }

    private static string Sample(IReadOnlyList<string> tokens) =>
        string.Join(", ", tokens.Take(5).Select(t => $"'{t}'"))
        + (tokens.Count > 5 ? $" and {tokens.Count - 5} more" : "");

    // ---- embedding re-layout ------------------------------------------------------------------------------------

    /// <summary>
    /// Re-lays-out the inputs of one vocabulary-indexed output tensor: each becomes [<see cref="Rows"/>, hidden]. A
    /// model keeps its own row for a token it has (unless the token is <c>force</c>d); otherwise the row comes from the
    /// token's configured source, or by mergekit's default: the only input that has it → its row; none → zeros (with a
    /// warning); the base has it → the base's row; else the mean of the rows of the inputs that have it. Rows past the
    /// vocabulary are the mean of the model's token rows.
    /// </summary>
    /// <param name="inputs">The tensor's inputs and each one's tensor name in its model.</param>
    /// <param name="baseModel">The base model, when it is among the inputs.</param>
    public IReadOnlyList<PlannedInput> Relayout(
        string outputName,
        IReadOnlyList<(PlannedInput Input, string InputName)> inputs,
        ModelReference? baseModel,
        ModelSet models,
        Diagnostics diagnostics
    )
    {
        long columns = CheckWidths(outputName, inputs);
        var distinct = inputs.Select(x => x.Input.Model).DistinctBy(m => m.Reference).ToList();
        var tensors = inputs
            .GroupBy(x => x.Input.Model.Reference)
            .ToDictionary(g => g.Key, g => g.First().Input.Tensor);
        var byReference = distinct.ToDictionary(m => m.Reference, m => Permutation(m.Reference));

        StoredTensor TensorOf(ModelReference reference)
        {
            if (tensors.TryGetValue(reference, out var t))
                return t;
            var model = models[reference];
            var name = inputs[0].InputName;
            var stored = model.Layout.StoredName(model.Checkpoint, name) is { } storedName
                ? model.Checkpoint.Find(storedName)
                : null;
            if (stored is null)
                throw new AlloyException(
                    $"embedding '{outputName}': the tokenizer settings take rows from '{model.Name}', which has no "
                        + $"tensor '{name}'"
                );
            if (stored.Info.Shape.Length != 2 || stored.Info.Shape[1] != columns)
                throw new AlloyException(
                    $"embedding '{outputName}': '{model.Name}' has '{stored.Name}' of shape "
                        + $"[{string.Join(", ", stored.Info.Shape)}], not [*, {columns}]"
                );
            return tensors[reference] = stored;
        }

        RowTerm Row(ModelReference reference, long row, double weight, string token)
        {
            var tensor = TensorOf(reference);
            if (row >= tensor.Info.Shape[0])
                throw new AlloyException(
                    $"embedding '{outputName}': token '{token}' is row {row} of '{reference}', but its '{tensor.Name}' "
                        + $"has {tensor.Info.Shape[0]} rows"
                );
            return new RowTerm(tensor, row, weight);
        }

        var composites = new List<RowTerm[]>();
        var compositeOf = new Dictionary<int, int>();
        var zeroTokens = new List<string>();
        int Composite(int id, string token)
        {
            if (compositeOf.TryGetValue(id, out var k))
                return k;
            var terms = Settings.Tokens.GetValueOrDefault(token)?.Source switch
            {
                TokenSource.FromModel f => Permutation(f.Model)[id] is >= 0 and var p
                    ? [Row(f.Model, p, 1, token)]
                    : throw new AlloyException(
                        $"{Settings.Location}: tokenizer token '{token}' takes its embedding from '{f.Model}', which "
                            + $"does not have that token"
                    ),
                TokenSource.ModelToken t =>
                [
                    Row(t.Model, t.TokenId ?? _tokenizers[t.Model].Document!.Vocabulary[t.Token!], 1, token),
                ],
                TokenSource.Zero => [],
                _ => DefaultRow(id, token),
            };
            composites.Add(terms);
            return compositeOf[id] = composites.Count - 1;
        }

        RowTerm[] DefaultRow(int id, string token)
        {
            var holders = distinct.Where(m => byReference[m.Reference][id] >= 0).ToList();
            if (holders.Count == 0)
            {
                zeroTokens.Add(token);
                return [];
            }
            if (holders.Count == 1)
                return [Row(holders[0].Reference, byReference[holders[0].Reference][id], 1, token)];
            if (baseModel is not null && holders.Any(m => m.Reference == baseModel))
                return [Row(baseModel, byReference[baseModel][id], 1, token)];
            return holders
                .Select(m => Row(m.Reference, byReference[m.Reference][id], 1.0 / holders.Count, token))
                .ToArray();
        }

        var codes = distinct.ToDictionary(m => m.Reference, _ => new int[Rows]);
        for (int id = 0; id < Rows; id++)
        {
            if (Token(id) is not { } token)
            {
                foreach (var c in codes.Values)
                    c[id] = RowLayout.PaddingCode;
                continue;
            }
            var settings = Settings.Tokens.GetValueOrDefault(token);
            // A configured source is checked even where no model needs it, as mergekit builds it regardless.
            if (settings?.Source is not null)
                Composite(id, token);
            bool force = settings?.Force ?? false;
            foreach (var model in distinct)
            {
                int own = byReference[model.Reference][id];
                codes[model.Reference][id] =
                    own >= 0 && !force ? (int)Row(model.Reference, own, 1, token).Row : -1 - Composite(id, token);
            }
        }
        if (zeroTokens.Count > 0)
            diagnostics.Warn(
                $"embedding '{outputName}': no input model has {Sample(zeroTokens)}; "
                    + $"{(zeroTokens.Count == 1 ? "its row is" : "their rows are")} zero"
            );

        var layouts = distinct.ToDictionary(
            m => m.Reference,
            m => new RowLayout(tensors[m.Reference], codes[m.Reference], composites, columns)
        );
        return inputs
            .Select(x => x.Input with { Shape = [Rows, columns], Rows = layouts[x.Input.Model.Reference] })
            .ToList();
    }

    private static long CheckWidths(string outputName, IReadOnlyList<(PlannedInput Input, string InputName)> inputs)
    {
        string Describe() =>
            string.Join(
                ", ",
                inputs.Select(x => $"'{x.Input.Model.Name}' has [{string.Join(", ", x.Input.Tensor.Info.Shape)}]")
            );
        if (inputs.Any(x => x.Input.Tensor.Info.Shape.Length != 2))
            throw new AlloyException(
                $"embedding '{outputName}': tokenizer merging needs 2-D [vocabulary, hidden] matrices ({Describe()})"
            );
        long columns = inputs[0].Input.Tensor.Info.Shape[1];
        if (inputs.Any(x => x.Input.Tensor.Info.Shape[1] != columns))
            throw new AlloyException(
                $"embedding '{outputName}': hidden sizes differ ({Describe()}); models with different widths cannot be "
                    + $"merged"
            );
        return columns;
    }
}
