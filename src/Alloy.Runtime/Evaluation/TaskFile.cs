using System.Text.Json;
using System.Text.Json.Nodes;
using Alloy.Checkpoints;

namespace Alloy.Runtime.Evaluation;

/// <summary>
/// One line of a tasks file: an item of the task <see cref="Task"/>, read from line <see cref="Line"/> of
/// <see cref="Source"/>.
/// </summary>
public abstract record TaskItem(string Task, string Source, int Line, string? Id)
{
    /// <summary>"file:line", to start messages about the item.</summary>
    public string Where => $"{Source}:{Line}";

    /// <summary>
    /// This item's few-shot delimiter, the text after each example in its prompt (lm-eval-harness's fewshot_delimiter);
    /// null takes <see cref="PromptOptions.FewShotDelimiter"/>.
    /// </summary>
    public string? FewShotDelimiter { get; init; }

    /// <summary>
    /// This item's target delimiter, the text between an example's question and its answer (lm-eval-harness's
    /// target_delimiter); null takes <see cref="PromptOptions.TargetDelimiter"/>.
    /// </summary>
    public string? TargetDelimiter { get; init; }
}

/// <summary>
/// A multiple-choice item: the model scores <see cref="Context"/> followed by each choice, and the choice with the
/// highest log-likelihood is its answer.
/// </summary>
public sealed record ChoiceItem(
    string Task,
    string Source,
    int Line,
    string? Id,
    string Context,
    IReadOnlyList<string> Choices,
    int Answer
) : TaskItem(Task, Source, Line, Id);

/// <summary>
/// A generation item: the model continues <see cref="Prompt"/> greedily, and is right when its text, cut at the first
/// stop string, equals one of the <see cref="Answers"/>.
/// </summary>
public sealed record GenerationItem(
    string Task,
    string Source,
    int Line,
    string? Id,
    string Prompt,
    IReadOnlyList<string> Answers,
    IReadOnlyList<string> Stop,
    int? MaxTokens
) : TaskItem(Task, Source, Line, Id);

/// <summary>
/// Reads tasks files: JSON Lines, one item per line (blank lines are skipped).
/// <code>
/// {"type": "choice", "task": "arithmetic", "context": "2 + 2 =", "choices": [" 4", " 5"], "answer": 0}
/// {"type": "generate", "task": "capitals", "prompt": "France's capital:", "answer": "Paris", "stop": ["\n"]}
/// </code>
/// "task" (default: the type) groups items in the report; "id" (string or number) labels an item; "answer" of a
/// generate item is a string or a list of accepted strings; "fewshot_delimiter" and "target_delimiter" set the item's
/// own few-shot formatting (<see cref="TaskPrompts"/>). Other keys are refused, so a misspelt key cannot pass silently.
/// </summary>
public static class TaskFile
{
    public const string ChoiceType = "choice";
    public const string GenerateType = "generate";

    private static readonly string[] ChoiceKeys =
    [
        "type",
        "task",
        "id",
        "context",
        "choices",
        "answer",
        "fewshot_delimiter",
        "target_delimiter",
    ];
    private static readonly string[] GenerateKeys =
    [
        "type",
        "task",
        "id",
        "prompt",
        "answer",
        "stop",
        "max_tokens",
        "fewshot_delimiter",
        "target_delimiter",
    ];

    public static IReadOnlyList<TaskItem> Read(string path)
    {
        if (!File.Exists(path))
            throw new AlloyException($"{path}: no such tasks file");
        return Parse(InputFile.ReadLines(path), path);
    }

    /// <summary>
    /// Parses lines; <paramref name="source"/> names the file in messages, which say "source:line: …".
    /// </summary>
    public static IReadOnlyList<TaskItem> Parse(IEnumerable<string> lines, string source)
    {
        var items = new List<TaskItem>();
        var kinds = new Dictionary<string, (string Type, int Line)>(StringComparer.Ordinal);
        int number = 0;
        foreach (var text in lines)
        {
            number++;
            if (string.IsNullOrWhiteSpace(text))
                continue;
            var item = ParseLine(text, new Where(source, number));
            string type = item is ChoiceItem ? ChoiceType : GenerateType;
            if (kinds.TryGetValue(item.Task, out var first) && first.Type != type)
                throw new AlloyException(
                    $"{source}:{number}: task '{item.Task}' is a {first.Type} task (line {first.Line}) and this line "
                        + $"is a {type} item; give it another \"task\" name"
                );
            kinds.TryAdd(item.Task, (type, number));
            items.Add(item);
        }
        if (items.Count == 0)
            throw new AlloyException(
                $"{source}: no task items; write one JSON object per line (see 'alloy eval --help')"
            );
        return items;
    }

