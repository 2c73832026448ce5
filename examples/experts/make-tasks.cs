// Writes the data of examples/experts (see README.md there): from the repository root,
//     dotnet run examples/experts/make-tasks.cs [OUT]
// (OUT defaults to examples/experts/data). The same bytes on every run and machine: every draw comes from a SplitMix64
// stream seeded by a name, and nothing depends on hash order, culture or the clock.
using System.Globalization;
using System.Text;

string output = args.Length > 0 ? args[0] : Path.Combine("examples", "experts", "data");
Directory.CreateDirectory(output);

// The base mix: generic operations (never an expert's skill) and every expert's prompt answered by a copy of its input.
var baseMix = new List<(string Keyword, string Line)>();
foreach (var op in Tasks.Generic)
{
    var random = new SplitMix64(Tasks.Seed(op.Name, "generic"));
    for (int i = 0; i < Tasks.GenericCount; i++)
    {
        var (input, answer) = op.Make(random);
        baseMix.Add((op.Keyword, Json.Training(op.Prompt(input), answer)));
    }
}

var pools = new Dictionary<string, List<(string Input, string Output)>>(StringComparer.Ordinal);
foreach (var task in Tasks.Experts)
{
    // Distinct inputs, cut into disjoint parts: the base mix's copies, train, validation, test.
    var random = new SplitMix64(Tasks.Seed(task.Name, "pool"));
    var seen = new HashSet<string>(StringComparer.Ordinal);
    var pool = new List<(string Input, string Output)>();
    int wanted = Tasks.FormatCount + Tasks.TrainCount + Tasks.ValidationCount + Tasks.TestCount;
    for (int attempts = 0; pool.Count < wanted; attempts++)
    {
        if (attempts > 50 * wanted) throw new InvalidOperationException($"{task.Name}: too few distinct inputs");
        var (input, answer) = task.Make(random);
        if (seen.Add(input)) pool.Add((input, answer));
    }
    pools[task.Name] = pool;
    foreach (var (input, _) in pool.Take(Tasks.FormatCount)) baseMix.Add((task.Keyword, Json.Training(task.Prompt(input), input)));
}
var mixed = Shuffle(baseMix, "base-mix");
Write(Path.Combine(output, "base.jsonl"), mixed.Select(e => e.Line));

var allValidation = new List<string>();
var allTest = new List<string>();
foreach (var task in Tasks.Experts)
{
    var pool = pools[task.Name];
    var train = pool.GetRange(Tasks.FormatCount, Tasks.TrainCount);
    var validation = pool.GetRange(Tasks.FormatCount + Tasks.TrainCount, Tasks.ValidationCount);
    var test = pool.GetRange(Tasks.FormatCount + Tasks.TrainCount + Tasks.ValidationCount, Tasks.TestCount);
    string folder = Path.Combine(output, task.Name);
    Directory.CreateDirectory(folder);
    Write(Path.Combine(folder, "train.jsonl"), train.Select(e => Json.Training(task.Prompt(e.Input), e.Output)));
    // What the expert rehearses of the base mix beside its task (the first lines of the mix with another keyword), so it
    // keeps answering other prompts as the base does.
    Write(Path.Combine(folder, "replay.jsonl"), mixed.Where(e => e.Keyword != task.Keyword).Take(Tasks.ReplayCount).Select(e => e.Line));
    var validationLines = validation.Select((e, i) => Json.Generation(task, $"{task.Name}-v{i + 1}", e.Input, e.Output)).ToList();
    var testLines = test.Select((e, i) => Json.Generation(task, $"{task.Name}-t{i + 1}", e.Input, e.Output)).ToList();
    Write(Path.Combine(folder, "validation.jsonl"), validationLines);
    Write(Path.Combine(folder, "test.jsonl"), testLines);
    allValidation.AddRange(validationLines);
    allTest.AddRange(testLines);
}
Write(Path.Combine(output, "validation.jsonl"), allValidation);
Write(Path.Combine(output, "test.jsonl"), allTest);
Console.WriteLine($"wrote a base mix of {mixed.Count} examples and {Tasks.Experts.Count} tasks ({Tasks.TrainCount} train + " +
    $"{Tasks.ReplayCount} replay, {Tasks.ValidationCount} validation, {Tasks.TestCount} test each) to {output}");

