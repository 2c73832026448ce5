using System.CommandLine;
using Alloy.Methods;

namespace Alloy.Cli;

/// <summary>
/// <c>alloy methods [NAME]</c>: the merge methods, or one method's parameters, from their declarations.
/// </summary>
public static class MethodsCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var name = new Argument<string?>("name")
        {
            Description = "A method's name: show its parameters.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var markdown = new Option<bool>("--markdown")
        {
            Description = "Print the parameter reference of docs/methods.md (every method) as Markdown.",
        };
        var updateDocs = new Option<string?>("--update-docs")
        {
            Description = "Rewrite the parameter reference at the end of this Markdown file (docs/methods.md).",
            HelpName = "FILE",
        };
        var plugins = new Option<string[]>("--plugin")
        {
            Description = "Also list the methods of this .NET assembly; repeatable.",
            HelpName = "FILE.dll",
        };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Stack traces with errors." };
        var command = new Command(
            "methods",
            "List the merge methods (name, title, paper), or one method's parameters with their types, ranges, "
                + "defaults and descriptions."
        )
        {
            name,
            markdown,
            updateDocs,
            plugins,
            verbose,
        };
        command.SetAction(parse => ErrorPolicy.Run(stderr, parse.GetValue(verbose), _ =>
            {
                foreach (var plugin in parse.GetValue(plugins) ?? [])
                    MethodRegistry.LoadPlugin(plugin);
                if (parse.GetValue(updateDocs) is { } file)
                {
                    if (!File.Exists(file))
                        throw new AlloyException($"--update-docs: {file}: no such file");
                    File.WriteAllText(
                        file,
                        MethodCatalog.WithReference(File.ReadAllText(file), MethodRegistry.BuiltIn)
                    );
                    stdout.WriteLine(
                        $"updated the parameter reference of {file} ({MethodRegistry.BuiltIn.Count} methods)"
                    );
                    return ExitCodes.Success;
                }
                if (parse.GetValue(markdown))
                {
                    stdout.Write(MethodCatalog.Reference(MethodRegistry.All));
                    return ExitCodes.Success;
                }
                if (parse.GetValue(name) is not { } wanted)
                {
                    var rows = MethodCatalog.Rows(MethodRegistry.All);
                    int nameWidth = rows.Max(r => r.Name.Length),
                        titleWidth = rows.Max(r => r.Title.Length);
                    foreach (var (n, title, paper) in rows)
                        stdout.WriteLine($"{n.PadRight(nameWidth)}  {title.PadRight(titleWidth)}  {paper}".TrimEnd());
                    stdout.WriteLine();
                    stdout.WriteLine("'alloy methods NAME' shows a method's parameters.");
                    return ExitCodes.Success;
                }
                var method = MethodRegistry.Find(wanted)
                    ?? throw new AlloyException(
                        $"unknown merge method '{wanted}'"
                            + (
                                Suggestions.Closest(wanted, MethodRegistry.All.Select(m => m.Name)) is { } near
                                    ? $"; did you mean '{near}'?"
                                    : "; 'alloy methods' lists them"
                            )
                    );
                Describe(method, stdout);
                return ExitCodes.Success;
            }));
        return command;
    }

    private static void Describe(MergeMethod method, TextWriter stdout)
    {
        var d = method.Declaration;
        stdout.WriteLine($"{d.Name}: {d.Title}");
        stdout.WriteLine($"  {d.Summary}");
        if (d.Paper is { } paper)
            stdout.WriteLine($"  paper: {paper}");
        stdout.WriteLine($"  base_model: {MethodCatalog.BaseModelText(d.BaseModel)}");
        stdout.WriteLine();
        if (d.Parameters.Count == 0)
        {
            stdout.WriteLine("  no parameters");
            return;
        }
        var rows = d
            .Parameters.Select(p =>
                (
                    p.Name,
                    Scope: MethodCatalog.ScopeText(p.Scope),
                    p.Accepts,
                    Default: MethodCatalog.DefaultText(p),
                    p.Description
                )
            )
            .ToList();
        int w1 = Math.Max(9, rows.Max(r => r.Name.Length)),
            w2 = Math.Max(5, rows.Max(r => r.Scope.Length)),
            w3 = Math.Max(5, rows.Max(r => r.Accepts.Length)),
            w4 = Math.Max(7, rows.Max(r => r.Default.Length));
        stdout.WriteLine(
            $"  {"parameter".PadRight(w1)}  {"scope".PadRight(w2)}  {"takes".PadRight(w3)}  "
                + $"{"default".PadRight(w4)}  description"
        );
        foreach (var r in rows)
            stdout.WriteLine(
                $"  {r.Name.PadRight(w1)}  {r.Scope.PadRight(w2)}  {r.Accepts.PadRight(w3)}  {r.Default.PadRight(w4)}  "
                    + $"{r.Description}"
            );
    }
}
