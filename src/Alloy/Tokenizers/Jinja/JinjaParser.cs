namespace Alloy.Tokenizers.Jinja;

/// <summary>
/// Builds the statement tree of a template from its segments, with Jinja2's grammar and operator precedence
/// (lowest first): <c>x if c else y</c>, <c>or</c>, <c>and</c>, <c>not</c>, comparisons and <c>in</c>, <c>+ -</c>,
/// <c>~</c>, <c>* / // %</c>, <c>**</c>, unary <c>- +</c>; then subscripts, attributes and calls; then filters
/// (<c>|</c>) and tests (<c>is</c>), which bind tighter than any operator (<c>'a' + x | trim</c> trims x only).
/// </summary>
internal sealed class JinjaParser
{
    /// <summary>Jinja2 statements outside the subset: named in the error instead of being misread.</summary>
    private static readonly HashSet<string> UnsupportedStatements =
    [
        "macro",
        "call",
        "filter",
        "include",
        "import",
        "from",
        "extends",
        "block",
        "with",
        "raw",
        "do",
        "autoescape",
        "trans",
    ];

    private readonly IReadOnlyList<Segment> _segments;
    private readonly string _origin;
    private int _nextSegment;
    private int _loopDepth;
    private IReadOnlyList<Token> _tokens = [];
    private int _position;

    private JinjaParser(IReadOnlyList<Segment> segments, string origin)
    {
        _segments = segments;
        _origin = origin;
    }

    public static IReadOnlyList<Statement> Parse(IReadOnlyList<Segment> segments, string origin) =>
        new JinjaParser(segments, origin).Body([], "", default, out _);

    /// <summary>
    /// Statements up to a statement tag whose keyword is one of <paramref name="ends"/> (given back, with the tag's
    /// tokens positioned after it), or to the end of the template when <paramref name="ends"/> is empty.
    /// </summary>
    private List<Statement> Body(string[] ends, string opener, Position openedAt, out string end)
    {
        var body = new List<Statement>();
        while (_nextSegment < _segments.Count)
        {
            var segment = _segments[_nextSegment++];
            if (segment is TextSegment text)
            {
                body.Add(new TextStatement(text.Text, text.At));
                continue;
            }
            var tag = (TagSegment)segment;
            _tokens = tag.Tokens;
            _position = 0;
            if (!tag.IsStatement)
            {
                var value = Tuple(withCondition: true);
                ExpectEnd();
                body.Add(new OutputStatement(value, tag.At));
                continue;
            }
            var keyword = Current;
            if (keyword.Kind != TokenKind.Name)
                throw Error(keyword.At, $"expected a statement name, found {keyword.Describe()}");
            Advance();
            if (ends.Contains(keyword.Text))
            {
                end = keyword.Text;
                return body;
            }
            body.Add(Statement(keyword));
        }
        if (ends.Length > 0)
            throw Error(openedAt, $"'{{% {opener} %}}' is never closed with '{{% {ends[^1]} %}}'");
        end = "";
        return body;
    }

    private Statement Statement(Token keyword)
    {
        switch (keyword.Text)
        {
            case "if":
                return If(keyword.At);
            case "for":
                return For(keyword.At);
            case "set":
                return Set(keyword.At);
            case "break" or "continue":
                if (_loopDepth == 0)
                    throw Error(keyword.At, $"'{{% {keyword.Text} %}}' outside a for loop");
                ExpectEnd();
                return new LoopControl(keyword.Text == "break" ? Flow.Break : Flow.Continue, keyword.At);
            case "generation":
                ExpectEnd();
                var body = Body(["endgeneration"], "generation", keyword.At, out _);
                ExpectEnd();
                return new BlockStatement(body, keyword.At);
            case var name when UnsupportedStatements.Contains(name):
                throw Error(keyword.At, $"'{{% {name} %}}' is not supported by Alloy's Jinja subset");
            case var name when name.StartsWith("end", StringComparison.Ordinal) || name is "elif" or "else":
                throw Error(keyword.At, $"'{{% {name} %}}' has no open block to close or continue");
            default:
                throw Error(keyword.At, $"unknown statement '{{% {keyword.Text} %}}'");
        }
    }

    private IfStatement If(Position at)
    {
        var branches = new List<(Expr, IReadOnlyList<Statement>)>();
        var condition = Expression(withCondition: false);
        while (true)
        {
            ExpectEnd();
            var body = Body(["elif", "else", "endif"], "if", at, out string end);
            branches.Add((condition, body));
            if (end == "elif")
            {
                condition = Expression(withCondition: false);
                continue;
            }
            IReadOnlyList<Statement> otherwise = [];
            if (end == "else")
            {
                ExpectEnd();
                otherwise = Body(["endif"], "if", at, out _);
            }
            ExpectEnd();
            return new IfStatement(branches, otherwise, at);
        }
    }

