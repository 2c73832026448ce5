using System.Text.Json.Nodes;
using Alloy.Tests.Support;
using Alloy.Tokenizers;

namespace Alloy.Tests.EndToEnd;

/// <summary>chat_template in copy mode and tokenizer mode: where it is stored, and what else is left alone.</summary>
public sealed class ChatTemplateMergeTests : IClassFixture<TokenizerFamily>, IDisposable
{
    private readonly TokenizerFamily _models;
    private readonly TempFolder _work = new();

    public ChatTemplateMergeTests(TokenizerFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    private string Out => _work["out"];

    private string Config(string extra) =>
        _work.Write(
            "config.yml",
            TokenizerFamily.LinearRecipe(
                _models.Base,
                extra,
                (_models.Base, 1),
                (_models.ChatMl, 1),
                (_models.Merges, 1)
            )
        );

    private void AssertTemplate(string expected)
    {
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(Out, "tokenizer_config.json")))!;
        Assert.Equal(expected, (string)config["chat_template"]!);
        Assert.Equal(expected, File.ReadAllText(Path.Combine(Out, "chat_template.jinja")));
    }

    [Fact]
    public void A_built_in_name_is_stored_in_the_copied_tokenizer_and_nothing_else_changes()
    {
        var result = AlloyCli.Merge(Config("chat_template: chatml"), Out);
        Assert.DoesNotContain("chat_template", result.Stderr);
        AssertTemplate(ChatTemplates.ChatMl);
        Assert.Contains("<|im_start|>", File.ReadAllText(Path.Combine(Out, "chat_template.jinja")));
        Assert.Equal(
            File.ReadAllBytes(Path.Combine(_models.Base, "tokenizer.json")),
            File.ReadAllBytes(Path.Combine(Out, "tokenizer.json"))
        );
        var before = JsonNode.Parse(File.ReadAllText(Path.Combine(_models.Base, "tokenizer_config.json")))!.AsObject();
        var after = JsonNode.Parse(File.ReadAllText(Path.Combine(Out, "tokenizer_config.json")))!.AsObject();
        after.Remove("chat_template");
        Assert.True(JsonNode.DeepEquals(before, after));
    }

    [Fact]
    public void A_literal_template_is_kept_verbatim()
    {
        const string literal =
            "{% for message in messages %}[{{ message['role'] }}] {{ message['content'] }}\n{% endfor %}";
        AlloyCli.Merge(Config($"chat_template: \"{literal.Replace("\n", "\\n")}\""), Out);
        AssertTemplate(literal);
    }

    [Fact]
    public void Auto_takes_the_template_most_inputs_share()
    {
        AlloyCli.Merge(Config("chat_template: auto"), Out);
        AssertTemplate(TokenizerFamily.ChatTemplate);
    }

    [Fact]
    public void In_tokenizer_mode_the_template_goes_into_the_written_tokenizer()
    {
        AlloyCli.Merge(Config("tokenizer_source: union\nchat_template: llama3"), Out);
        AssertTemplate(ChatTemplates.Llama3);
        Assert.NotNull(
            JsonNode.Parse(File.ReadAllText(Path.Combine(Out, "tokenizer_config.json")))!["added_tokens_decoder"]![
                "263"
            ]
        );
    }

    [Fact]
    public void Without_a_copied_tokenizer_the_template_is_not_saved_and_that_is_said()
    {
        var result = AlloyCli.Merge(Config("chat_template: chatml"), Out, "--no-copy-tokenizer");
        Assert.Contains("the chat template is not saved", result.Stderr);
        Assert.False(File.Exists(Path.Combine(Out, "tokenizer_config.json")));
        Assert.False(File.Exists(Path.Combine(Out, "chat_template.jinja")));
    }
}