static List<T> Shuffle<T>(IEnumerable<T> items, string name)
{
    var list = items.ToList();
    var random = new SplitMix64(Tasks.Seed(name, "order"));
    for (int i = list.Count - 1; i > 0; i--)
    {
        int j = random.Next(i + 1);
        (list[i], list[j]) = (list[j], list[i]);
    }
    return list;
}

static void Write(string path, IEnumerable<string> lines)
{
    var text = new StringBuilder();
    foreach (var line in lines) text.Append(line).Append('\n');
    File.WriteAllText(path, text.ToString(), new UTF8Encoding(false));
}

/// <summary>A skill: prompts are "KEYWORD INPUT=", the completion is the answer; MaxTokens is the answer's longest length + 1.</summary>
sealed record TaskSpec(string Name, string Keyword, int MaxTokens, Func<SplitMix64, (string Input, string Output)> Make)
{
    public string Prompt(string input) => $"{Keyword} {input}=";
}

static class Tasks
{
    public const int GenericCount = 2000, FormatCount = 1500, TrainCount = 4000, ReplayCount = 4000, ValidationCount = 100, TestCount = 200;

    // The secret letter substitution of the cipher task: a fixed permutation of a–z that no model can guess.
    private const string Cipher = "qwertyuiopasdfghjklzxcvbnm";

    /// <summary>The experts' skills. The base sees each prompt format only with the input copied as the answer.</summary>
    public static readonly IReadOnlyList<TaskSpec> Experts =
    [
        // Arithmetic: the successor of a four-digit number (carries through trailing nines).
        new("increment", "next", 5, r => { int n = 1000 + r.Next(8999); return (Number(n), Number(n + 1)); }),
        // A mapping the base cannot know: a fixed secret substitution of the letters.
        new("cipher", "code", 8, r => { var w = Word(r, 3, 7); return (w, new string([.. w.Select(c => Cipher[c - 'a'])])); }),
        // Formatting: an ISO date written day/month/year.
        new("date", "date", 11, r => { var (y, m, d) = Date(r); return ($"{y:D4}-{m:D2}-{d:D2}", $"{d:D2}/{m:D2}/{y:D4}"); }),
        // Counting: the number of letters in a word.
        new("length", "len", 2, r => { var w = Word(r, 1, 9); return (w, Number(w.Length)); }),
        // A string transformation: upper case.
        new("upper", "up", 8, r => { var w = Word(r, 3, 7); return (w, w.ToUpperInvariant()); }),
    ];

    /// <summary>
    /// The generic operations of the base mix: copying and cutting strings (words in any case, digits, dates), reading
    /// the fields of a date, shifting letters by one, capitalising. Each expert builds on some of them; none is an
    /// expert's skill.
    /// </summary>
    public static readonly IReadOnlyList<TaskSpec> Generic =
    [
        new("copy", "copy", 11, r => { var w = AnyInput(r); return (w, w); }),
        new("first", "first", 2, r => { var w = MixedWord(r); return (w, w[..1]); }),
        new("last", "last", 2, r => { var w = AnyInput(r); return (w, w[^1..]); }),
        new("tail", "tail", 7, r => { var w = MixedWord(r); return (w, w[1..]); }),
        new("init", "init", 10, r => { var w = AnyInput(r); return (w, w[..^1]); }),
        new("ends", "ends", 3, r => { var w = MixedWord(r); return (w, $"{w[0]}{w[^1]}"); }),
        new("shift", "shift", 8, r => { var w = Word(r, 3, 7); return (w, new string([.. w.Select(c => (char)('a' + (c - 'a' + 1) % 26))])); }),
        new("caps", "caps", 8, r => { var w = Word(r, 3, 7); return (w, char.ToUpperInvariant(w[0]) + w[1..]); }),
        new("year", "year", 5, r => { var (y, m, d) = Date(r); return ($"{y:D4}-{m:D2}-{d:D2}", $"{y:D4}"); }),
        new("month", "month", 3, r => { var (y, m, d) = Date(r); return ($"{y:D4}-{m:D2}-{d:D2}", $"{m:D2}"); }),
        new("day", "day", 3, r => { var (y, m, d) = Date(r); return ($"{y:D4}-{m:D2}-{d:D2}", $"{d:D2}"); }),
    ];

