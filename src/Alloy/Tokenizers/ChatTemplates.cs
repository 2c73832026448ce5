namespace Alloy.Tokenizers;

/// <summary>
/// The chat templates <c>chat_template:</c> can name, written for Alloy from each format's published description
/// (the names are mergekit's), and the choice of template for <c>auto</c>.
/// </summary>
public static class ChatTemplates
{
    /// <summary>ChatML (OpenAI's chat markup, used by Qwen, Hermes and many fine-tunes).</summary>
    public const string ChatMl = """
        {%- for message in messages -%}
            {{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}
        {%- endfor -%}
        {%- if add_generation_prompt -%}
            {{- '<|im_start|>assistant\n' -}}
        {%- endif -%}
        """;

    /// <summary>Meta Llama 3: header-wrapped roles, trimmed content, each turn closed by &lt;|eot_id|&gt;.</summary>
    public const string Llama3 = """
        {{- bos_token -}}
        {%- for message in messages -%}
            {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + (message['content'] | trim) + '<|eot_id|>' -}}
        {%- endfor -%}
        {%- if add_generation_prompt -%}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {%- endif -%}
        """;

    /// <summary>
    /// Stanford Alpaca: a preamble (or the system message), then "### Instruction:" / "### Response:" blocks.
    /// </summary>
    public const string Alpaca = """
        {%- if not messages or messages[0]['role'] != 'system' -%}
            {{- 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n' -}}
        {%- endif -%}
        {%- for message in messages -%}
            {%- if message['role'] == 'system' -%}
                {{- message['content'] + '\n\n' -}}
            {%- elif message['role'] == 'user' -%}
                {{- '### Instruction:\n' + message['content'] + '\n\n' -}}
            {%- elif message['role'] == 'assistant' -%}
                {{- '### Response:\n' + message['content'] + eos_token + '\n\n' -}}
            {%- endif -%}
        {%- endfor -%}
        {%- if add_generation_prompt -%}
            {{- '### Response:\n' -}}
        {%- endif -%}
        """;

    /// <summary>
    /// Mistral Instruct: [INST] … [/INST] around user turns, answers closed by the end-of-sequence token; a system
    /// message joins the first user turn.
    /// </summary>
    public const string Mistral = """
        {%- set system = '' -%}
        {%- set turns = messages -%}
        {%- if messages and messages[0]['role'] == 'system' -%}
            {%- set system = messages[0]['content'] + '\n\n' -%}
            {%- set turns = messages[1:] -%}
        {%- endif -%}
        {{- bos_token -}}
        {%- for message in turns -%}
            {%- if message['role'] == 'user' -%}
                {{- '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' -}}
            {%- elif message['role'] == 'assistant' -%}
                {{- ' ' + message['content'] + eos_token -}}
            {%- endif -%}
        {%- endfor -%}
        """;

    /// <summary>
    /// LG EXAONE: [|system|], [|user|] and [|assistant|] markers, system and assistant turns closed by [|endofturn|].
    /// </summary>
    public const string Exaone = """
        {%- for message in messages -%}
            {%- if message['role'] == 'system' -%}
                {{- '[|system|]' + message['content'] + '[|endofturn|]\n' -}}
            {%- elif message['role'] == 'user' -%}
                {{- '[|user|]' + message['content'] + '\n' -}}
            {%- elif message['role'] == 'assistant' -%}
                {{- '[|assistant|]' + message['content'] + '[|endofturn|]\n' -}}
            {%- endif -%}
        {%- endfor -%}
        {%- if add_generation_prompt -%}
            {{- '[|assistant|]' -}}
        {%- endif -%}
        """;

    /// <summary>Built-in templates by the name <c>chat_template:</c> uses.</summary>
    public static IReadOnlyDictionary<string, string> BuiltIn { get; } =
        new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["chatml"] = ChatMl,
            ["llama3"] = Llama3,
            ["alpaca"] = Alpaca,
            ["mistral"] = Mistral,
            ["exaone"] = Exaone,
        };

    /// <summary>
    /// The template to store for a <c>chat_template:</c> setting, or null to keep what the tokenizer has: a built-in
    /// name gives its template, <c>auto</c> the most common template among the inputs (compared without surrounding
    /// whitespace; a tie goes to the model listed first; none found leaves the tokenizer's own), anything else is a
    /// literal template (the recipe reader has checked it).
    /// </summary>
    public static string? Resolve(string? setting, IEnumerable<ModelTokenizer> inputs, Diagnostics diagnostics)
    {
        if (setting is null)
            return null;
        if (BuiltIn.TryGetValue(setting, out var builtIn))
            return builtIn;
        if (setting != "auto")
            return setting;

        var templates = inputs
            .Where(t => t.ChatTemplate is not null)
            .Select(t => (t.Name, Template: t.ChatTemplate!.Trim()))
            .ToList();
        if (templates.Count == 0)
        {
            diagnostics.Warn(
                "chat_template: auto found no chat template among the input models; the output keeps its tokenizer's "
                    + "own"
            );
            return null;
        }
        // GroupBy keeps first-appearance order, and OrderByDescending is stable: ties go to the first model.
        var chosen = templates
            .GroupBy(t => t.Template, StringComparer.Ordinal)
            .OrderByDescending(g => g.Count())
            .First();
        diagnostics.Info(
            $"chat_template: auto chose the template of {string.Join(", ", chosen.Select(t => $"'{t.Name}'"))} "
                + $"({chosen.Count()} of {templates.Count} models with a template)"
        );
        return chosen.Key;
    }
}
