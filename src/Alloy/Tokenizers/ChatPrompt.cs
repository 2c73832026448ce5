using Alloy.Tokenizers.Encoding;
using Alloy.Tokenizers.Jinja;

namespace Alloy.Tokenizers;

/// <summary>One turn of a conversation: its role ("system", "user", "assistant") and text.</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>
/// A model's chat template, turning a conversation into prompt text as transformers'
/// <c>apply_chat_template(messages, tokenize=False, add_generation_prompt=…)</c> does: the template sees
/// <c>messages</c>, <c>add_generation_prompt</c>, <c>tools</c> and <c>documents</c> (none) and the tokenizer's
/// special tokens (<c>bos_token</c>, <c>eos_token</c>, <c>unk_token</c>, <c>pad_token</c>, those it has).
/// </summary>
public sealed class ChatPrompt
{
    private static readonly string[] SpecialTokenNames = ["bos_token", "eos_token", "unk_token", "pad_token"];

    private readonly JinjaTemplate _template;
    private readonly Dictionary<string, object?> _specialTokens;

    private ChatPrompt(JinjaTemplate template, Dictionary<string, object?> specialTokens)
    {
        _template = template;
        _specialTokens = specialTokens;
    }

    /// <summary>The chat template of <paramref name="tokenizer"/>'s model; a model without one is an error.</summary>
    public static ChatPrompt For(TextTokenizer tokenizer)
    {
        var template = tokenizer.ChatTemplate
            ?? throw new AlloyException(
                $"{Path.GetDirectoryName(tokenizer.Source)}: the model has no chat template (no chat_template.jinja, "
                    + $"no "
                    + "chat_template in tokenizer_config.json); evaluate without --chat-template or add one"
            );
        var special = tokenizer.Special;
        int?[] ids = [special.Bos, special.Eos, special.Unk, special.Pad];
        var texts = new Dictionary<string, object?>(StringComparer.Ordinal);
        for (int i = 0; i < ids.Length; i++)
            if (ids[i] is { } id && tokenizer.TokenContent(id) is { } text)
                texts[SpecialTokenNames[i]] = text;
        return new ChatPrompt(JinjaTemplate.Parse(template, tokenizer.ChatTemplateSource ?? "chat template"), texts);
    }

    /// <summary>
    /// The prompt text of <paramref name="messages"/>, ending with the assistant's header when asked.
    /// </summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        var variables = new Dictionary<string, object?>(_specialTokens, StringComparer.Ordinal)
        {
            ["messages"] = messages
                .Select(m => new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content })
                .ToList(),
            ["add_generation_prompt"] = addGenerationPrompt,
            ["tools"] = null,
            ["documents"] = null,
        };
        return _template.Render(variables);
    }
}
