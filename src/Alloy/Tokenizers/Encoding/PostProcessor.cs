using System.Text.Json.Nodes;

namespace Alloy.Tokenizers.Encoding;

/// <summary>
/// What a tokenizer.json <c>post_processor</c> adds around a single sequence when special tokens are asked for: the ids
/// before it and after it (TemplateProcessing's single template, RoBERTa's and BERT's cls … sep; ByteLevel adds none).
/// </summary>
internal sealed record PostProcessor(int[] Before, int[] After)
{
    public const string Supported = "TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence";

    public static readonly PostProcessor None = new([], []);

    public static PostProcessor Create(Settings? settings)
    {
        if (settings is not { } s)
            return None;
        var type = s.Type("post-processor");
        switch (type)
        {
            case "ByteLevel":
                return None;
            case "TemplateProcessing":
                return Template(s);
            case "RobertaProcessing":
            case "BertProcessing":
                return new PostProcessor([Pair(s, "cls", type)], [Pair(s, "sep", type)]);
            case "Sequence":
                // Each processor wraps what the ones before it produced.
                var result = None;
                foreach (var step in s.List("processors", "post-processor").Select(p => Create(p)))
                    result = new PostProcessor([.. step.Before, .. result.Before], [.. result.After, .. step.After]);
                return result;
            default:
                throw s.Unsupported("post-processor", type, Supported);
        }
    }

    /// <summary>transformers' Llama-style template from add_bos_token / add_eos_token: [bos] $A [eos].</summary>
    public static PostProcessor BosEos(int? bos, int? eos) => new(bos is { } b ? [b] : [], eos is { } e ? [e] : []);

    private static int Pair(Settings s, string key, string type) =>
        s[key] is JsonArray { Count: 2 } pair && pair[1] is JsonValue v && v.TryGetValue(out int id)
            ? id
            : throw new AlloyException(
                $"{s.Where}: {type} needs \"{key}\" as [token, id]: {StrictJson.Shorten(s.Node)}"
            );

    private static PostProcessor Template(Settings s)
    {
        var specials = new Dictionary<string, int[]>(StringComparer.Ordinal);
        foreach (var (name, value) in s.Node.ObjectField("special_tokens", s.Where) ?? [])
        {
            var at = $"{s.Where}: TemplateProcessing special token '{name}'";
            var ids = StrictJson.AsObject(value, at)?.ArrayField("ids", at)
                ?? throw new AlloyException($"{at} has no \"ids\"");
            specials[name] =
            [
                .. ids.Select(i =>
                    StrictJson.AsInt(i, $"{at}: an id") ?? throw new AlloyException($"{at}: an id is null")
                ),
            ];
        }
        if (s["single"] is not JsonArray single)
            throw new AlloyException(
                $"{s.Where}: TemplateProcessing needs a \"single\" template: {StrictJson.Shorten(s.Node)}"
            );
        List<int> before = [],
            after = [];
        bool seenSequence = false;
        foreach (var piece in single)
        {
            var (isSequence, id) = Piece(piece, s.Where);
            if (isSequence)
            {
                if (seenSequence)
                    throw new AlloyException(
                        $"{s.Where}: TemplateProcessing's single template holds the sequence twice"
                    );
                seenSequence = true;
                continue;
            }
            var ids = specials.GetValueOrDefault(id)
                ?? throw new AlloyException(
                    $"{s.Where}: TemplateProcessing uses special token '{id}', which its \"special_tokens\" does not "
                        + $"define"
                );
            (seenSequence ? after : before).AddRange(ids);
        }
        return new PostProcessor([.. before], [.. after]);
    }

    /// <summary>
    /// A template piece: {"Sequence": {"id": "A"}}, {"SpecialToken": {"id": "&lt;s&gt;"}}, or the string forms "$A",
    /// "&lt;s&gt;:0".
    /// </summary>
    private static (bool IsSequence, string Id) Piece(JsonNode? piece, string where)
    {
        switch (piece)
        {
            case JsonObject o when o["Sequence"] is JsonObject sequence:
                return (true, sequence.StringField("id", $"{where}: a TemplateProcessing Sequence") ?? "A");
            case JsonObject o
                when o["SpecialToken"] is JsonObject special
                    && special["id"] is JsonValue id
                    && id.TryGetValue(out string? name):
                return (false, name);
            case JsonValue v when v.TryGetValue(out string? text):
                var head = text.Split(':')[0];
                return head.StartsWith('$') ? (true, head) : (false, head);
            default:
                throw new AlloyException(
                    $"{where}: a TemplateProcessing piece must be a Sequence or a SpecialToken, not "
                        + $"{StrictJson.Shorten(piece)}"
                );
        }
    }
}
