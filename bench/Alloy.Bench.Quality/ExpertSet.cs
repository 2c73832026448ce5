using Alloy.Runtime.Evaluation;
using Alloy.Runtime.Models;
using Alloy.Tokenizers.Encoding;

namespace Alloy.Bench.Quality;

/// <summary>One skill: its validation and test items (generation, exact match).</summary>
public sealed record SkillTask(string Name, IReadOnlyList<TaskItem> Validation, IReadOnlyList<TaskItem> Test);

/// <summary>
/// The tiny experts of examples/experts: the shared base, one expert per skill (the folder named after its task), and
/// each task's validation and test files (data/TASK/validation.jsonl, test.jsonl).
/// </summary>
public sealed class ExpertSet
{
    private ExpertSet(
        string root,
        string baseModel,
        IReadOnlyList<string> experts,
        IReadOnlyList<string>? adapters,
        IReadOnlyList<SkillTask> tasks
    )
    {
        Root = root;
        Base = baseModel;
        Experts = experts;
        Adapters = adapters;
        Tasks = tasks;
        Tokenizer = TextTokenizer.Load(baseModel);
    }

    public string Root { get; }

    public string Base { get; }

    /// <summary>Expert k's folder; it is the expert of <see cref="Tasks"/>[k].</summary>
    public IReadOnlyList<string> Experts { get; }

    /// <summary>
    /// The LoRA expert of each task (models/lora-TASK, a PEFT adapter of the base), when every task has one.
    /// </summary>
    public IReadOnlyList<string>? Adapters { get; }

    public IReadOnlyList<SkillTask> Tasks { get; }

    /// <summary>
    /// The same tasks with the LoRA experts applied to the base (<c>base+adapter</c>) as the experts, for the merges
    /// that work on task vectors in the full weight space.
    /// </summary>
    public ExpertSet WithLoraExperts() => new(Root, Base, [.. Adapters!.Select(a => $"{Base}+{a}")], null, Tasks);

    public TextTokenizer Tokenizer { get; }

    public static ExpertSet Load(string root)
    {
        string data = Path.Combine(root, "data");
        if (!Directory.Exists(data))
            throw new ArgumentException($"{root}: no data/ folder of tasks");
        var tasks = new List<SkillTask>();
        var experts = new List<string>();
        foreach (var folder in Directory.GetDirectories(data).Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(folder);
            string expert = ModelFolder(root, name)
                ?? throw new ArgumentException($"{root}: no expert model for task '{name}'");
            experts.Add(expert);
            tasks.Add(
                new SkillTask(
                    name,
                    TaskFile.Read(Path.Combine(folder, "validation.jsonl")),
                    TaskFile.Read(Path.Combine(folder, "test.jsonl"))
                )
            );
        }
        string baseModel = ModelFolder(root, "base") ?? throw new ArgumentException($"{root}: no base model");
        var adapters = tasks.Select(t => Path.Combine(root, "models", "lora-" + t.Name)).ToList();
        bool haveAdapters = adapters.All(a => File.Exists(Path.Combine(a, "adapter_config.json")));
        return new ExpertSet(root, baseModel, experts, haveAdapters ? adapters : null, tasks);
    }

    /// <summary>
    /// The model folder called <paramref name="name"/> (directly under the root or under models/), or null.
    /// </summary>
    private static string? ModelFolder(string root, string name) =>
        new[] { Path.Combine(root, name), Path.Combine(root, "models", name) }.FirstOrDefault(f =>
            File.Exists(Path.Combine(f, "config.json"))
        );

    public static LlamaModel LoadModel(string folder) => LlamaModel.Load(folder);
}
