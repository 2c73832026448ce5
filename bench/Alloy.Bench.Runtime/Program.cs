using System.Diagnostics;
using Alloy.Bench;
using Alloy.Bench.Shared;
using Alloy.LinearAlgebra;
using Alloy.Runtime;
using Alloy.Runtime.Compute;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;
using Alloy.Synthetic;
using Alloy.Tensors;

// Forward-pass throughput of Alloy.Runtime on a generated Llama of about 100M parameters (hidden 768, 12 layers,
// 12 heads with 4 key/value heads, intermediate 2048, 32 000-token vocabulary, tied embeddings, bf16 on disk):
// a batched prompt pass with logits for every token (scoring, training), the same with logits for the last token only,
// and greedy decoding on the KV cache (the prompts prefilled untimed, then --decode steps of one new token per sequence
// timed). Each phase runs once to warm up, then is timed over --repeat runs (best kept).
// Usage:
//   dotnet run -c Release --project bench/Alloy.Bench.Runtime -- [--backends managed,openblas] [--threads N]
//       [--batch 4] [--length 256] [--decode 32] [--repeat 2] [--train yes|no] [--models DIR]

var options = new Dictionary<string, string>
{
    ["--batch"] = "4",
    ["--length"] = "256",
    ["--decode"] = "32",
    ["--repeat"] = "2",
    ["--train"] = "yes",
    ["--threads"] = Environment.ProcessorCount.ToString(),
    ["--models"] = Path.Combine(Path.GetTempPath(), "alloy-bench-runtime"),
    ["--backends"] = DenseBackend.OpenBlas is null ? "managed" : "openblas,managed",
};
for (int i = 0; i + 1 < args.Length; i += 2)
{
    if (!options.ContainsKey(args[i]))
        throw new ArgumentException($"unknown option '{args[i]}' (options: {string.Join(", ", options.Keys)})");
    options[args[i]] = args[i + 1];
}
int batch = int.Parse(options["--batch"]),
    length = int.Parse(options["--length"]),
    decode = int.Parse(options["--decode"]);
int repeat = int.Parse(options["--repeat"]),
    threads = int.Parse(options["--threads"]);

var spec = new TinyLlamaSpec
{
    VocabSize = 32_000,
    HiddenSize = 768,
    IntermediateSize = 2048,
    Layers = 12,
    Heads = 12,
    KeyValueHeads = 4,
    DType = DType.BF16,
    TieEmbeddings = true,
};
string folder = Path.Combine(options["--models"], $"llama-h{spec.HiddenSize}-l{spec.Layers}-v{spec.VocabSize}");
string done = Path.Combine(folder, ".complete");
if (!File.Exists(done))
{
    var watch = Stopwatch.StartNew();
    if (Directory.Exists(folder))
        Directory.Delete(folder, recursive: true);
    TinyLlama.Write(folder, spec);
    File.WriteAllText(done, "");
    Console.Error.WriteLine($"generated {folder} in {watch.Elapsed.TotalSeconds:F1} s");
}

long parameters = TinyLlama.Tensors(spec).Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
Console.WriteLine("# Alloy.Runtime forward benchmark");
Console.WriteLine(
    $"{Environment.ProcessorCount} cores, .NET {Environment.Version}, {threads} runtime threads; model: Llama, hidden "
        + $"{spec.HiddenSize}, {spec.Layers} layers, {spec.Heads} heads ({spec.KeyValueHeads} key/value), intermediate "
        + $"{spec.IntermediateSize}, vocabulary {spec.VocabSize}, tied, {parameters / 1e6:F1}M parameters"
);
Console.WriteLine(
    $"prompt pass: {batch} sequences × {length} tokens; decoding: {batch} sequences, {decode} steps of one token each "
        + $"after a {length}-token prompt"
);
Console.WriteLine($"load average before: {BenchClock.LoadAverage()}");
Console.WriteLine();
Console.WriteLine(
    "Each cell: tokens per wall second (tokens per CPU-second of the process, which other load on the machine disturbs "
        + "less)."
);
Console.WriteLine();
Console.WriteLine("| backend | load s | prompt pass, all logits | prompt pass, last logits | decoding (ms per step) |");
Console.WriteLine("|---|---|---|---|---|");

