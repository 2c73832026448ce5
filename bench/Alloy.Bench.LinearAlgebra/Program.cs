using Alloy.Bench;
using Alloy.Bench.Shared;
using Alloy.LinearAlgebra;
using Alloy.Tensors;

// Measures each linear-algebra backend on random float32 matrices: GEMM speed and accuracy (sampled entries against
// double-precision dot products) and thin-SVD speed and accuracy (reconstruction error, orthogonality of U and Vᵀ,
// agreement of singular values across backends). Usage: dotnet run -c Release --project bench/Alloy.Bench.LinearAlgebra
// -- [sizes…] [--backends managed,openblas] [--repeat N] (backend managed-1: the managed GEMM on one thread, to compare
// kernels core for core with OpenBLAS's one thread) Sizes are "n" (square) or "mxn" (GEMM and SVD), or "mxnxk" (GEMM
// only, in a linear layer's layout: C[m×n] = A[m×k]·Bᵀ with B stored n×k, as Hugging Face stores weights and
// Alloy.Runtime multiplies them); the default is 1024 4096.

if (args is ["randomized-svd", ..])
{
    RandomizedSvdBench.Run(args[1..]);
    return;
}

var sizes = new List<(int M, int N)>();
var linearShapes = new List<(int M, int N, int K)>();
var backends = new List<(string Label, DenseBackend Backend)>();
int repeat = 1;
for (int i = 0; i < args.Length; i++)
{
    if (args[i] == "--backends")
    {
        foreach (var name in args[++i].Split(','))
            backends.Add(
                (
                    name,
                    name switch
                    {
                        "managed" => DenseBackend.Managed,
                        "managed-1" => DenseBackend.Managed.SingleThreaded,
                        "openblas" => DenseBackend.OpenBlas
                            ?? throw new InvalidOperationException("libopenblas.so.0 is not available"),
                        _ => throw new ArgumentException($"unknown backend '{name}'"),
                    }
                )
            );
    }
    else if (args[i] == "--repeat")
        repeat = int.Parse(args[++i]);
    else
    {
        var parts = args[i].Split('x');
        if (parts.Length == 3)
            linearShapes.Add((int.Parse(parts[0]), int.Parse(parts[1]), int.Parse(parts[2])));
        else
            sizes.Add((int.Parse(parts[0]), int.Parse(parts[^1])));
    }
}
if (sizes.Count == 0 && linearShapes.Count == 0)
    sizes = [(1024, 1024), (4096, 4096)];
if (backends.Count == 0)
    backends = DenseBackend.OpenBlas is { } ob
        ? [("openblas", ob), ("managed", DenseBackend.Managed)]
        : [("managed", DenseBackend.Managed)];

Console.WriteLine($"# Alloy linear-algebra benchmark");
Console.WriteLine(
    $"{Environment.ProcessorCount} cores, .NET {Environment.Version}, "
        + $"{System.Runtime.InteropServices.RuntimeInformation.OSDescription}"
);
foreach (var (label, b) in backends)
    Console.WriteLine($"- {label}: {b.Description}");
