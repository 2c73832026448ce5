using System.Diagnostics;
using Alloy.Fuzz;

// The fuzz program (docs/design.md, "Fuzzing"). Usage:
//   Alloy.Fuzz TARGET                            run under afl-fuzz (fuzz/run.sh); the input comes on stdin
//   Alloy.Fuzz replay TARGET FILE|FOLDER...      run saved inputs and say what each one did
//   Alloy.Fuzz mutate TARGET CORPUS OUT SECONDS  random mutations of a corpus, without afl; findings go to OUT
//   Alloy.Fuzz seeds REPOSITORY                  (re)write the generated seeds of fuzz/corpus
return args switch
{
    ["replay", var target, .. var paths] when paths.Length > 0 => Replay(target, paths),
    ["mutate", var target, var corpus, var output, var seconds] => Mutate(target, corpus, output, int.Parse(seconds)),
    ["seeds", var repository] => Seeds.Write(repository),
    [var target] when FuzzTargets.Names.Contains(target) => Afl(target),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine(
        "usage: Alloy.Fuzz TARGET | replay TARGET FILE|FOLDER... | mutate TARGET CORPUS OUT SECONDS | seeds REPOSITORY"
    );
    Console.Error.WriteLine($"targets: {string.Join(", ", FuzzTargets.Names)}");
    return 2;
}

static int Afl(string target)
{
    // Out of process: SharpFuzz restarts the child after a stack overflow or a timeout instead of stopping afl.
    FuzzTargets? targets = null;
    SharpFuzz.Fuzzer.OutOfProcess.Run(stream =>
    {
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        (targets ??= new FuzzTargets()).Run(target, memory.ToArray());
    });
    return 0;
}

static int Replay(string target, string[] paths)
{
    using var targets = new FuzzTargets();
    var files = paths
        .SelectMany(p => Directory.Exists(p) ? Directory.GetFiles(p).Order() : (IEnumerable<string>)[p])
        .ToList();
    int findings = 0;
    foreach (var file in files)
    {
        // The name first: a stack overflow ends the process before anything else is printed.
        Console.Write($"{file}: ");
        var run = Task.Run(() => targets.Run(target, File.ReadAllBytes(file)));
        if (!((IAsyncResult)run).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(10)))
        {
            // The hung run keeps its thread, and later runs would share the target's files with it.
            Console.WriteLine("HANG (still running after 10 s)");
            Environment.Exit(1);
        }
        if (run.Exception?.InnerException is { } e)
        {
            findings++;
            Console.WriteLine($"FINDING {e.GetType().FullName}: {e.Message}\n{e.StackTrace}");
        }
        else
            Console.WriteLine(run.Result is { } refusal ? $"refused: {refusal.Message}" : "parsed");
    }
    Console.WriteLine($"{files.Count} inputs, {findings} findings");
    return findings == 0 ? 0 : 1;
}

static int Mutate(string target, string corpus, string output, int seconds)
{
    var seeds = Directory.GetFiles(corpus).Order().Select(File.ReadAllBytes).ToList();
    Directory.CreateDirectory(output);
    // The input being run, left behind when a stack overflow ends the process or the watchdog reports a hang.
    string current = Path.Combine(output, "current-input");
    var random = new Random();
    var seen = new HashSet<string>();
    var clock = Stopwatch.StartNew();
    long runs = 0,
        started = 0;
    using var watchdog = new Timer(
        _ =>
        {
            if (clock.ElapsedMilliseconds - Interlocked.Read(ref started) > 10_000)
            {
                Console.WriteLine($"HANG: a run took over 10 s; its input is {current}");
                Environment.Exit(1);
            }
        },
        null,
        1000,
        1000
    );
    using var targets = new FuzzTargets();
    while (clock.Elapsed.TotalSeconds < seconds)
    {
        var input = Mutation.Of(seeds, random);
        File.WriteAllBytes(current, input);
        Interlocked.Exchange(ref started, clock.ElapsedMilliseconds);
        try
        {
            targets.Run(target, input);
        }
        catch (Exception e)
        {
            // One file per kind of finding: the exception type and the Alloy method nearest the throw.
            var where = new StackTrace(e)
                .GetFrames()
                .Select(f => f.GetMethod())
                .FirstOrDefault(m =>
                    m?.DeclaringType?.Namespace?.StartsWith("Alloy", StringComparison.Ordinal) == true
                );
            string kind = $"{e.GetType().Name} in {where?.DeclaringType?.Name}.{where?.Name}";
            if (seen.Add(kind))
            {
                File.WriteAllBytes(Path.Combine(output, $"finding-{seen.Count}"), input);
                Console.WriteLine($"finding-{seen.Count}: {kind}: {e.Message.ReplaceLineEndings(" ")}");
            }
        }
        runs++;
    }
    File.Delete(current);
    Console.WriteLine($"{target}: {runs} runs in {seconds} s, {seen.Count} kinds of finding");
    return seen.Count == 0 ? 0 : 1;
}

/// <summary>Random edits of a seed: afl's simplest moves, for a quick run where afl++ is not installed.</summary>
static class Mutation
{
    private static readonly byte[] Interesting = [0, 1, 0x7F, 0x80, 0xFF, (byte)'"', (byte)'{', (byte)'[', (byte)'-'];

    public static byte[] Of(List<byte[]> seeds, Random random)
    {
        var bytes = seeds[random.Next(seeds.Count)].ToList();
        for (int edits = random.Next(1, 5); edits > 0; edits--)
        {
            int at = random.Next(bytes.Count + 1);
            int length = Math.Min(random.Next(1, 17), bytes.Count - at);
            switch (random.Next(5))
            {
                case 0 when at < bytes.Count:
                    bytes[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1 when at < bytes.Count:
                    bytes[at] = Interesting[random.Next(Interesting.Length)];
                    break;
                case 2:
                    bytes.RemoveRange(at, length);
                    break;
                case 3:
                    bytes.InsertRange(at, bytes.GetRange(at, length));
                    break;
                default: // a piece of another seed
                    var other = seeds[random.Next(seeds.Count)];
                    int from = random.Next(other.Length);
                    bytes.InsertRange(at, other.Skip(from).Take(random.Next(1, 65)));
                    break;
            }
        }
        return [.. bytes];
    }
}
