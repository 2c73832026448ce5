using Alloy.Tensors;

namespace Alloy.Recipes.Yaml;

/// <summary>dtype, tokenizer and chat-template settings.</summary>
internal sealed partial class RecipeReader
{
    // ---- dtype, tokenizer, chat template -------------------------------------------------------------------

    private DType? DTypeField(Dictionary<string, YEntry> fields, string key)
    {
        if (Value(fields, key) is not { } node)
            return null;
        var name = StringValue(node, $"'{key}'");
        if (name.Length == 0)
        {
            // mergekit treats an empty name as "not set".
            Warn($"{node.Location}: '{key}' is empty (ignored)");
            return null;
        }
        var bare = name.StartsWith("torch.", StringComparison.Ordinal) ? name["torch.".Length..] : name;
        if (bare == "int64")
        {
            // mergekit accepts int64 and casts every weight to an integer, which destroys the model.
            throw Error(
                node,
                $"'{key}: {name}' is not allowed: merging in an integer dtype truncates every weight and destroys the "
                    + $"model; "
                    + "use bfloat16, float16 or float32"
            );
        }
        if (RecipeParser.AcceptedDTypeNames.Contains(bare) && DTypes.TryParseTorch(bare, out var dtype))
            return dtype;
        throw Error(
            node,
            $"'{key}: {name}' is not supported; use one of bfloat16, float16, float32 (optionally prefixed with "
                + $"'torch.')"
        );
    }

    private TokenizerRecipe? Tokenizer(Dictionary<string, YEntry> fields)
    {
        var legacy = Value(fields, "tokenizer_source");
        var modern = Value(fields, "tokenizer");
        if (legacy is not null && modern is not null)
        {
            var (first, second) =
                fields["tokenizer_source"].Key.Location.Line <= fields["tokenizer"].Key.Location.Line
                    ? (fields["tokenizer_source"], fields["tokenizer"])
                    : (fields["tokenizer"], fields["tokenizer_source"]);
            throw Error(
                second.Key,
                $"cannot specify both 'tokenizer_source' and 'tokenizer' ('{first.Key.Text}' is at line "
                    + $"{first.Key.Location.Line}); "
                    + "use 'tokenizer: {source: ...}'"
            );
        }
        var empty = new OrderedDictionary<string, TokenSettings>(StringComparer.Ordinal);
        if (legacy is not null)
        {
            var (kind, model) = TokenizerSource(legacy, "'tokenizer_source'");
            return new TokenizerRecipe(kind, model, empty, null, legacy.Location);
        }
        if (modern is null)
            return null;

        var tf = Fields(modern, "'tokenizer'", ["source", "tokens", "pad_to_multiple_of"], hasParameters: false);
        var (k, m) = tf.TryGetValue("source", out var sourceEntry)
            ? TokenizerSource(sourceEntry.Value, "'tokenizer' 'source'")
            : (TokenizerSourceKind.Union, null); // mergekit's default
        var tokens = new OrderedDictionary<string, TokenSettings>(StringComparer.Ordinal);
        if (Value(tf, "tokens") is { } tokensNode)
        {
            if (tokensNode is not YMapping tokenMap)
                throw Error(tokensNode, $"'tokens' must be a mapping of token → settings, not {Describe(tokensNode)}");
            foreach (var (key, value) in tokenMap.Entries)
            {
                var token = StringValue(key, "a token");
                tokens[token] = TokenSettingsOf(value, token);
            }
        }
        int? pad = null;
        if (Value(tf, "pad_to_multiple_of") is { } padNode)
        {
            var p = Integer(padNode, "'pad_to_multiple_of'");
            if (p <= 0 || p > int.MaxValue)
                throw Error(padNode, $"'pad_to_multiple_of' must be a positive whole number, not {p}");
            pad = (int)p;
        }
        return new TokenizerRecipe(k, m, tokens, pad, modern.Location);
    }

    private (TokenizerSourceKind, ModelReference?) TokenizerSource(YNode node, string what)
    {
        if (node is YScalar { IsNull: true })
            throw Error(node, $"{what} must be 'union', 'base', or a model reference, not null");
        if (node is YScalar { Kind: ScalarKind.String } s)
        {
            if (s.Text == "union")
                return (TokenizerSourceKind.Union, null);
            if (s.Text == "base")
                return (TokenizerSourceKind.Base, null);
        }
        return (TokenizerSourceKind.Model, Model(node, what));
    }

    private TokenSettings TokenSettingsOf(YNode node, string token)
    {
        // mergekit rejects a bare 'TOKEN:' line; it can only mean "add this token with default settings".
        if (node is YScalar { IsNull: true })
            return new TokenSettings(null, false);
        var what = $"token '{token}'";
        var fields = Fields(node, what, ["source", "force"], hasParameters: false);
        var force = Value(fields, "force") is { } forceNode && Boolean(forceNode, $"{what} 'force'");
        TokenSource? source = null;
        if (Value(fields, "source") is { } sourceNode)
        {
            if (sourceNode is YMapping sourceMap && sourceMap.Entries.Any(e => e.Key.Text == "kind"))
            {
                var kindNode = sourceMap.Entries.First(e => e.Key.Text == "kind").Value;
                var kind = StringValue(kindNode, $"{what} source 'kind'");
                switch (kind)
                {
                    case "zero":
                        Fields(sourceNode, $"{what} source", ["kind"], hasParameters: false);
                        source = new TokenSource.Zero();
                        break;
                    case "model_token":
                    {
                        var sf = Fields(
                            sourceNode,
                            $"{what} source",
                            ["kind", "model", "token", "token_id"],
                            hasParameters: false
                        );
                        var modelNode = Value(sf, "model")
                            ?? throw Error(sourceNode, $"{what}: a 'model_token' source needs a 'model'");
                        var text = Value(sf, "token") is { } tokenNode
                            ? StringValue(tokenNode, $"{what} source 'token'")
                            : null;
                        int? id = null;
                        if (Value(sf, "token_id") is { } idNode)
                        {
                            var v = Integer(idNode, $"{what} source 'token_id'");
                            if (v < 0 || v > int.MaxValue)
                                throw Error(
                                    idNode,
                                    $"{what} source 'token_id' must be a non-negative whole number, not {v}"
                                );
                            id = (int)v;
                        }
                        if ((text is null) == (id is null))
                            throw Error(
                                sourceNode,
                                $"{what}: a 'model_token' source needs exactly one of 'token' or 'token_id'"
                            );
                        source = new TokenSource.ModelToken(Model(modelNode, $"{what} source 'model'"), text, id);
                        break;
                    }
                    default:
                        throw Error(kindNode, $"{what}: source 'kind' must be 'model_token' or 'zero', not '{kind}'");
                }
            }
            else
            {
                source = new TokenSource.FromModel(Model(sourceNode, $"{what} 'source'"));
            }
        }
        return new TokenSettings(source, force);
    }

    private static string? ChatTemplate(YNode? node)
    {
        if (node is null)
            return null;
        var template = StringValue(node, "'chat_template'");
        if (template.Length == 0)
            return null; // mergekit: an empty template means "not set"
        RecipeRules.CheckChatTemplate(template, node.Location);
        return template;
    }
}
