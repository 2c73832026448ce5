using System.Text;

namespace Alloy.Tokenizers.Jinja;

/// <summary>
/// A Jinja2 template in the subset real chat templates use, rendered as transformers renders them (Jinja2 with
/// trim_blocks and lstrip_blocks on, its tojson, raise_exception and strftime_now). NuGet has no Jinja2 engine for
/// .NET, so this is Alloy's own, checked against Jinja2's renders of real models' templates in the tests.
/// <para>
/// Supported: <c>{{ }}</c>, <c>{# #}</c>, <c>{% if/elif/else %}</c>, <c>{% for x in xs [if c] %}</c> (with
/// <c>else</c>, <c>loop.index0/index/first/last/length/revindex/revindex0/previtem/nextitem</c>, break, continue,
/// <c>for k, v in d.items()</c>), <c>{% set x = … %}</c> and <c>{% set ns.x = … %}</c> with <c>namespace()</c>,
/// transformers' <c>{% generation %}</c>, whitespace control (<c>-</c>, <c>+</c>); literals (strings, numbers,
/// lists, tuples, dicts, true/false/none in either case); the operators and tests, filters and methods of
/// <see cref="JinjaBuiltins"/>. Anything else (macros, includes, block set, unknown filters or tests …) is refused
/// with its line and column when the template is parsed, and type errors when it is rendered: never a silently
/// different text.
/// </para>
/// </summary>
public sealed class JinjaTemplate
{
    private readonly IReadOnlyList<Statement> _body;
    private readonly string _origin;

    private JinjaTemplate(IReadOnlyList<Statement> body, string origin)
    {
        _body = body;
        _origin = origin;
    }

    /// <summary>
    /// Parses <paramref name="source"/>; <paramref name="origin"/> names it in messages ("origin:line:column: …").
    /// </summary>
    public static JinjaTemplate Parse(string source, string origin) =>
        new(JinjaParser.Parse(JinjaLexer.Split(source, origin), origin), origin);

    /// <summary>
    /// Renders the template with these variables: strings, numbers, booleans, null, lists and string-keyed dictionaries
    /// (or JSON nodes). <paramref name="now"/> is strftime_now's clock (default: the local time).
    /// </summary>
    public string Render(IReadOnlyDictionary<string, object?> variables, Func<DateTime>? now = null)
    {
        var globals = new Scope(null);
        foreach (var (name, value) in JinjaBuiltins.Globals(now ?? (() => DateTime.Now)))
            globals.Set(name, value);
        var scope = new Scope(globals);
        foreach (var (name, value) in variables)
            scope.Set(name, Py.FromHost(value));
        var output = new StringBuilder();
        try
        {
            Statement.RenderAll(_body, scope, output);
        }
        catch (JinjaRuntimeError e)
        {
            throw e.At is { } at ? Error(_origin, at, e.Message) : new AlloyException($"{_origin}: {e.Message}");
        }
        return output.ToString();
    }

    internal static AlloyException Error(string origin, Position at, string problem) =>
        new($"{origin}:{at.Line}:{at.Column}: {problem}");
}
