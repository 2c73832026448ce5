using System.Text.Json.Nodes;
using Alloy.Synthetic;
using Alloy.Tests.Support;
using Alloy.Tokenizers;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Tests.Tokenizers;

/// <summary>
/// A model's chat template as transformers finds it (chat_template.jinja first, then tokenizer_config.json's string or
/// its "default" entry), rendered with the tokenizer's special tokens; a model without one is refused in one line.
/// </summary>
public sealed class ChatPromptTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    private const string Template =
        "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}"
        + "{% if add_generation_prompt %}<assistant>{% endif %}";

    private TextTokenizer Tokenizer(string name, JsonNode? configTemplate = null, string? jinjaFile = null)
    {
        var folder = _work[name];
        Directory.CreateDirectory(folder);
        ByteTokenizer.Write(folder, ByteTokenizer.MinimumVocabSize);
        if (configTemplate is not null)
        {
            var configPath = Path.Combine(folder, "tokenizer_config.json");
            var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
            config["chat_template"] = configTemplate;
            File.WriteAllText(configPath, config.ToJsonString());
        }
        if (jinjaFile is not null)
            File.WriteAllText(Path.Combine(folder, "chat_template.jinja"), jinjaFile);
        return TextTokenizer.Load(folder);
    }

    private static readonly ChatMessage[] Conversation = [new("user", "Hi"), new("assistant", "Hello")];

    [Fact]
    public void The_config_template_renders_with_the_special_tokens_and_the_generation_prompt()
    {
        var chat = ChatPrompt.For(Tokenizer("string", Template));
        Assert.Equal("<s><user>Hi</s><assistant>Hello</s><assistant>", chat.Render(Conversation));
        Assert.Equal("<s><user>Hi</s>", chat.Render([Conversation[0]], addGenerationPrompt: false));
    }

    [Fact]
    public void A_list_of_named_templates_gives_the_default_and_chat_template_jinja_comes_first()
    {
        var named = new JsonArray(
            new JsonObject { ["name"] = "tool_use", ["template"] = "tools" },
            new JsonObject { ["name"] = "default", ["template"] = Template }
        );
        Assert.Equal("<s><user>Hi</s>", ChatPrompt.For(Tokenizer("named", named)).Render([Conversation[0]], false));

        var both = Tokenizer("both", "config {{ messages | length }}", jinjaFile: "file {{ messages | length }}\n");
        Assert.Equal("file 2", ChatPrompt.For(both).Render(Conversation));
    }

    [Fact]
    public void A_model_without_a_chat_template_is_refused_in_one_line()
    {
        var tokenizer = Tokenizer("none");
        var e = Assert.Throws<AlloyException>(() => ChatPrompt.For(tokenizer));
        Assert.Equal(
            $"{_work["none"]}: the model has no chat template (no chat_template.jinja, no chat_template in "
                + "tokenizer_config.json); evaluate without --chat-template or add one",
            e.Message
        );
    }

    [Fact]
    public void Template_errors_name_the_file_line_and_column()
    {
        var chat = ChatPrompt.For(Tokenizer("raises", jinjaFile: "ok\n{{ raise_exception('roles must alternate') }}"));
        var e = Assert.Throws<AlloyException>(() => chat.Render(Conversation));
        Assert.Equal(
            $"{Path.Combine(_work["raises"], "chat_template.jinja")}:2:19: the template raised an error: roles must "
                + $"alternate",
            e.Message
        );
        var macro = Assert.Throws<AlloyException>(() =>
            ChatPrompt.For(Tokenizer("macro", "{% macro x() %}{% endmacro %}"))
        );
        Assert.Contains("tokenizer_config.json:1:4: '{% macro %}' is not supported", macro.Message);
    }
}
