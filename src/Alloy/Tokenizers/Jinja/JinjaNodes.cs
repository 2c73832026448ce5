using System.Text;

namespace Alloy.Tokenizers.Jinja;

/// <summary>
/// Variables visible to a part of a template. As in Jinja2, each iteration of a for loop gets its own scope (what it
/// sets is gone after the iteration), while if blocks share their enclosing scope.
/// </summary>
internal sealed class Scope(Scope? parent)
{
    private readonly Dictionary<string, object?> _values = new(StringComparer.Ordinal);

    public object? Get(string name)
    {
        for (var scope = this; scope is not null; scope = scope.Parent)
            if (scope._values.TryGetValue(name, out var value))
                return value;
        return new Undefined($"'{name}' is undefined");
    }

    public void Set(string name, object? value) => _values[name] = value;

    private Scope? Parent { get; } = parent;
}

// ---- Expressions ----

internal abstract class Expr(Position at)
{
    public Position At { get; } = at;

    /// <summary>The value, with this expression's position added to an error raised inside it.</summary>
    public object? Evaluate(Scope scope)
    {
        try
        {
            return Eval(scope);
        }
        catch (JinjaRuntimeError e) when (e.At is null)
        {
            throw new JinjaRuntimeError(e.Message, At);
        }
        catch (OverflowException)
        {
            throw new JinjaRuntimeError("integer overflow", At);
        }
    }

    protected abstract object? Eval(Scope scope);
}

internal sealed class Literal(object? value, Position at) : Expr(at)
{
    public object? Value { get; } = value;

    protected override object? Eval(Scope scope) => Value;
}

internal sealed class NameExpr(string name, Position at) : Expr(at)
{
    public string Name { get; } = name;

    protected override object? Eval(Scope scope) => scope.Get(Name);
}

internal sealed class AttributeExpr(Expr target, string name, Position at) : Expr(at)
{
    public Expr Target { get; } = target;

    public string Name { get; } = name;

    protected override object? Eval(Scope scope) => Py.Attribute(Target.Evaluate(scope), Name);
}

internal sealed class ItemExpr(Expr target, Expr key, Position at) : Expr(at)
{
    protected override object? Eval(Scope scope) => Py.Item(target.Evaluate(scope), key.Evaluate(scope));
}

internal sealed class SliceExpr(Expr target, Expr? start, Expr? stop, Expr? step, Position at) : Expr(at)
{
    protected override object? Eval(Scope scope) =>
        Py.Slice(target.Evaluate(scope), start?.Evaluate(scope), stop?.Evaluate(scope), step?.Evaluate(scope));
}

/// <summary>Arguments as written: positional expressions, then name=expression pairs.</summary>
internal sealed record ArgumentList(IReadOnlyList<Expr> Positional, IReadOnlyList<(string Name, Expr Value)> Named)
{
    public static ArgumentList Empty { get; } = new([], []);

    public CallArguments Evaluate(Scope scope, string callee) =>
        new(
            Positional.Select(e => e.Evaluate(scope)).ToList(),
            Named.ToDictionary(n => n.Name, n => n.Value.Evaluate(scope)),
            callee
        );
}

internal sealed class CallExpr(Expr callee, ArgumentList arguments, Position at) : Expr(at)
{
    protected override object? Eval(Scope scope)
    {
        // A method of a string or dict ('text'.strip(), message.get('x')) is called on its receiver.
        if (callee is AttributeExpr method)
        {
            var receiver = method.Target.Evaluate(scope);
            var call = JinjaBuiltins.Method(receiver, method.Name, arguments.Evaluate(scope, method.Name));
            if (call is not null)
                return call();
        }
        return callee.Evaluate(scope) switch
        {
            JinjaFunction function => function.Invoke(arguments.Evaluate(scope, function.Name)),
            Undefined undefined => throw undefined.Error(),
            var other => throw new JinjaRuntimeError($"'{Py.TypeName(other)}' object is not callable"),
        };
    }
}

internal sealed class FilterExpr(Expr value, string name, ArgumentList arguments, Position at) : Expr(at)
{
    private readonly JinjaBuiltins.Filter _filter = JinjaBuiltins.Filters[name];

    protected override object? Eval(Scope scope) => _filter(value.Evaluate(scope), arguments.Evaluate(scope, name));
}

