using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Alloy.Tokenizers.Encoding;

// Encodes a few MB of text with each test tokenizer (tests/tokenizers-node/tokenizer-files.js: real GPT-2, Llama-2,
// Mistral, Llama-3 and Qwen vocabularies), on one thread, with Alloy and with Hugging Face's tokenizers (Node bindings,
// Rust), and checks that both give the same ids. The text is the repository's docs, sources and the encoding test
// texts, repeated up to the size asked for. Usage (after `npm ci --prefix tests/tokenizers-node`):
//   dotnet run -c Release --project bench/Alloy.Bench.Tokenizer -- [--mb 4] [--repeat 3] [names…]

double megabytes = 4;
int repeat = 3;
var names = new List<string>();
for (int i = 0; i < args.Length; i++)
{
    if (args[i] == "--mb")
        megabytes = double.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture);
    else if (args[i] == "--repeat")
        repeat = int.Parse(args[++i]);
    else
        names.Add(args[i]);
}

var root = FindRoot();
var work = Path.Combine(Path.GetTempPath(), "alloy-bench-tokenizer-" + Environment.ProcessId);
Directory.CreateDirectory(work);
try
{
    var all = Run(
            "node",
            Path.Combine(root, "tests", "tokenizers-node", "tokenizer-files.js"),
            Path.Combine(work, "files")
        )
        .Split('\n', StringSplitOptions.RemoveEmptyEntries);
    if (names.Count == 0)
        names = [.. all.Where(n => n is "gpt2" or "llama2" or "mistral" or "llama3" or "qwen")];

    var text = Corpus(root, (int)(megabytes * 1024 * 1024));
    var documents = Documents(text, 4096);
    var textFile = Path.Combine(work, "documents.json");
    File.WriteAllText(textFile, JsonSerializer.Serialize(documents));
    double mib = Encoding.UTF8.GetByteCount(text) / 1048576.0;
    Console.WriteLine(
        $"# Alloy tokenizer benchmark: {mib:F2} MiB of text in {documents.Count:N0} documents, one thread, best of "
            + $"{repeat}"
    );
    Console.WriteLine(
        $"{Environment.ProcessorCount} cores, .NET {Environment.Version}; load average before: {LoadAverage()}"
    );
    Console.WriteLine();
    Console.WriteLine(
        "| tokenizer | tokens | Alloy first run | Alloy best | Alloy MiB/s | Alloy Mtokens/s | HF tokenizers best | HF "
            + "MiB/s | Alloy ÷ HF time | same ids |"
    );
    Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    foreach (var name in names)
    {
        var folder = Path.Combine(work, "files", name);
        var tokenizer = TextTokenizer.Load(folder);
        // The first run fills the word cache; later runs show the steady state.
        double first = 0,
            best = double.MaxValue;
        var ids = new List<int>();
        for (int r = 0; r < repeat + 1; r++)
        {
            ids.Clear();
            var clock = Stopwatch.StartNew();
            foreach (var document in documents)
                tokenizer.Encode(document, ids, addSpecialTokens: false);
            double seconds = clock.Elapsed.TotalSeconds;
            if (r == 0)
                first = seconds;
            else
                best = Math.Min(best, seconds);
        }
        int hash = 0;
        foreach (int id in ids)
            hash = unchecked(hash * 31 + id);
        using var hf = JsonDocument.Parse(
            Run(
                "node",
                Path.Combine(root, "bench", "Alloy.Bench.Tokenizer", "hf-encode.js"),
                Path.Combine(folder, "tokenizer.json"),
                textFile,
                repeat.ToString()
            )
        );
        double hfSeconds = hf.RootElement.GetProperty("seconds").GetDouble();
        bool same =
            hf.RootElement.GetProperty("count").GetInt32() == ids.Count
            && hf.RootElement.GetProperty("hash").GetInt32() == hash;
        Console.WriteLine(
            $"| {name} | {ids.Count:N0} | {first:F2} s | {best:F2} s | {mib / best:F1} | {ids.Count / best / 1e6:F2} | "
                + $"{hfSeconds:F2} s | {mib / hfSeconds:F1} | {best / hfSeconds:F2}× "
                + $"| {(same ? "yes" : "NO")} |"
        );
    }
    Console.WriteLine();
    Console.WriteLine($"load average after: {LoadAverage()}");
}
finally
{
    Directory.Delete(work, recursive: true);
}

static string Corpus(string root, int size)
{
    var sources = Directory
        .GetFiles(Path.Combine(root, "docs"), "*.md")
        .Concat(Directory.GetFiles(Path.Combine(root, "src"), "*.cs", SearchOption.AllDirectories))
        .Order(StringComparer.Ordinal)
        .Select(File.ReadAllText)
        .Concat(
            JsonSerializer.Deserialize<string[]>(
                File.ReadAllText(Path.Combine(root, "tests", "fixtures", "tokenizers", "texts.json"))
            )!
        )
        .ToList();
    var text = new StringBuilder(size + 100_000);
    while (text.Length < size)
        foreach (var source in sources)
            text.Append(source).Append('\n');
    return text.ToString(0, size);
}

static List<string> Documents(string text, int size)
{
    var documents = new List<string>();
    for (int start = 0; start < text.Length; )
    {
        int end = Math.Min(text.Length, start + size);
        if (end < text.Length && text.LastIndexOf('\n', end - 1, end - start) is int newline and > 0 && newline > start)
            end = newline + 1;
        documents.Add(text[start..end]);
        start = end;
    }
    return documents;
}

static string FindRoot()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "Alloy.sln")))
            return dir.FullName;
    throw new InvalidOperationException("run from inside the repository");
}

static string Run(string program, params string[] arguments)
{
    var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
    start.Environment["TOKENIZERS_PARALLELISM"] = "false"; // one thread, as Alloy here
    foreach (var a in arguments)
        start.ArgumentList.Add(a);
    using var process = Process.Start(start)!;
    var stderr = process.StandardError.ReadToEndAsync();
    var output = process.StandardOutput.ReadToEnd();
    process.WaitForExit();
    if (process.ExitCode != 0)
        throw new InvalidOperationException($"{program} failed: {stderr.Result}");
    return output;
}

static string LoadAverage() =>
    File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";
