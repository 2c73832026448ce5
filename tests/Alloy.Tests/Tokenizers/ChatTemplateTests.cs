using Alloy.Tests.Support;
using Alloy.Tokenizers;

namespace Alloy.Tests.Tokenizers;

/// <summary>
/// The built-in templates render each format's documented prompt (checked with Hugging Face's Jinja), and auto picks
/// the most common.
/// </summary>
public sealed class ChatTemplateTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    private static readonly object[] Conversation =
    [
        new { role = "system", content = "Be brief." },
        new { role = "user", content = "Hi" },
        new { role = "assistant", content = "Hello!" },
        new { role = "user", content = "Bye" },
    ];

    private static string Render(
        string name,
        object[] messages,
        bool generationPrompt,
        string bos = "<s>",
        string eos = "</s>"
    ) =>
        NodeTools.RenderTemplate(
            ChatTemplates.BuiltIn[name],
            new
            {
                messages,
                add_generation_prompt = generationPrompt,
                bos_token = bos,
                eos_token = eos,
            }
        );

    [Fact]
    public void Chatml_wraps_every_turn_in_im_start_and_im_end()
    {
        Assert.Equal(
            "<|im_start|>system\nBe "
                + "brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
                + "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n",
            Render("chatml", Conversation, true)
        );
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n", Render("chatml", [Conversation[1]], false));
    }

    [Fact]
    public void Llama3_puts_roles_in_headers_trims_content_and_ends_turns_with_eot()
    {
        object[] messages = [Conversation[0], new { role = "user", content = "  Hi \n" }, Conversation[2]];
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                + "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                + "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                + "<|start_header_id|>assistant<|end_header_id|>\n\n",
            Render("llama3", messages, true, bos: "<|begin_of_text|>", eos: "<|eot_id|>")
        );
    }

    [Fact]
    public void Alpaca_uses_the_system_message_or_its_preamble_then_instruction_and_response_blocks()
    {
        Assert.Equal(
            "Be brief.\n\n### Instruction:\nHi\n\n### Response:\nHello!</s>\n\n### Instruction:\nBye\n\n### "
                + "Response:\n",
            Render("alpaca", Conversation, true)
        );
        Assert.Equal(
            "Below is an instruction that describes a task. Write a response that appropriately completes the "
                + "request.\n\n"
                + "### Instruction:\nHi\n\n",
            Render("alpaca", [Conversation[1]], false)
        );
    }

    [Fact]
    public void Mistral_brackets_user_turns_and_folds_the_system_message_into_the_first()
    {
        Assert.Equal(
            "<s>[INST] Be brief.\n\nHi [/INST] Hello!</s>[INST] Bye [/INST]",
            Render("mistral", Conversation, true)
        );
        Assert.Equal("<s>[INST] Hi [/INST]", Render("mistral", [Conversation[1]], false));
    }

    [Fact]
    public void Exaone_marks_roles_and_closes_system_and_assistant_turns()
    {
        Assert.Equal(
            "[|system|]Be "
                + "brief.[|endofturn|]\n[|user|]Hi\n[|assistant|]Hello![|endofturn|]\n[|user|]Bye\n[|assistant|]",
            Render("exaone", Conversation, true)
        );
    }

    [Fact]
    public void The_built_in_names_are_the_ones_the_recipe_reader_accepts()
    {
        Assert.Equal(Alloy.Recipes.RecipeRules.BuiltInChatTemplates.Order(), ChatTemplates.BuiltIn.Keys.Order());
    }

    private ModelTokenizer WithTemplate(string name, string? template)
    {
        var folder = _work[name];
        Directory.CreateDirectory(folder);
        if (template is not null)
            File.WriteAllText(Path.Combine(folder, "chat_template.jinja"), template);
        return ModelTokenizer.Load(name, folder, null, readVocabulary: false);
    }

    [Fact]
    public void Auto_takes_the_most_common_template_ignoring_surrounding_whitespace_and_the_first_model_on_ties()
    {
        var a = WithTemplate("a", "{{ 'A' }}\n");
        var b = WithTemplate("b", "{{ 'B' }}");
        var b2 = WithTemplate("b2", "  {{ 'B' }}\n");
        var none = WithTemplate("none", null);
        Assert.Equal("{{ 'B' }}", ChatTemplates.Resolve("auto", [none, a, b, b2], new Diagnostics()));
        Assert.Equal("{{ 'A' }}", ChatTemplates.Resolve("auto", [a, b], new Diagnostics()));
        Assert.Equal("{{ 'B' }}", ChatTemplates.Resolve("auto", [b, a], new Diagnostics()));

        var diagnostics = new Diagnostics();
        Assert.Null(ChatTemplates.Resolve("auto", [none], diagnostics));
        Assert.Contains("found no chat template", Assert.Single(diagnostics.Warnings));
        Assert.Null(ChatTemplates.Resolve(null, [a], diagnostics));
        Assert.Equal(ChatTemplates.ChatMl, ChatTemplates.Resolve("chatml", [a], diagnostics));
        Assert.Equal(
            "{% for m in messages %}{{ m }}{% endfor %}",
            ChatTemplates.Resolve("{% for m in messages %}{{ m }}{% endfor %}", [a], diagnostics)
        );
    }

    [Fact]
    public void A_template_file_wins_over_the_config_and_a_named_list_gives_its_default()
    {
        var folder = _work["both"];
        Directory.CreateDirectory(folder);
        File.WriteAllText(
            Path.Combine(folder, "tokenizer_config.json"),
            """{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"""
        );
        Assert.Equal("D", ModelTokenizer.Load("m", folder, null, readVocabulary: false).ChatTemplate);
        File.WriteAllText(Path.Combine(folder, "chat_template.jinja"), "J");
        Assert.Equal("J", ModelTokenizer.Load("m", folder, null, readVocabulary: false).ChatTemplate);
    }
}