internal sealed class TestExpr(Expr value, string name, ArgumentList arguments, bool negated, Position at) : Expr(at)
{
    private readonly JinjaBuiltins.Test _test = JinjaBuiltins.Tests[name];

    protected override object? Eval(Scope scope) =>
        _test(value.Evaluate(scope), arguments.Evaluate(scope, name)) != negated;
}

internal sealed class NotExpr(Expr operand, Position at) : Expr(at)
{
    protected override object? Eval(Scope scope) => !Py.Truthy(operand.Evaluate(scope));
}

internal sealed class NegateExpr(Expr operand, bool minus, Position at) : Expr(at)
{
    protected override object? Eval(Scope scope)
    {
        var value = operand.Evaluate(scope);
        if (minus)
            return Py.Negate(value);
        return Py.IsNumber(value)
            ? value
            : throw new JinjaRuntimeError($"bad operand type for unary +: '{Py.TypeName(value)}'");
    }
}

/// <summary>
/// <c>and</c> / <c>or</c>: Python's, giving the operand that decided (so <c>x or 'default'</c> works).
/// </summary>
internal sealed class LogicExpr(Expr left, Expr right, bool isAnd, Position at) : Expr(at)
{
    protected override object? Eval(Scope scope)
    {
        var first = left.Evaluate(scope);
        return Py.Truthy(first) == isAnd ? right.Evaluate(scope) : first;
    }
}

/// <summary>+, −, *, /, //, %, ** and ~ (which joins the operands' text).</summary>
internal sealed class BinaryExpr(string op, Expr left, Expr right, Position at) : Expr(at)
{
    protected override object? Eval(Scope scope)
    {
        var a = left.Evaluate(scope);
        var b = right.Evaluate(scope);
        return op switch
        {
            "+" => Py.Add(a, b),
            "~" => Py.Str(a) + Py.Str(b),
            _ => Py.Arithmetic(op, a, b),
        };
    }
}

/// <summary>A comparison chain, <c>a &lt; b &lt;= c</c> meaning <c>a &lt; b and b &lt;= c</c> as in Python.</summary>
internal sealed class CompareExpr(Expr first, IReadOnlyList<(string Op, Expr Operand)> rest, Position at) : Expr(at)
{
    protected override object? Eval(Scope scope)
    {
        var left = first.Evaluate(scope);
        foreach (var (op, operand) in rest)
        {
            var right = operand.Evaluate(scope);
            bool holds = op switch
            {
                "==" => Py.Equal(left, right),
                "!=" => !Py.Equal(left, right),
                "in" => Py.Contains(right, left),
                "not in" => !Py.Contains(right, left),
                "<" => Py.Compare(left, right, op) < 0,
                "<=" => Py.Compare(left, right, op) <= 0,
                ">" => Py.Compare(left, right, op) > 0,
                _ => Py.Compare(left, right, op) >= 0,
            };
            if (!holds)
                return false;
            left = right;
        }
        return true;
    }
}

/// <summary><c>a if condition else b</c>; without else, undefined when the condition is false.</summary>
internal sealed class ConditionalExpr(Expr then, Expr condition, Expr? otherwise, Position at) : Expr(at)
{
    protected override object? Eval(Scope scope) =>
        Py.Truthy(condition.Evaluate(scope)) ? then.Evaluate(scope)
        : otherwise is null ? new Undefined("the condition is false and there is no else")
        : otherwise.Evaluate(scope);
}

internal sealed class ListExpr(IReadOnlyList<Expr> items, bool tuple, Position at) : Expr(at)
{
    public IReadOnlyList<Expr> Items { get; } = items;

    protected override object? Eval(Scope scope)
    {
        var values = Items.Select(i => i.Evaluate(scope)).ToList();
        return tuple ? values.ToArray() : values;
    }
}

internal sealed class DictExpr(IReadOnlyList<(Expr Key, Expr Value)> pairs, Position at) : Expr(at)
{
    protected override object? Eval(Scope scope) =>
        Py.Dict(
            pairs.Select(p =>
                p.Key.Evaluate(scope) is string key
                    ? (key, p.Value.Evaluate(scope))
                    : throw new JinjaRuntimeError("dict keys must be strings in Alloy's Jinja subset")
            )
        );
}

// ---- Statements ----

/// <summary>How a statement ended: normally, or by {% break %} / {% continue %} inside a loop.</summary>
internal enum Flow
{
    Normal,
    Break,
    Continue,
}

internal abstract class Statement(Position at)
{
    public Position At { get; } = at;

