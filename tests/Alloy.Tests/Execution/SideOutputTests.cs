using System.Globalization;
using Alloy.Checkpoints;
using Alloy.Execution;
using Alloy.Methods;
using Alloy.Planning;
using Alloy.Recipes;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.Execution;

/// <summary>
/// The side-output framework with a method made for the test: rounded and packed side tensors streamed in plan order,
/// exact totals finished in plan order, the same bytes at any chunk size and thread count, and budgeted memory.
/// </summary>
public sealed class SideOutputTests : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    /// <summary>
    /// Copies input 0; side tensors: 3·x rounded to bf16 and the bits [x &gt; 0]; totals: Σx and the count of positive
    /// entries; after the last tensor, one line per tensor "name elements Σx positives" in the order it was given them.
    /// </summary>
    private sealed class Probe() : MergeMethod(new("probe", "Probe", "Copies input 0 and writes side outputs."))
    {
        public override void Merge(MergeInputs inputs, Span<float> output)
        {
            var x = inputs[0];
            var side = inputs.Side!;
            for (int j = 0; j < output.Length; j++)
            {
                output[j] = x[j];
                side.Tensor(0)[j] = 3 * x[j];
                side.Tensor(1)[j] = x[j] > 0 ? 1 : 0;
                side.Total(0).Add(x[j]);
                if (x[j] > 0)
                    side.Total(1).Add(1f);
            }
        }

        public override SideOutputPlan PlanSideOutputs(IReadOnlyList<MergeInputsInfo> tensors) =>
            new(
                tensors
                    .Select(t =>
                        (SideOutputs?)
                            new SideOutputs(
                                [
                                    SideTensor.Values("side/tripled.safetensors", t.TensorName, DType.BF16),
                                    SideTensor.Bits("side/sub/positive.safetensors", t.TensorName),
                                ],
                                2
                            )
                    )
                    .ToList(),
                totals =>
                    [
                        new SideFile(
                            "side/totals.txt",
                            string.Concat(
                                totals.Select(t =>
                                    string.Create(
                                        CultureInfo.InvariantCulture,
                                        $"{t.Tensor.TensorName} {t.Elements} {t.Values[0]:R} {t.Values[1]:R}\n"
                                    )
                                )
                            )
                        ),
                    ]
            );
    }

    private static readonly (string Name, long[] Shape)[] Tensors =
    [
        ("w.big", [37, 11]),
        ("w.scalar", []),
        ("w.row", [13]),
        ("w.empty", [0, 4]),
    ];

    private static float[] Values(int n, int seed) =>
        Enumerable.Range(0, n).Select(j => (float)Math.Round(Math.Sin(seed * 7.1 + j * 1.3) * 4, 2)).ToArray();

    /// <summary>
    /// Plans a raw merge of one hand-made checkpoint, then runs it with <see cref="Probe"/> as the method.
    /// </summary>
    private string Run(int threads, int chunk)
    {
        if (!Directory.Exists(_work["in"]))
            TestCheckpoints.Write(
                _work["in"],
                null,
                Tensors.Select((t, i) => (t.Name, t.Shape, Values((int)t.Shape.Aggregate(1L, (a, d) => a * d), i)))
            );
        var recipe = RecipeParser.Parse(
            $"merge_method: linear\nmodels:\n  - model: {_work["in"]}\n    parameters: {{weight: 1}}\n",
            "probe.yml",
            new Diagnostics()
        );
        using var models = ModelSet.Open(recipe, new Diagnostics(), raw: true);
        var plan = Planner.Create(recipe, models, new PlanOptions(Raw: RawTensorPolicy.Strict), new Diagnostics());
        var probe = new Probe();
        var side = probe.PlanSideOutputs(plan.Jobs.Select(j => j.Info!).ToList());
        plan = plan with
        {
            Method = probe,
            Jobs = plan.Jobs.Select((j, k) => j with { Method = probe, Side = side.Tensors[k] }).ToList(),
            SideOutputs = side,
        };

        var output = _work[$"out-{threads}-{chunk}"];
        using (var writer = new ShardedWriter(output, ShardPlan.Create(plan.Jobs.Select(j => j.Output).ToList(), 0)))
        {
            MergeExecutor.Run(
                plan,
                writer,
                writer.Folder,
                new ExecutionOptions { Threads = threads, ChunkElements = chunk }
            );
            writer.Complete();
        }
        return output;
    }

    [Fact]
    public void Side_tensors_and_totals_are_written_in_plan_order_and_read_back_as_written()
    {
        var output = Run(threads: 2, chunk: 5);
        var inputs = TestCheckpoints.ReadAll(_work["in"]);
        using (var tripled = SafetensorsFile.Open(Path.Combine(output, "side/tripled.safetensors")))
        {
            Assert.Equal(Tensors.Select(t => t.Name), tripled.Tensors.Select(t => t.Name));
            foreach (var (name, shape) in Tensors)
            {
                var stored = tripled.Find(name)!;
                Assert.Equal(DType.BF16, stored.Info.DType);
                Assert.Equal(shape, stored.Info.Shape);
                Assert.Equal(inputs[name].Select(x => (float)(BFloat16)(3 * x)), TestCheckpoints.Read(stored));
            }
        }
        using (var positive = SafetensorsFile.Open(Path.Combine(output, "side/sub/positive.safetensors")))
            foreach (var (name, shape) in Tensors)
                Assert.Equal(
                    inputs[name].Select(x => x > 0),
                    TestCheckpoints.ReadPackedBits(positive.Find(name)!, shape)
                );

        // The values are floats near two-decimal numbers below 4 (ulp ≥ 2⁻³⁰), so a double sum of a few hundred is
        // exact.
        var expected = string.Concat(
            Tensors.Select(t =>
                string.Create(
                    CultureInfo.InvariantCulture,
                    $"{t.Name} {inputs[t.Name].Length} {inputs[t.Name].Sum(x => (double)x):R} "
                        + $"{inputs[t.Name].Count(x => x > 0)}\n"
                )
            )
        );
        Assert.Equal(expected, File.ReadAllText(Path.Combine(output, "side/totals.txt")));
    }

    [Fact]
    public void Side_files_are_byte_identical_at_any_chunk_size_and_thread_count()
    {
        var first = Run(threads: 1, chunk: 1 << 20);
        string[] files = ["side/tripled.safetensors", "side/sub/positive.safetensors", "side/totals.txt"];
        foreach (var (threads, chunk) in new[] { (1, 1), (3, 3), (2, 8), (4, 17) })
        {
            var other = Run(threads, chunk);
            foreach (var file in files)
                Assert.True(
                    File.ReadAllBytes(Path.Combine(first, file))
                        .AsSpan()
                        .SequenceEqual(File.ReadAllBytes(Path.Combine(other, file))),
                    $"{file} differs at {threads} threads, chunks of {chunk}"
                );
        }
    }

    [Fact]
    public void Side_outputs_count_in_the_memory_budget_and_paths_stay_inside_a_subfolder()
    {
        var outputs = new SideOutputs(
            [SideTensor.Values("s/a.safetensors", "t", DType.F32), SideTensor.Bits("s/b.safetensors", "t")],
            1
        );
        Assert.Equal(1000L * (4 + 4) + 1000L * (4 + 1), outputs.WorkingBytes(1000));
        foreach (
            var bad in new[]
            {
                "a.safetensors",
                "/tmp/a.safetensors",
                "s/../a.safetensors",
                "s\\a.safetensors",
                "s//a.safetensors",
            }
        )
            Assert.Throws<ArgumentException>(() => SideTensor.Bits(bad, "t"));
        Assert.Throws<ArgumentException>(() => SideTensor.Values("s/a.safetensors", "t", DType.I32));
    }
}
