using System.Text;

namespace Alloy.Methods;

/// <summary>
/// The methods and their parameters as people read them, from the declarations alone: the lines <c>alloy methods</c>
/// prints and the parameter reference of docs/methods.md, so neither can drift from the code.
/// </summary>
public static class MethodCatalog
{
    /// <summary>Where the generated reference starts in docs/methods.md; everything after it is generated.</summary>
    public const string ReferenceHeading = "## Parameter reference";

    /// <summary>One row per method: name, title, paper.</summary>
    public static IReadOnlyList<(string Name, string Title, string Paper)> Rows(IEnumerable<MergeMethod> methods) =>
        [.. methods.Select(m => (m.Name, m.Declaration.Title, m.Declaration.Paper ?? ""))];

    /// <summary>How a method uses base_model, in words.</summary>
    public static string BaseModelText(BaseModelUse use) =>
        use switch
        {
            BaseModelUse.Required => "required (task vectors are taken from it)",
            BaseModelUse.Optional => "optional (with one, the method works on task vectors)",
            _ => "not used (a listed base is an ordinary input)",
        };

    /// <summary>The scope, in words.</summary>
    public static string ScopeText(ParameterScope scope) => scope == ParameterScope.Global ? "global" : "per model";

    /// <summary>The default, or "required".</summary>
    public static string DefaultText(MethodParameter parameter) =>
        parameter.DefaultText ?? (parameter.Required ? "required" : "none");

    /// <summary>
    /// The generated reference section: for each method its name, title, summary, paper, use of base_model, and a table
    /// of its parameters (scope, what it takes, default, description).
    /// </summary>
    public static string Reference(IEnumerable<MergeMethod> methods)
    {
        var text = new StringBuilder();
        text.Append(ReferenceHeading).Append("\n\n");
        text.Append(
            "Generated from the methods' declarations by `alloy methods --markdown` (a test checks that this section "
                + "is\n"
        );
        text.Append(
            "what the code declares). Per-model parameters may be set on a model, on a slice or at the top level, "
                + "global ones\n"
        );
        text.Append("on a slice or at the top level; numbers may be gradients or filtered ([config.md](config.md)).\n");
        foreach (var method in methods)
        {
            var d = method.Declaration;
            text.Append("\n### ").Append(d.Name).Append("\n\n");
            text.Append(d.Title).Append(": ").Append(d.Summary).Append('\n');
            if (d.Paper is { } paper)
                text.Append("Paper: <").Append(paper).Append(">. ");
            text.Append("Base model: ").Append(BaseModelText(d.BaseModel)).Append(".\n\n");
            if (d.Parameters.Count == 0)
            {
                text.Append("No parameters.\n");
                continue;
            }
            text.Append("| parameter | scope | takes | default | |\n|---|---|---|---|---|\n");
            foreach (var p in d.Parameters)
                text.Append(
                    $"| `{p.Name}` | {ScopeText(p.Scope)} | {p.Accepts} | {DefaultText(p)} | "
                        + $"{p.Description.Replace("|", "\\|")} |\n"
                );
        }
        return text.ToString();
    }

    /// <summary>
    /// <paramref name="document"/> with its generated reference section (from <see cref="ReferenceHeading"/> on)
    /// replaced.
    /// </summary>
    public static string WithReference(string document, IEnumerable<MergeMethod> methods)
    {
        int at = document.IndexOf("\n" + ReferenceHeading + "\n", StringComparison.Ordinal);
        string kept = (at < 0 ? document : document[..at]).TrimEnd();
        return kept + "\n\n" + Reference(methods);
    }
}