Console.WriteLine();
Console.WriteLine($"load average before: {BenchClock.LoadAverage()}");
Console.WriteLine();
Console.WriteLine("Times are the best of the repeats: wall seconds (CPU seconds of all threads in parentheses).");
Console.WriteLine();
if (linearShapes.Count > 0)
{
    // One call per measurement, as the backend offers it: OpenBLAS on one thread, the managed GEMM on all cores.
    // GFLOP per CPU-second compares the kernels' efficiency however many threads each used.
    Console.WriteLine(
        "| linear layer m×n×k | backend | GEMM ms (CPU ms) | GFLOP/s | GFLOP per CPU-second | max rel. err |"
    );
    Console.WriteLine("|---|---|---|---|---|---|");
    foreach (var (m, n, k) in linearShapes)
    {
        var a = RandomMatrix(m, k, "A");
        var w = RandomMatrix(n, k, "W");
        foreach (var (label, backend) in backends)
        {
            var c = new float[(long)m * n];
            void Run() => backend.Gemm(false, true, m, n, k, 1, a, k, w, k, 0, c, n);
            Run();
            // Repeat small products until a measurement lasts about 50 ms.
            int inner = (int)Math.Clamp(5e7 / (2.0 * m * n * k / 10e9 * 1e9), 1, 10_000);
            double seconds =
                Time(
                    repeat,
                    () =>
                    {
                        for (int r = 0; r < inner; r++)
                            Run();
                    },
                    out double cpu
                ) / inner;
            cpu /= inner;
            double error = SampledLinearError(a, w, c, m, n, k);
            double flop = 2.0 * m * n * k;
            Console.WriteLine(
                $"| {m}×{n}×{k} | {label} | {seconds * 1e3:F2} ({cpu * 1e3:F2}) | {flop / seconds / 1e9:F1} | "
                    + $"{flop / cpu / 1e9:F1} | {error:E1} |"
            );
        }
        Console.Error.WriteLine($"load average: {BenchClock.LoadAverage()}");
    }
    Console.WriteLine();
}
if (sizes.Count > 0)
{
    Console.WriteLine(
        "| size | backend | GEMM s | GEMM GFLOP/s | GEMM max rel. err | SVD s | ‖A−USVᵀ‖/‖A‖ | max\\|UᵀU−I\\| | "
            + "max\\|VᵀV−I\\| | max\\|σ−σ_ref\\|/σ₁ |"
    );
    Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|");
}

foreach (var (m, n) in sizes)
{
    int r = Math.Min(m, n);
    var a = RandomMatrix(m, n, "A");
    var bMatrix = RandomMatrix(n, m, "B");
    float[]? referenceS = null;
    foreach (var (label, backend) in backends)
    {
        // GEMM: C = A·B (m×n times n×m).
        var c = new float[(long)m * m];
        backend.Multiply(m, m, n, a, bMatrix, c); // warm-up (JIT, page faults)
        double gemmSeconds = Time(repeat, () => backend.Multiply(m, m, n, a, bMatrix, c), out double gemmCpu);
        double gemmError = SampledGemmError(a, bMatrix, c, m, n);

        var u = new float[(long)m * r];
        var s = new float[r];
        var vt = new float[(long)r * n];
        if (m * (long)n <= 1 << 20)
            backend.Svd(a, m, n, u, s, vt); // warm-up for small sizes only
        double svdSeconds = Time(repeat, () => backend.Svd(a, m, n, u, s, vt), out double svdCpu);
        double reconstruction = SampledReconstructionError(a, u, s, vt, m, n, r);
        double uOrth = SampledOrthogonality(u, m, r, columns: true);
        double vOrth = SampledOrthogonality(vt, r, n, columns: false);
        referenceS ??= s;
        double sDiff = 0;
        for (int j = 0; j < r; j++)
            sDiff = Math.Max(sDiff, Math.Abs(s[j] - referenceS[j]) / referenceS[0]);
        Console.Error.WriteLine($"load average: {BenchClock.LoadAverage()}");
        Console.WriteLine(
            $"| {m}×{n} | {label} | {gemmSeconds:F3} ({gemmCpu:F3}) | {2.0 * m * m * n / gemmSeconds / 1e9:F1} | "
                + $"{gemmError:E1} | {svdSeconds:F2} ({svdCpu:F2}) | {reconstruction:E1} | {uOrth:E1} | {vOrth:E1} | "
                + $"{sDiff:E1} |"
        );
    }
}

// Largest error of 2000 sampled entries of C = A·Wᵀ against double dot products, relative to ‖row‖·‖row‖.
static double SampledLinearError(float[] a, float[] w, float[] c, int m, int n, int k)
{
    var stream = RandomStream.For(7, "linear-samples", 0);
    double worst = 0;
    for (int sample = 0; sample < 2000; sample++)
    {
        int i = (int)(stream.Uniform(2 * sample) * m),
            j = (int)(stream.Uniform(2 * sample + 1) * n);
        double dot = 0,
            na = 0,
            nw = 0;
        for (int p = 0; p < k; p++)
        {
            double x = a[(long)i * k + p],
                y = w[(long)j * k + p];
            dot += x * y;
            na += x * x;
            nw += y * y;
        }
        worst = Math.Max(worst, Math.Abs(c[(long)i * n + j] - dot) / Math.Sqrt(na * nw));
    }
    return worst;
}