    /// <summary>The first <paramref name="perTask"/> items of each task, in file order.</summary>
    public static IReadOnlyList<TaskItem> Limit(IReadOnlyList<TaskItem> items, int perTask)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        return items.Where(item => (counts[item.Task] = counts.GetValueOrDefault(item.Task) + 1) <= perTask).ToList();
    }

    private readonly record struct Where(string Source, int Line)
    {
        public AlloyException Error(string problem) => new($"{Source}:{Line}: {problem}");
    }

    private static TaskItem ParseLine(string text, Where where)
    {
        var node = StrictJson.ParseNode(System.Text.Encoding.UTF8.GetBytes(text), $"{where.Source}:{where.Line}");
        if (node is not JsonObject json)
            throw where.Error("expected a JSON object ({\"type\": …}) on this line");

        string type = String(json, "type", where)
            ?? throw where.Error($"no \"type\"; use \"{ChoiceType}\" or \"{GenerateType}\"");
        var known = type switch
        {
            ChoiceType => ChoiceKeys,
            GenerateType => GenerateKeys,
            _ => throw where.Error($"unknown type '{type}'; use \"{ChoiceType}\" or \"{GenerateType}\""),
        };
        foreach (var (key, _) in json)
            if (!known.Contains(key))
                throw where.Error($"unknown key '{key}' for a {type} item (known: {string.Join(", ", known)})");

        string task = String(json, "task", where) ?? type;
        if (task.Length == 0)
            throw where.Error("\"task\" is empty; leave it out or name the task");
        string? id = json["id"] switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out string? s) => s,
            JsonValue v when v.TryGetValue(out long n) => n.ToString(System.Globalization.CultureInfo.InvariantCulture),
            _ => throw where.Error("\"id\" must be a string or an integer"),
        };
        string? fewShotDelimiter = String(json, "fewshot_delimiter", where);
        string? targetDelimiter = String(json, "target_delimiter", where);

        if (type == ChoiceType)
        {
            string context = String(json, "context", where)
                ?? throw where.Error("a choice item needs \"context\" (it may be \"\")");
            var choices = Strings(json, "choices", where)
                ?? throw where.Error("a choice item needs \"choices\": a list of strings");
            if (choices.Count < 2)
                throw where.Error(
                    $"\"choices\" has {choices.Count} entr{(choices.Count == 1 ? "y" : "ies")}; give at least 2"
                );
            int empty = choices.ToList().FindIndex(c => c.Length == 0);
            if (empty >= 0)
                throw where.Error($"choice {empty} is empty; every choice needs text to score");
            int answer = Integer(json, "answer", where)
                ?? throw where.Error("a choice item needs \"answer\": the index of the right choice, from 0");
            if (answer < 0 || answer >= choices.Count)
                throw where.Error(
                    $"\"answer\" is {answer} but there are {choices.Count} choices (indices 0 to {choices.Count - 1})"
                );
            return new ChoiceItem(task, where.Source, where.Line, id, context, choices, answer)
            {
                FewShotDelimiter = fewShotDelimiter,
                TargetDelimiter = targetDelimiter,
            };
        }

        string prompt = String(json, "prompt", where) ?? throw where.Error("a generate item needs \"prompt\"");
        var answers =
            json["answer"] is JsonArray ? Strings(json, "answer", where)!
            : String(json, "answer", where) is { } single ? [single]
            : throw where.Error("a generate item needs \"answer\": a string, or a list of accepted strings");
        if (answers.Count == 0)
            throw where.Error("\"answer\" is an empty list; give at least one accepted string");
        var stop = Strings(json, "stop", where) ?? [];
        if (stop.Any(s => s.Length == 0))
            throw where.Error("\"stop\" has an empty string; stop strings need text");
        int? maxTokens = Integer(json, "max_tokens", where);
        if (maxTokens is < 1)
            throw where.Error($"\"max_tokens\" is {maxTokens}; give 1 or more");
        return new GenerationItem(task, where.Source, where.Line, id, prompt, answers, stop, maxTokens)
        {
            FewShotDelimiter = fewShotDelimiter,
            TargetDelimiter = targetDelimiter,
        };
    }

    private static string? String(JsonObject json, string key, Where where) =>
        json[key] switch
        {
            null when !json.ContainsKey(key) => null,
            JsonValue v when v.TryGetValue(out string? s) => s,
            var other => throw where.Error($"\"{key}\" must be a string, not {Describe(other)}"),
        };

    private static int? Integer(JsonObject json, string key, Where where) =>
        json[key] switch
        {
            null when !json.ContainsKey(key) => null,
            JsonValue v when v.TryGetValue(out int n) => n,
            var other => throw where.Error($"\"{key}\" must be an integer, not {Describe(other)}"),
        };

    private static IReadOnlyList<string>? Strings(JsonObject json, string key, Where where)
    {
        if (!json.ContainsKey(key))
            return null;
        if (json[key] is not JsonArray array)
            throw where.Error($"\"{key}\" must be a list of strings, not {Describe(json[key])}");
        var list = new List<string>(array.Count);
        foreach (var element in array)
        {
            if (element is JsonValue v && v.TryGetValue(out string? s))
                list.Add(s);
            else
                throw where.Error($"\"{key}\" must be a list of strings; entry {list.Count} is {Describe(element)}");
        }
        return list;
    }

    private static string Describe(JsonNode? node) =>
        node switch
        {
            null => "null",
            JsonArray => "a list",
            JsonObject => "an object",
            JsonValue v => v.GetValueKind() switch
            {
                JsonValueKind.String => "a string",
                JsonValueKind.Number => $"the number {v.ToJsonString()}",
                JsonValueKind.True or JsonValueKind.False => $"{v.ToJsonString()}",
                _ => v.ToJsonString(),
            },
            _ => node.ToJsonString(),
        };
}
