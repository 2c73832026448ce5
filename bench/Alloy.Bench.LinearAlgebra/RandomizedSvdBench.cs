using Alloy.Bench.Shared;
using Alloy.Checkpoints;
using Alloy.LinearAlgebra;
using Alloy.Tensors;

namespace Alloy.Bench;

/// <summary>
/// Exact against randomized truncated SVD on the updates of a fine-tune (the modules extract-lora decomposes): time of
/// each on one thread, and the randomized residual ‖ΔW − U_r·S_r·V_rᵀ‖_F over the Eckart–Young optimum (the norm of
/// the exact singular values past r). Usage: dotnet run -c Release --project bench/Alloy.Bench.LinearAlgebra --
/// randomized-svd FINE_TUNE BASE [--layer N] [--ranks 16,64,128] [--power 1,2]
/// </summary>
public static class RandomizedSvdBench
{
    public static void Run(string[] args)
    {
        string tunedPath = args[0],
            basePath = args[1];
        int layer = 0;
        int[] ranks = [16, 32, 64, 128],
            powers = [1, 2];
        for (int i = 2; i < args.Length; i++)
        {
            if (args[i] == "--layer")
                layer = int.Parse(args[++i]);
            else if (args[i] == "--ranks")
                ranks = [.. args[++i].Split(',').Select(int.Parse)];
            else if (args[i] == "--power")
                powers = [.. args[++i].Split(',').Select(int.Parse)];
        }
        using var tuned = Checkpoint.Open(tunedPath);
        using var original = Checkpoint.Open(basePath);
        Console.WriteLine($"# exact vs randomized SVD on the updates of layer {layer} and lm_head");
        Console.WriteLine($"backend: {DenseBackend.Current.Description}; load average {BenchClock.LoadAverage()}");
        Console.WriteLine();
        Console.WriteLine(
            "| module | shape | exact s | rank | l / min(m,n) | power its | randomized s | error / optimum |"
        );
        Console.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|");
        foreach (var tensor in tuned.Tensors)
        {
            var shape = tensor.Info.Shape;
            if (shape.Length != 2 || tensor.Name.Contains("embed", StringComparison.Ordinal))
                continue;
            if (
                !tensor.Name.StartsWith($"model.layers.{layer}.", StringComparison.Ordinal)
                && tensor.Name != "lm_head.weight"
            )
                continue;
            int m = (int)shape[0],
                n = (int)shape[1],
                k = Math.Min(m, n);
            var delta = tensor.ReadFloat32();
            var before = original.Find(tensor.Name)!.ReadFloat32();
            for (int i = 0; i < delta.Length; i++)
                delta[i] -= before[i];
            double total = delta.Sum(v => (double)v * v);
            var (u, s, vt) = (new float[(long)m * k], new float[k], new float[(long)k * n]);
            var exact = BenchClock.Best(2, () =>
                BenchClock.Timed(() => DenseBackend.Current.Svd(delta, m, n, u, s, vt))
            );
            string module = tensor.Name[..^".weight".Length];
            foreach (int rank in ranks.Where(r => r < k))
            {
                double optimum = Math.Sqrt(s.Skip(rank).Sum(v => (double)v * v));
                foreach (int power in powers)
                {
                    float[] rs = [];
                    var stream = RandomStream.For(0, module, 0);
                    var randomized = BenchClock.Best(2, () =>
                        BenchClock.Timed(() => rs = RandomizedSvd.Compute(delta, m, n, rank, stream, 10, power).S)
                    );
                    double error = Math.Sqrt(Math.Max(0, total - rs.Take(rank).Sum(v => (double)v * v)));
                    int l = RandomizedSvd.SketchSize(rank, m, n);
                    Console.WriteLine(
                        $"| {module} | {m}×{n} | {exact.Wall:F3} | {rank} | {(double)l / k:F2} | {power} | "
                            + $"{randomized.Wall:F3} | {error / optimum:F5} |"
                    );
                }
            }
        }
    }
}