static float[] RandomMatrix(int m, int n, string name)
{
    var stream = RandomStream.For(42, name, 0);
    var values = new float[(long)m * n];
    for (long i = 0; i < values.Length; i++)
        values[i] = (float)stream.Normal(i);
    return values;
}

// Best wall time of the repeats; the CPU time of that run goes to cpuSeconds (less disturbed by other load).
static double Time(int repeat, Action action, out double cpuSeconds)
{
    var (wall, cpu) = BenchClock.Best(repeat, () => BenchClock.Timed(action));
    cpuSeconds = cpu;
    return wall;
}

// Largest error of 2000 sampled entries of C = A·B against double dot products, relative to ‖row‖·‖column‖.
static double SampledGemmError(float[] a, float[] b, float[] c, int m, int n)
{
    var stream = RandomStream.For(7, "gemm-samples", 0);
    double worst = 0;
    for (int sample = 0; sample < 2000; sample++)
    {
        int i = (int)(stream.Uniform(2 * sample) * m),
            j = (int)(stream.Uniform(2 * sample + 1) * m);
        double dot = 0,
            na = 0,
            nb = 0;
        for (int p = 0; p < n; p++)
        {
            double x = a[(long)i * n + p],
                y = b[(long)p * m + j];
            dot += x * y;
            na += x * x;
            nb += y * y;
        }
        worst = Math.Max(worst, Math.Abs(c[(long)i * m + j] - dot) / Math.Sqrt(na * nb));
    }
    return worst;
}

// ‖A − U·S·Vᵀ‖_F / ‖A‖_F over up to 256 evenly spaced rows, in double.
static double SampledReconstructionError(float[] a, float[] u, float[] s, float[] vt, int m, int n, int r)
{
    int rows = Math.Min(m, 256);
    double error = 0,
        norm = 0;
    object gate = new();
    Parallel.For(0, rows, k =>
    {
        int i = (int)((long)k * m / rows);
        var row = new double[n];
        for (int q = 0; q < r; q++)
        {
            double f = (double)u[(long)i * r + q] * s[q];
            if (f == 0)
                continue;
            for (int j = 0; j < n; j++)
                row[j] += f * vt[(long)q * n + j];
        }
        double e = 0,
            a2 = 0;
        for (int j = 0; j < n; j++)
        {
            double x = a[(long)i * n + j];
            e += (x - row[j]) * (x - row[j]);
            a2 += x * x;
        }
        lock (gate)
        {
            error += e;
            norm += a2;
        }
    });
    return Math.Sqrt(error / norm);
}

// max |XᵀX − I| over up to 256 evenly spaced columns of U (columns: true) or rows of Vᵀ, in double.
static double SampledOrthogonality(float[] x, int rows, int cols, bool columns)
{
    int count = columns ? cols : rows,
        length = columns ? rows : cols;
    int sample = Math.Min(count, 256);
    var picked = Enumerable.Range(0, sample).Select(k => (int)((long)k * count / sample)).ToArray();
    double Get(int vector, int element) =>
        columns ? x[(long)element * cols + vector] : x[(long)vector * cols + element];
    var vectors = picked.Select(v => Enumerable.Range(0, length).Select(e => Get(v, e)).ToArray()).ToArray();
    double worst = 0;
    object gate = new();
    Parallel.For(0, sample, p =>
    {
        double local = 0;
        for (int q = 0; q <= p; q++)
        {
            double dot = 0;
            for (int e = 0; e < length; e++)
                dot += vectors[p][e] * vectors[q][e];
            local = Math.Max(local, Math.Abs(dot - (p == q ? 1 : 0)));
        }
        lock (gate)
            worst = Math.Max(worst, local);
    });
    return worst;
}