    public abstract Flow Render(Scope scope, StringBuilder output);

    public static Flow RenderAll(IReadOnlyList<Statement> body, Scope scope, StringBuilder output)
    {
        foreach (var statement in body)
        {
            var flow = statement.Render(scope, output);
            if (flow != Flow.Normal)
                return flow;
        }
        return Flow.Normal;
    }
}

internal sealed class TextStatement(string text, Position at) : Statement(at)
{
    public override Flow Render(Scope scope, StringBuilder output)
    {
        output.Append(text);
        return Flow.Normal;
    }
}

internal sealed class OutputStatement(Expr value, Position at) : Statement(at)
{
    public override Flow Render(Scope scope, StringBuilder output)
    {
        output.Append(Py.Str(value.Evaluate(scope)));
        return Flow.Normal;
    }
}

internal sealed class IfStatement(
    IReadOnlyList<(Expr Condition, IReadOnlyList<Statement> Body)> branches,
    IReadOnlyList<Statement> otherwise,
    Position at
) : Statement(at)
{
    public override Flow Render(Scope scope, StringBuilder output)
    {
        foreach (var (condition, body) in branches)
            if (Py.Truthy(condition.Evaluate(scope)))
                return RenderAll(body, scope, output);
        return RenderAll(otherwise, scope, output);
    }
}

internal sealed class ForStatement(
    IReadOnlyList<string> targets,
    Expr iterable,
    Expr? filter,
    IReadOnlyList<Statement> body,
    IReadOnlyList<Statement> otherwise,
    Position at
) : Statement(at)
{
    public override Flow Render(Scope scope, StringBuilder output)
    {
        var items = Py.Iterate(iterable.Evaluate(scope));
        if (filter is not null)
            items = items.Where(item => Py.Truthy(filter.Evaluate(Bound(scope, item)))).ToList();
        if (items.Count == 0)
            return RenderAll(otherwise, new Scope(scope), output);
        var loop = new LoopInfo(items);
        for (int i = 0; i < items.Count; i++)
        {
            loop.Index0 = i;
            var iteration = Bound(scope, items[i]);
            iteration.Set("loop", loop);
            if (RenderAll(body, iteration, output) == Flow.Break)
                break;
        }
        return Flow.Normal;
    }

    /// <summary>
    /// A new scope with the loop target(s) set to <paramref name="item"/> (unpacked for <c>for k, v in …</c>).
    /// </summary>
    private Scope Bound(Scope scope, object? item)
    {
        var bound = new Scope(scope);
        Assign.Unpack(targets, item, bound, At);
        return bound;
    }
}

/// <summary>
/// <c>{% set name = value %}</c>, <c>{% set a, b = pair %}</c> or <c>{% set ns.attribute = value %}</c>.
/// </summary>
internal sealed class Assign(IReadOnlyList<string> targets, Expr? owner, Expr value, Position at) : Statement(at)
{
    public override Flow Render(Scope scope, StringBuilder output)
    {
        var result = value.Evaluate(scope);
        if (owner is null)
        {
            Unpack(targets, result, scope, At);
            return Flow.Normal;
        }
        if (owner.Evaluate(scope) is not Namespace ns)
            throw new JinjaRuntimeError("only a namespace() object's attributes can be set", At);
        ns.Attributes[targets[0]] = result;
        return Flow.Normal;
    }

    public static void Unpack(IReadOnlyList<string> targets, object? value, Scope scope, Position at)
    {
        if (targets.Count == 1)
        {
            scope.Set(targets[0], value);
            return;
        }
        var parts = value is string or Undefined or null ? null : Py.Iterate(value);
        if (parts is null || parts.Count != targets.Count)
            throw new JinjaRuntimeError($"cannot unpack {Py.TypeName(value)} into {targets.Count} names", at);
        for (int i = 0; i < targets.Count; i++)
            scope.Set(targets[i], parts[i]);
    }
}

internal sealed class LoopControl(Flow flow, Position at) : Statement(at)
{
    public override Flow Render(Scope scope, StringBuilder output) => flow;
}

/// <summary>
/// transformers' <c>{% generation %}</c> block, which marks assistant text for training masks: rendered as its body.
/// </summary>
internal sealed class BlockStatement(IReadOnlyList<Statement> body, Position at) : Statement(at)
{
    public override Flow Render(Scope scope, StringBuilder output) => RenderAll(body, scope, output);
}