    private ForStatement For(Position at)
    {
        var targets = Targets();
        Expect("in");
        var iterable = Tuple(withCondition: false);
        Expr? filter = null;
        if (Current.Is("if"))
        {
            Advance();
            filter = Expression(withCondition: true);
        }
        if (Current.Is("recursive"))
            throw Error(Current.At, "recursive loops are not supported by Alloy's Jinja subset");
        ExpectEnd();
        _loopDepth++;
        var body = Body(["else", "endfor"], "for", at, out string end);
        _loopDepth--;
        IReadOnlyList<Statement> otherwise = [];
        if (end == "else")
        {
            ExpectEnd();
            otherwise = Body(["endfor"], "for", at, out _);
        }
        ExpectEnd();
        return new ForStatement(targets, iterable, filter, body, otherwise, at);
    }

    private Assign Set(Position at)
    {
        Expr? owner = null;
        List<string> targets;
        var first = ExpectName();
        if (Current.Is("."))
        {
            Advance();
            owner = new NameExpr(first.Text, first.At);
            targets = [ExpectName().Text];
        }
        else
        {
            targets = [first.Text];
            while (Current.Is(","))
            {
                Advance();
                targets.Add(ExpectName().Text);
            }
        }
        if (!Current.Is("="))
            throw Error(
                Current.At,
                "a block '{% set %}' … '{% endset %}' is outside Alloy's Jinja subset; write '{% set x = … %}'"
            );
        Advance();
        var value = Tuple(withCondition: true);
        ExpectEnd();
        return new Assign(targets, owner, value, at);
    }

    /// <summary>A for loop's names: <c>x</c>, <c>k, v</c> or <c>(k, v)</c>.</summary>
    private List<string> Targets()
    {
        bool parenthesised = Current.Is("(");
        if (parenthesised)
            Advance();
        var names = new List<string> { ExpectName().Text };
        while (Current.Is(","))
        {
            Advance();
            names.Add(ExpectName().Text);
        }
        if (parenthesised)
            Expect(")");
        return names;
    }

    /// <summary>An expression, or several separated by commas (a tuple), as <c>{{ a, b }}</c> allows.</summary>
    private Expr Tuple(bool withCondition)
    {
        var at = Current.At;
        var first = Expression(withCondition);
        if (!Current.Is(","))
            return first;
        var items = new List<Expr> { first };
        while (Current.Is(","))
        {
            Advance();
            if (Current.Kind == TokenKind.End)
                break;
            items.Add(Expression(withCondition));
        }
        return new ListExpr(items, tuple: true, at);
    }

    private Expr Expression(bool withCondition)
    {
        var at = Current.At;
        var value = Or();
        while (withCondition && Current.Is("if"))
        {
            Advance();
            var condition = Or();
            Expr? otherwise = null;
            if (Current.Is("else"))
            {
                Advance();
                otherwise = Expression(withCondition: true);
            }
            value = new ConditionalExpr(value, condition, otherwise, at);
        }
        return value;
    }

    private Expr Or()
    {
        var left = And();
        while (Current.Is("or"))
        {
            var at = Advance().At;
            left = new LogicExpr(left, And(), isAnd: false, at);
        }
        return left;
    }

    private Expr And()
    {
        var left = Not();
        while (Current.Is("and"))
        {
            var at = Advance().At;
            left = new LogicExpr(left, Not(), isAnd: true, at);
        }
        return left;
    }

    private Expr Not()
    {
        if (!Current.Is("not"))
            return Compare();
        var at = Advance().At;
        return new NotExpr(Not(), at);
    }