var sequences = Enumerable
    .Range(0, batch)
    .Select(s =>
    {
        var stream = RandomStream.For(5, "bench-tokens", s);
        return (IReadOnlyList<int>)
            Enumerable.Range(0, length).Select(i => (int)(stream.Uniform(i) * spec.VocabSize)).ToArray();
    })
    .ToList();
var tokens = TokenBatch.FromSequences(sequences);
var trainingRows = new List<string>();

string TrainingRow(string name, LlamaModel model)
{
    var examples = sequences.Select(s => new TrainingExample([.. s])).ToList();
    var kept = model.CreateState(keepActivations: true);
    var forward = Best(repeat, () => BenchClock.Timed(() => model.Forward(tokens, kept, LogitSelection.All)));
    var trainer = new Trainer(
        model,
        new TrainingOptions
        {
            Steps = 1000,
            BatchSize = batch,
            LearningRate = 1e-5,
        }
    );
    var step = Best(repeat, () => BenchClock.Timed(() => trainer.Step(examples)));
    long peak = Process.GetCurrentProcess().PeakWorkingSet64;
    return $"| {name} | {forward.Wall:F2} s ({forward.Cpu:F2}) | {step.Wall:F2} s ({step.Cpu:F2}) | "
        + $"{step.Cpu / forward.Cpu:F2} | "
        + $"{tokens.TotalTokens / step.Wall:F0} ({tokens.TotalTokens / step.Cpu:F0}) | {peak / 1e9:F1} GB |";
}

foreach (var name in options["--backends"].Split(','))
{
    var backend =
        name == "managed"
            ? DenseBackend.Managed
            : DenseBackend.OpenBlas ?? throw new InvalidOperationException("libopenblas.so.0 is not available");
    var loadWatch = Stopwatch.StartNew();
    var model = LlamaModel.Load(folder, new RuntimeOptions { Backend = backend, Threads = threads });
    double load = loadWatch.Elapsed.TotalSeconds;
    var state = model.CreateState();

    var all = Best(repeat, () => BenchClock.Timed(() => model.Forward(tokens, state, LogitSelection.All)));
    var last = Best(repeat, () => BenchClock.Timed(() => model.Forward(tokens, state, LogitSelection.Last)));
    var decoding = Best(repeat, () =>
    {
        var cache = model.CreateCache(batch, length + decode);
        var logits = model.Forward(tokens, state, LogitSelection.Last, cache);
        return BenchClock.Timed(() =>
        {
            for (int step = 0; step < decode; step++)
            {
                var next = Enumerable
                    .Range(0, batch)
                    .Select(s => (IReadOnlyList<int>)[VectorMath.ArgMax(logits.Row(s))])
                    .ToList();
                logits = model.Forward(TokenBatch.FromSequences(next), state, LogitSelection.Last, cache);
            }
        });
    });
    var perStep = (decoding.Wall / decode, decoding.Cpu / decode);
    string Rate(int tokensDone, (double Wall, double Cpu) t) => $"{tokensDone / t.Wall:F0} ({tokensDone / t.Cpu:F0})";
    Console.WriteLine(
        $"| {name} | {load:F1} | {Rate(tokens.TotalTokens, all)} | {Rate(tokens.TotalTokens, last)} | "
            + $"{Rate(batch, perStep)} ({perStep.Item1 * 1e3:F1}) |"
    );
    Console.Error.WriteLine($"load average: {BenchClock.LoadAverage()}");
    if (options["--train"] == "yes")
        trainingRows.Add(TrainingRow(name, model));
}
if (trainingRows.Count > 0)
{
    Console.WriteLine();
    Console.WriteLine(
        $"Training step on {batch} × {length} tokens (every token scored): forward keeping activations, then the whole "
            + $"step "
            + "(that forward, cross-entropy, backward, AdamW); seconds of wall time (CPU seconds of the process)."
    );
    Console.WriteLine();
    Console.WriteLine(
        "| backend | kept forward | training step | step ÷ forward | tokens/s trained | peak working set |"
    );
    Console.WriteLine("|---|---|---|---|---|---|");
    foreach (var row in trainingRows)
        Console.WriteLine(row);
}
Console.WriteLine();
Console.WriteLine($"load average after: {BenchClock.LoadAverage()}");

// One warm-up run (JIT, buffers, page faults), then the best of the repeats.
static (double Wall, double Cpu) Best(int repeat, Func<(double Wall, double Cpu)> run)
{
    run();
    return BenchClock.Best(repeat, run);
}