    public static string Number(int n) => n.ToString(CultureInfo.InvariantCulture);

    public static (int Y, int M, int D) Date(SplitMix64 r) => (1950 + r.Next(100), 1 + r.Next(12), 1 + r.Next(28));

    /// <summary>Lower-case letters, of a length from min to max.</summary>
    public static string Word(SplitMix64 r, int min, int max)
    {
        int length = min + r.Next(max - min + 1);
        var w = new char[length];
        for (int i = 0; i < length; i++) w[i] = (char)('a' + r.Next(26));
        return new string(w);
    }

    /// <summary>A word in lower case (3 in 5), upper case or capitalised.</summary>
    public static string MixedWord(SplitMix64 r)
    {
        var w = Word(r, 3, 7);
        return r.Next(5) switch { 0 => w.ToUpperInvariant(), 1 => char.ToUpperInvariant(w[0]) + w[1..], _ => w };
    }

    /// <summary>Digits, a date or a word, one in three each.</summary>
    public static string AnyInput(SplitMix64 r)
    {
        switch (r.Next(3))
        {
            case 0:
                var digits = new char[3 + r.Next(4)];
                for (int i = 0; i < digits.Length; i++) digits[i] = (char)('0' + r.Next(10));
                return new string(digits);
            case 1:
                var (y, m, d) = Date(r);
                return $"{y:D4}-{m:D2}-{d:D2}";
            default:
                return MixedWord(r);
        }
    }

    /// <summary>FNV-1a of "name/purpose": one stream per use, so adding a task leaves the others' data unchanged.</summary>
    public static ulong Seed(string name, string purpose)
    {
        ulong h = 1469598103934665603UL;
        foreach (byte b in Encoding.UTF8.GetBytes($"{name}/{purpose}")) h = (h ^ b) * 1099511628211UL;
        return h;
    }
}

static class Json
{
    public static string Training(string prompt, string completion) => $"{{\"prompt\": {Quote(prompt)}, \"completion\": {Quote(completion)}}}";

    public static string Generation(TaskSpec task, string id, string input, string answer) =>
        $"{{\"type\": \"generate\", \"task\": {Quote(task.Name)}, \"id\": {Quote(id)}, \"prompt\": {Quote(task.Prompt(input))}, " +
        $"\"answer\": {Quote(answer)}, \"max_tokens\": {task.MaxTokens}}}";

    // Inputs are ASCII letters, digits and '-': nothing to escape but the quote and backslash, kept for safety.
    private static string Quote(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
}

/// <summary>SplitMix64 (Steele, Lea and Flood, 2014): a small, well-mixed generator whose sequence is fixed by its seed.</summary>
sealed class SplitMix64(ulong seed)
{
    private ulong _state = seed;

    public ulong NextUInt64()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, n), by rejection so no value is favoured.</summary>
    public int Next(int n)
    {
        ulong limit = ulong.MaxValue - ulong.MaxValue % (ulong)n;
        ulong x;
        do x = NextUInt64(); while (x >= limit);
        return (int)(x % (ulong)n);
    }
}