    private Expr Compare()
    {
        var at = Current.At;
        var first = Sum();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            if (Current.Kind == TokenKind.Operator && Current.Text is "==" or "!=" or "<" or ">" or "<=" or ">=")
            {
                string op = Advance().Text;
                rest.Add((op, Sum()));
            }
            else if (Current.Is("in"))
            {
                Advance();
                rest.Add(("in", Sum()));
            }
            else if (Current.Is("not") && Peek(1).Is("in"))
            {
                Advance();
                Advance();
                rest.Add(("not in", Sum()));
            }
            else
                break;
        }
        return rest.Count == 0 ? first : new CompareExpr(first, rest, at);
    }

    private Expr Sum()
    {
        var left = Concat();
        while (Current.Kind == TokenKind.Operator && Current.Text is "+" or "-")
        {
            var op = Advance();
            left = new BinaryExpr(op.Text, left, Concat(), op.At);
        }
        return left;
    }

    private Expr Concat()
    {
        var left = Product();
        while (Current.Is("~"))
        {
            var op = Advance();
            left = new BinaryExpr("~", left, Product(), op.At);
        }
        return left;
    }

    private Expr Product()
    {
        var left = Power();
        while (Current.Kind == TokenKind.Operator && Current.Text is "*" or "/" or "//" or "%")
        {
            var op = Advance();
            left = new BinaryExpr(op.Text, left, Power(), op.At);
        }
        return left;
    }

    private Expr Power()
    {
        var left = Unary(withFilters: true);
        while (Current.Is("**"))
        {
            var op = Advance();
            left = new BinaryExpr("**", left, Unary(withFilters: true), op.At);
        }
        return left;
    }

    private Expr Unary(bool withFilters)
    {
        Expr value;
        if (Current.Kind == TokenKind.Operator && Current.Text is "-" or "+")
        {
            var sign = Advance();
            value = new NegateExpr(Unary(withFilters: false), sign.Text == "-", sign.At);
        }
        else
            value = Primary();
        value = Postfix(value);
        return withFilters ? FiltersAndTests(value) : value;
    }

    private Expr Primary()
    {
        var token = Current;
        switch (token.Kind)
        {
            case TokenKind.Name:
                Advance();
                return token.Text switch
                {
                    "true" or "True" => new Literal(true, token.At),
                    "false" or "False" => new Literal(false, token.At),
                    "none" or "None" => new Literal(null, token.At),
                    _ => new NameExpr(token.Text, token.At),
                };
            case TokenKind.String:
                string text = "";
                // 'a' 'b' is 'ab', as in Python.
                while (Current.Kind == TokenKind.String)
                    text += (string)Advance().Value!;
                return new Literal(text, token.At);
            case TokenKind.Integer or TokenKind.Float:
                Advance();
                return new Literal(token.Value, token.At);
        }
        if (token.Is("("))
        {
            Advance();
            if (Current.Is(")"))
            {
                Advance();
                return new ListExpr([], tuple: true, token.At);
            }
            var inner = Expression(withCondition: true);
            if (!Current.Is(","))
            {
                Expect(")");
                return inner;
            }
            var items = new List<Expr> { inner };
            while (Current.Is(","))
            {
                Advance();
                if (Current.Is(")"))
                    break;
                items.Add(Expression(withCondition: true));
            }
            Expect(")");
            return new ListExpr(items, tuple: true, token.At);
        }
        if (token.Is("["))
        {
            Advance();
            var items = Separated("]", () => Expression(withCondition: true));
            return new ListExpr(items, tuple: false, token.At);
        }
        if (token.Is("{"))
        {
            Advance();
            var pairs = Separated("}", () =>
            {
                var key = Expression(withCondition: true);
                Expect(":");
                return (key, Expression(withCondition: true));
            });
            return new DictExpr(pairs, token.At);
        }
        throw Error(token.At, $"unexpected {token.Describe()}");
    }

    /// <summary>
    /// Items separated by commas (a trailing one allowed) up to <paramref name="close"/>, which is consumed.
    /// </summary>
    private List<T> Separated<T>(string close, Func<T> item)
    {
        var items = new List<T>();
        while (!Current.Is(close))
        {
            items.Add(item());
            if (!Current.Is(","))
                break;
            Advance();
        }
        Expect(close);
        return items;
    }

    private Expr Postfix(Expr value)
    {
        while (true)
        {
            var token = Current;
            if (token.Is("."))
            {
                Advance();
                var name = Advance();
                value = name.Kind switch
                {
                    TokenKind.Name => new AttributeExpr(value, name.Text, token.At),
                    TokenKind.Integer => new ItemExpr(value, new Literal(name.Value, name.At), token.At),
                    _ => throw Error(name.At, $"expected an attribute name after '.', found {name.Describe()}"),
                };
            }
            else if (token.Is("["))
            {
                Advance();
                value = Subscript(value, token.At);
            }
            else if (token.Is("("))
            {
                Advance();
                value = new CallExpr(value, Arguments(), token.At);
            }
            else
                return value;
        }
    }

    /// <summary><c>x[key]</c> or a slice <c>x[start:stop:step]</c> (each part optional), after the '['.</summary>
    private Expr Subscript(Expr target, Position at)
    {
        Expr? Part() => Current.Is(":") || Current.Is("]") ? null : Expression(withCondition: true);
        var start = Part();
        if (!Current.Is(":"))
        {
            Expect("]");
            return new ItemExpr(target, start ?? throw Error(at, "empty subscript '[]'"), at);
        }
        Advance();
        var stop = Part();
        Expr? step = null;
        if (Current.Is(":"))
        {
            Advance();
            step = Part();
        }
        Expect("]");
        return new SliceExpr(target, start, stop, step, at);
    }

    /// <summary>A call's arguments after its '(': expressions, then name=expression pairs.</summary>
    private ArgumentList Arguments()
    {
        var positional = new List<Expr>();
        var named = new List<(string, Expr)>();
        Separated(")", () =>
        {
            if (Current.Is("*") || Current.Is("**"))
                throw Error(Current.At, "*args and **kwargs are not supported by Alloy's Jinja subset");
            if (Current.Kind == TokenKind.Name && Peek(1).Is("="))
            {
                string name = Advance().Text;
                Advance();
                named.Add((name, Expression(withCondition: true)));
            }
            else if (named.Count > 0)
                throw Error(Current.At, "a positional argument follows a named one");
            else
                positional.Add(Expression(withCondition: true));
            return 0;
        });
        return new ArgumentList(positional, named);
    }

    private Expr FiltersAndTests(Expr value)
    {
        while (true)
        {
            var token = Current;
            if (token.Is("|"))
            {
                Advance();
                var name = ExpectName();
                if (!JinjaBuiltins.Filters.ContainsKey(name.Text))
                    throw Error(
                        name.At,
                        $"the filter '{name.Text}' is not supported by Alloy's Jinja subset (it has "
                            + $"{Names(JinjaBuiltins.Filters.Keys)})"
                    );
                var arguments = ArgumentList.Empty;
                if (Current.Is("("))
                {
                    Advance();
                    arguments = Arguments();
                }
                value = new FilterExpr(value, name.Text, arguments, name.At);
            }
            else if (token.Is("is"))
            {
                Advance();
                bool negated = Current.Is("not");
                if (negated)
                    Advance();
                var name = ExpectName();
                if (!JinjaBuiltins.Tests.ContainsKey(name.Text))
                    throw Error(
                        name.At,
                        $"the test '{name.Text}' is not supported by Alloy's Jinja subset (it has "
                            + $"{Names(JinjaBuiltins.Tests.Keys.Where(k => char.IsLetter(k[0])))})"
                    );
                var arguments = ArgumentList.Empty;
                if (Current.Is("("))
                {
                    Advance();
                    arguments = Arguments();
                }
                else if (StartsTestArgument(Current))
                {
                    arguments = new ArgumentList([Postfix(Primary())], []);
                }
                value = new TestExpr(value, name.Text, arguments, negated, name.At);
            }
            else if (token.Is("("))
            {
                Advance();
                value = new CallExpr(value, Arguments(), token.At);
            }
            else
                return value;
        }
    }

    /// <summary>
    /// Whether a test takes the next token as its one argument without parentheses (<c>x is divisibleby 3</c>).
    /// </summary>
    private static bool StartsTestArgument(Token token) =>
        token.Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float
        || (token.Kind == TokenKind.Name && token.Text is not ("else" or "or" or "and" or "if" or "in" or "not"))
        || token.Is("[")
        || token.Is("{");

    private Token Current => _tokens[_position];

    private Token Peek(int ahead) => _tokens[Math.Min(_position + ahead, _tokens.Count - 1)];

    private Token Advance()
    {
        var token = _tokens[_position];
        if (token.Kind != TokenKind.End)
            _position++;
        return token;
    }

    private Token ExpectName()
    {
        if (Current.Kind != TokenKind.Name)
            throw Error(Current.At, $"expected a name, found {Current.Describe()}");
        return Advance();
    }

    private void Expect(string text)
    {
        if (!Current.Is(text))
            throw Error(Current.At, $"expected '{text}', found {Current.Describe()}");
        Advance();
    }

    private void ExpectEnd()
    {
        if (Current.Kind != TokenKind.End)
            throw Error(Current.At, $"unexpected {Current.Describe()}; expected the end of the tag");
    }

    private static string Names(IEnumerable<string> names) => string.Join(", ", names.Order(StringComparer.Ordinal));

    private AlloyException Error(Position at, string problem) => JinjaTemplate.Error(_origin, at, problem);
}
