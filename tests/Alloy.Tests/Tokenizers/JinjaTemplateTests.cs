using System.Text.Json.Nodes;
using Alloy.Tests.EndToEnd;
using Alloy.Tokenizers.Jinja;

namespace Alloy.Tests.Tokenizers;

/// <summary>
/// Alloy's Jinja subset renders real models' chat templates (Qwen2, Qwen2.5 with tools, Llama-2, Llama-3, Mistral,
/// Zephyr) and two templates of its own that exercise whitespace control and every expression form, exactly as Jinja2
/// does with transformers' settings (tests/fixtures/chat-templates/reference/renders.json, made by make_renders.py with
/// Debian's python3-jinja2), and refuses what it does not support with the line and column.
/// </summary>
public sealed class JinjaTemplateTests
{
    private static readonly string Fixtures = Path.Combine(
        ExampleTests.RepositoryRoot,
        "tests",
        "fixtures",
        "chat-templates"
    );

    private static readonly Lazy<JsonArray> s_renders = new(() =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures, "reference", "renders.json")))!["renders"]!.AsArray()
    );

    public static TheoryData<string, string> References()
    {
        var data = new TheoryData<string, string>();
        foreach (var entry in s_renders.Value)
            data.Add((string)entry!["template"]!, (string)entry["case"]!);
        return data;
    }

    private static readonly DateTime FixedNow = new(2024, 7, 26, 9, 30, 0);

    [Theory]
    [MemberData(nameof(References))]
    public void Renders_as_jinja2_does(string templateFile, string @case)
    {
        var entry = s_renders.Value.Single(e =>
            (string)e!["template"]! == templateFile && (string)e["case"]! == @case
        )!;
        var template = JinjaTemplate.Parse(File.ReadAllText(Path.Combine(Fixtures, templateFile)), templateFile);
        var variables = entry["variables"]!.AsObject().ToDictionary(p => p.Key, p => (object?)p.Value);
        if (entry["error"] is { } error)
        {
            var e = Assert.Throws<AlloyException>(() => template.Render(variables, () => FixedNow));
            Assert.Contains($"the template raised an error: {(string)error!}", e.Message);
            Assert.StartsWith($"{templateFile}:", e.Message);
            return;
        }
        Assert.Equal((string)entry["render"]!, template.Render(variables, () => FixedNow));
    }

    [Fact]
    public void Every_fixture_template_has_reference_renders()
    {
        var rendered = s_renders.Value.Select(e => (string)e!["template"]!).ToHashSet();
        Assert.Equal(9, rendered.Count);
        Assert.All(Directory.GetFiles(Fixtures, "*.jinja"), f => Assert.Contains(Path.GetFileName(f), rendered));
    }

    private static string Render(string template, object? messages = null) =>
        JinjaTemplate
            .Parse(template, "t.jinja")
            .Render(new Dictionary<string, object?> { ["messages"] = messages ?? Array.Empty<object>() });

    [Theory]
    [InlineData("a\n{% macro m() %}x{% endmacro %}", "t.jinja:2:4: '{% macro %}' is not supported by Alloy's Jinja")]
    [InlineData("{% include 'x' %}", "t.jinja:1:4: '{% include %}' is not supported")]
    [InlineData("{% set x %}y{% endset %}", "t.jinja:1:10: a block '{% set %}'")]
    [InlineData("{{ x | wordwrap }}", "t.jinja:1:8: the filter 'wordwrap' is not supported by Alloy's Jinja subset")]
    [InlineData("{{ x is sameas y }}", "t.jinja:1:9: the test 'sameas' is not supported")]
    [InlineData("{{ f(*args) }}", "t.jinja:1:6: *args and **kwargs are not supported")]
    [InlineData("{% for x in y recursive %}{% endfor %}", "t.jinja:1:15: recursive loops are not supported")]
    [InlineData("{% break %}", "t.jinja:1:4: '{% break %}' outside a for loop")]
    [InlineData("{% if x %}", "t.jinja:1:4: '{% if %}' is never closed with '{% endif %}'")]
    [InlineData("{% endfor %}", "t.jinja:1:4: '{% endfor %}' has no open block")]
    [InlineData("x {{ 1 + }}", "t.jinja:1:10: unexpected the end of the tag")]
    [InlineData("{{ 'open }}", "t.jinja:1:4: a string is never closed")]
    [InlineData("{{ x ", "t.jinja:1:1: '{{' is never closed with '}}'")]
    [InlineData("{{ x.strip(1, 2) }}", null)]
    public void Unsupported_or_malformed_syntax_is_refused_with_where(string template, string? expected)
    {
        if (expected is null)
        {
            // A method call on an undefined value is an error at render time, as in Jinja2.
            var e = Assert.Throws<AlloyException>(() => Render(template));
            Assert.Equal("t.jinja:1:5: 'x' is undefined", e.Message);
            return;
        }
        var error = Assert.Throws<AlloyException>(() => JinjaTemplate.Parse(template, "t.jinja"));
        Assert.StartsWith(expected, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Theory]
    [InlineData("{{ messages[0].content.tool }}", "t.jinja:1:31: 'str object' has no attribute 'tool'", false)]
    [InlineData("{{ messages[0].nothing.deeper }}", "t.jinja:1:23: 'dict object' has no attribute 'nothing'", true)]
    [InlineData("{{ 'a' + 1 }}", "t.jinja:1:8: unsupported operand types for +: 'str' and 'int'", true)]
    [InlineData("{{ 1 // 0 }}", "t.jinja:1:6: division by zero", true)]
    [InlineData("{{ 'x'.encode() }}", "t.jinja:1:14: 'str' has no method 'encode' in Alloy's Jinja subset", true)]
    [InlineData("{{ 'x' | tojson(ensure_ascii=true) }}", "t.jinja:1:10: tojson's ensure_ascii", true)]
    [InlineData("{% set a, b = 'xyz' %}", "t.jinja:1:4: cannot unpack str into 2 names", true)]
    public void Type_errors_are_refused_at_render_time_with_where(string template, string expected, bool fails)
    {
        object[] messages = [new Dictionary<string, object?> { ["role"] = "user", ["content"] = "Hi" }];
        if (!fails)
        {
            Assert.Equal("", Render(template, messages)); // an attribute of a string is undefined, printed as nothing
            return;
        }
        var e = Assert.Throws<AlloyException>(() => Render(template, messages));
        Assert.StartsWith(expected, e.Message);
    }

    [Fact]
    public void Generation_blocks_render_their_body_and_loop_scopes_do_not_leak()
    {
        Assert.Equal("<a>x</a>", Render("<a>{% generation %}x{% endgeneration %}</a>"));
        // Each iteration starts from the enclosing value; what it set is gone after the loop (Jinja2's scoping).
        Assert.Equal(
            "[out1][out2]out",
            Render("{% set x = 'out' %}{% for i in [1, 2] %}[{{ x }}{% set x = i %}{{ x }}]{% endfor %}{{ x }}")
        );
        Assert.Equal("3", Render("{% if true %}{% set z = 3 %}{% endif %}{{ z }}"));
    }

    [Fact]
    public void A_trailing_newline_is_dropped_and_line_endings_are_normalised()
    {
        Assert.Equal("a\nb", Render("a\r\nb\n"));
        Assert.Equal("a\n", Render("a\n\n"));
    }
}
