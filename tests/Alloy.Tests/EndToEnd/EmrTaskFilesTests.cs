using System.Text.Json.Nodes;
using Alloy.Checkpoints;
using Alloy.Tensors;
using Alloy.Tests.Methods;
using Alloy.Tests.Methods.Geometric;
using Alloy.Tests.Methods.TaskVectors;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// emr with write_task_masks: the masks and rescalers in OUT/emr/, read back with a packed-bit reader written here and
/// checked against <see cref="EmrReference"/>; every task model rebuilt from them; determinism and clean failures.
/// </summary>
public sealed class EmrTaskFilesTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public EmrTaskFilesTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    /// <summary>An emr recipe over the fixture's base and fine-tunes, or the given models.</summary>
    private string Config(
        string parameters = "{write_task_masks: true}",
        string dtype = "float32",
        IEnumerable<string>? models = null,
        string? baseModel = null
    ) =>
        _work.Write(
            $"emr-{Guid.NewGuid():N}.yml",
            $"""
            merge_method: emr
            base_model: {baseModel ?? _models.Base}
            models:
            {string.Join("\n", (models ?? _models.FineTunes).Select(f => $"  - model: {f}"))}
            parameters: {parameters}
            dtype: {dtype}
            """
        );

    /// <summary>rescalers.json's tasks: (model, mask file, rescaler), in recipe order.</summary>
    private static List<(string Model, string Masks, double Rescaler)> Tasks(string output)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "emr", "rescalers.json")))!;
        return json["tasks"]!
            .AsArray()
            .Select(t =>
                (t!["model"]!.GetValue<string>(), t["masks"]!.GetValue<string>(), t["rescaler"]!.GetValue<double>())
            )
            .ToList();
    }

    /// <summary>Every mask of a task file, unpacked by <see cref="TestCheckpoints.ReadPackedBits"/>.</summary>
    private static Dictionary<string, bool[]> Masks(string file, IReadOnlyDictionary<string, long[]> shapes)
    {
        using var masks = SafetensorsFile.Open(file);
        return masks.Tensors.ToDictionary(t => t.Name, t => TestCheckpoints.ReadPackedBits(t, shapes[t.Name]));
    }

    private static Dictionary<string, long[]> Shapes(string model)
    {
        using var checkpoint = Checkpoint.Open(model);
        return checkpoint.Tensors.ToDictionary(t => t.Name, t => t.Info.Shape);
    }

    private static string[] SideFiles(string output) =>
        Directory.Exists(Path.Combine(output, "emr"))
            ? Directory
                .GetFiles(Path.Combine(output, "emr"))
                .Select(f => Path.GetFileName(f))
                .Order(StringComparer.Ordinal)
                .ToArray()
            : [];

    [Fact]
    public void Golden_masks_and_rescalers_on_hand_made_tensors()
    {
        // The three-task worked example of the TIES/TALL literature as tensor "a" (base 0): γ = [+,+,+,+,+,−]; M1 =
        // 101011, M2 = 001110, M3 = 110000; alone, s = [1.9/1.9, 1.65/1.3, 1.7/0.9]. Tensor "b" ([2, 5], base 0.5) has
        // padding bits in every row.
        float[][] a =
        [
            [0.5f, -0.2f, 0.1f, 0f, 0.8f, -0.3f],
            [-0.4f, -0.1f, 0.3f, 0.2f, 0.6f, 0.05f],
            [0.1f, 0.4f, -0.2f, -0.05f, -0.7f, 0.25f],
        ];
        float[][] b =
        [
            [0.75f, 0f, 0.5f, 1.5f, 0.375f, 1f, 1f, 0.25f, 0.5f, 0.5f],
            [0f, 0.25f, 0.75f, 1f, 0.625f, 0.75f, -0.25f, 0.25f, 0.5f, 0.5f],
            [0.625f, 0.75f, 0f, -0.5f, 0.75f, -0.5f, 0.75f, 1f, 0.5f, 0.5f],
        ];
        var baseB = Enumerable.Repeat(0.5f, 10).ToArray();
        TestCheckpoints.Write(_work["base"], null, [("a", [6], new float[6]), ("b", [2, 5], baseB)]);
        for (int t = 0; t < 3; t++)
            TestCheckpoints.Write(_work[$"task-{t + 1}"], null, [("a", [6], a[t]), ("b", [2, 5], b[t])]);
        string[] taskModels = [_work["task-1"], _work["task-2"], _work["task-3"]];

        var result = AlloyCli.Run(
            "merge-raw",
            Config(models: taskModels, baseModel: _work["base"]),
            _work["out"],
            "--quiet"
        );
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(
            ["README.md", "rescalers.json", "task-1.safetensors", "task-2.safetensors", "task-3.safetensors"],
            SideFiles(_work["out"])
        );
        var tasks = Tasks(_work["out"]);
        Assert.Equal([_work["task-1"], _work["task-2"], _work["task-3"]], tasks.Select(t => t.Model));
        byte[][] goldenA =
        [
            [0b1010_1100],
            [0b0011_1000],
            [0b1100_0000],
        ];
        var shapes = new Dictionary<string, long[]> { ["a"] = [6], ["b"] = [2, 5] };
        for (int t = 0; t < 3; t++)
        {
            using (var file = SafetensorsFile.Open(_work[$"out/emr/task-{t + 1}.safetensors"]))
                Assert.Equal(goldenA[t], file.Find("a")!.Bytes(0, 1).ToArray());
            var masks = Masks(_work[$"out/emr/task-{t + 1}.safetensors"], shapes);
            Assert.Equal(EmrReference.Mask(baseB, b, t), masks["b"]);
        }
        var expected = EmrReference.Rescalers([(new float[6], a), (baseB, b)]);
        for (int t = 0; t < 3; t++)
            Assert.Equal(expected[t], tasks[t].Rescaler, 1e-6 * expected[t]);
        // Sums of per-tensor means, not one ratio of sums over all entries (as if "a" and "b" were one tensor).
        var pooled = EmrReference.Rescalers([
            (
                new float[6]
                    .Concat(baseB)
                    .ToArray(),
                a.Zip(b, (x, y) => x.Concat(y).ToArray()).ToList()
            ),
        ]);
        Assert.Contains(Enumerable.Range(0, 3), t => Math.Abs(pooled[t] - tasks[t].Rescaler) > 1e-3);

        // Tensor "a" alone gives the worked example's rescalers.
        TestCheckpoints.Write(_work["base"], null, [("a", [6], new float[6])]);
        for (int t = 0; t < 3; t++)
            TestCheckpoints.Write(_work[$"task-{t + 1}"], null, [("a", [6], a[t])]);
        Assert.Equal(
            0,
            AlloyCli
                .Run("merge-raw", Config(models: taskModels, baseModel: _work["base"]), _work["out-a"], "--quiet")
                .ExitCode
        );
        double[] golden = [1.9 / 1.9, 1.65 / 1.3, 1.7 / 0.9];
        Assert.Equal(golden, Tasks(_work["out-a"]).Select(t => t.Rescaler), (x, y) => Math.Abs(x - y) < 1e-6);
    }

    [Fact]
    public void Every_task_model_rebuilds_from_the_unified_model_its_masks_and_its_rescaler()
    {
        AlloyCli.Merge(Config(), _work["out"]);
        var @base = TestCheckpoints.ReadAll(_models.Base);
        var fineTunes = _models.FineTunes.Select(TestCheckpoints.ReadAll).ToList();
        var unified = TestCheckpoints.ReadAll(_work["out"]);
        var shapes = Shapes(_work["out"]);
        var tasks = Tasks(_work["out"]);
        Assert.Equal(_models.FineTunes, tasks.Select(t => t.Model));
        Assert.Equal(
            ["finetune-1.safetensors", "finetune-2.safetensors", "finetune-3.safetensors"],
            tasks.Select(t => t.Masks)
        );

        var expected = EmrReference.Rescalers(
            @base.Keys.Select(n => (@base[n], (IReadOnlyList<float[]>)fineTunes.Select(f => f[n]).ToList())).ToList()
        );
        for (int t = 0; t < tasks.Count; t++)
        {
            Assert.Equal(expected[t], tasks[t].Rescaler, 1e-6 * expected[t]);
            var masks = Masks(_work[$"out/emr/{tasks[t].Masks}"], shapes);
            Assert.Equal(@base.Keys.Order(), masks.Keys.Order());
            foreach (var (name, mask) in masks)
            {
                var models = fineTunes.Select(f => f[name]).ToList();
                Assert.Equal(EmrReference.Mask(@base[name], models, t), mask);
                // W_t = base + s_t·(M_t ⊙ (W_uni − base)), from the files, against the same from the reference.
                var reference = EmrReference.Unified(@base[name], models);
                var rebuilt = unified[name]
                    .Select((u, j) => @base[name][j] + (float)tasks[t].Rescaler * (mask[j] ? u - @base[name][j] : 0f))
                    .ToArray();
                var independent = reference
                    .Select((u, j) => @base[name][j] + expected[t] * (mask[j] ? u - @base[name][j] : 0))
                    .ToArray();
                Expect.Close(
                    $"task {t + 1} {name}",
                    independent,
                    rebuilt,
                    DType.F32,
                    models.Max(m => m.Max(Math.Abs)) * 4
                );
            }
        }
        var readme = File.ReadAllText(_work["out/emr/README.md"]);
        Assert.Contains("W_t = W_base + s_t * (M_t ⊙ (W_unified − W_base))", readme);
        Assert.Contains($"| `{_models.FineTunes[2]}` | `finetune-3.safetensors` | {tasks[2].Rescaler:R} |", readme);
    }

    [Fact]
    public void One_fine_tune_has_rescaler_one_and_a_mask_wherever_it_differs_from_the_base()
    {
        AlloyCli.Merge(Config(models: [_models.FineTunes[0]]), _work["out"]);
        var task = Assert.Single(Tasks(_work["out"]));
        Assert.Equal(1.0, task.Rescaler, 1e-12);
        var @base = TestCheckpoints.ReadAll(_models.Base);
        var fineTune = TestCheckpoints.ReadAll(_models.FineTunes[0]);
        foreach (var (name, mask) in Masks(_work["out/emr/finetune-1.safetensors"], Shapes(_work["out"])))
            Assert.Equal(fineTune[name].Zip(@base[name], (x, b) => x != b), mask);
    }

    [Fact]
    public void Side_files_are_byte_identical_at_any_thread_count_and_chunk_size()
    {
        var recipe = Alloy.Recipes.RecipeParser.ParseFile(Config(dtype: "bfloat16"), new Diagnostics());
        (int Threads, int Chunk)[] runs = [(1, 1 << 20), (4, 97), (2, 13), (3, 8)];
        foreach (var (threads, chunk) in runs)
            Merger.Run(
                recipe,
                _work[$"out-{threads}"],
                new MergeOptions
                {
                    Execution = new() { Threads = threads, ChunkElements = chunk },
                },
                new Diagnostics()
            );
        var files = SideFiles(_work["out-1"]);
        Assert.Equal(5, files.Length);
        foreach (var (threads, _) in runs.Skip(1))
        {
            Assert.Equal(files, SideFiles(_work[$"out-{threads}"]));
            foreach (var file in files)
                Assert.True(
                    File.ReadAllBytes(_work[$"out-1/emr/{file}"])
                        .AsSpan()
                        .SequenceEqual(File.ReadAllBytes(_work[$"out-{threads}/emr/{file}"])),
                    $"{file} differs at {threads} threads"
                );
            Assert.Equal(
                File.ReadAllBytes(_work["out-1/model.safetensors"]),
                File.ReadAllBytes(_work[$"out-{threads}/model.safetensors"])
            );
        }
    }

    [Fact]
    public void Without_the_option_no_side_files_are_written_and_the_unified_model_is_the_same()
    {
        AlloyCli.Merge(Config("{}"), _work["off"]);
        AlloyCli.Merge(Config("{write_task_masks: false}"), _work["false"]);
        AlloyCli.Merge(Config(), _work["on"]);
        Assert.False(Directory.Exists(_work["off/emr"]));
        Assert.False(Directory.Exists(_work["false/emr"]));
        Assert.Equal(
            File.ReadAllBytes(_work["off/model.safetensors"]),
            File.ReadAllBytes(_work["on/model.safetensors"])
        );
    }

    [Fact]
    public void A_cancelled_merge_leaves_no_side_files()
    {
        var recipe = Alloy.Recipes.RecipeParser.ParseFile(Config(), new Diagnostics());
        using var cancel = new CancellationTokenSource();
        Assert.ThrowsAny<OperationCanceledException>(() =>
            Merger.Run(
                recipe,
                _work["parent/out"],
                new MergeOptions
                {
                    Execution = new() { Threads = 1, ChunkElements = 64 },
                },
                new Diagnostics(),
                progress =>
                {
                    if (progress.TensorsDone >= 2)
                        cancel.Cancel();
                },
                cancel.Token
            )
        );
        // Nothing is left, not even the parent folder the merge created for its output.
        Assert.False(Directory.Exists(_work["parent"]));
    }

    [Fact]
    public void A_setting_that_varies_across_tensors_is_refused_before_anything_is_written() =>
        AlloyCli.Fails(
            Config("{write_task_masks: [{filter: mlp, value: true}, {value: false}]}"),
            _work["out"],
            "set it once for the whole merge"
        );

    [Fact]
    public void Tasks_whose_folders_share_a_name_get_distinct_files()
    {
        foreach (
            var (source, target) in new[] { (_models.FineTunes[0], "x/finetune"), (_models.FineTunes[1], "y/finetune") }
        )
        {
            Directory.CreateDirectory(_work[target]);
            foreach (var file in Directory.GetFiles(source))
                File.Copy(file, Path.Combine(_work[target], Path.GetFileName(file)));
        }
        AlloyCli.Merge(Config(models: [_work["x/finetune"], _work["y/finetune"]]), _work["out"]);
        Assert.Equal(
            [(_work["x/finetune"], "finetune.safetensors"), (_work["y/finetune"], "finetune-2.safetensors")],
            Tasks(_work["out"]).Select(t => (t.Model, t.Masks))
        );
        Assert.True(File.Exists(_work["out/emr/finetune-2.safetensors"]));
    }
}
