namespace Alloy.Methods;

/// <summary>How a method uses <c>base_model</c>.</summary>
public enum BaseModelUse
{
    /// <summary>The base is only an ordinary input if the recipe lists it among the models.</summary>
    NotUsed,

    /// <summary>The method is defined relative to a base (task vectors); a recipe without one is an error.</summary>
    Required,

    /// <summary>
    /// The method works with or without a base and changes meaning with one (nuslerp, multislerp: task-vector mode). A
    /// named base is an input as for <see cref="Required"/>; without one <see cref="MergeInputsInfo.BaseIndex"/> is -1.
    /// </summary>
    Optional,
}

/// <summary>What a method does when embedding matrices (vocabulary-indexed) of its inputs differ in shape.</summary>
public enum EmbeddingShapeRule
{
    /// <summary>Every input must have the output's shape.</summary>
    Exact,

    /// <summary>All inputs are cut to their largest common sub-matrix [:min rows, :min cols].</summary>
    CommonSubmatrix,

    /// <summary>Inputs are cut to the base model's shape; a smaller input is an error.</summary>
    TruncateToBase,
}

/// <summary>
/// What a method is, declared once in its class: the registry, the planner, <c>alloy methods</c>, the docs and the
/// model card read it, so none of them tests a method's type.
/// </summary>
/// <param name="Name">The registry key: mergekit's name (e.g. "task_arithmetic"), or the paper's or most common
/// toolkit's.</param>
/// <param name="Title">A human name (e.g. "Task Arithmetic").</param>
/// <param name="Summary">One line on what it does, for <c>alloy methods</c>.</param>
public sealed record MethodDeclaration(string Name, string Title, string Summary)
{
    /// <summary>The paper or page that defines the method; null if none.</summary>
    public string? Paper { get; init; }

    /// <summary>The parameters it reads, in the order they are listed.</summary>
    public IReadOnlyList<MethodParameter> Parameters { get; init; } = [];

    public BaseModelUse BaseModel { get; init; } = BaseModelUse.NotUsed;

    public EmbeddingShapeRule EmbeddingShapes { get; init; } = EmbeddingShapeRule.Exact;

    /// <summary>
    /// True when a non-embedding input whose shape differs from the base may be dropped with a warning (mergekit's
    /// task-vector methods); false makes it an error.
    /// </summary>
    public bool SkipsMismatchedInputs { get; init; }

    /// <summary>
    /// True when output element i depends only on input elements i, so the executor may split a tensor into chunks
    /// anywhere. Methods that need norms, top-k or other whole-tensor statistics say false, and may still be merged in
    /// chunks by declaring those statistics (<see cref="MergeMethod.Chunking"/>).
    /// </summary>
    public bool Elementwise { get; init; } = true;

    /// <summary>
    /// The statistics of each input model the method reads beside its tensors (data-aware methods), or null.
    /// </summary>
    public StatisticsUse? Statistics { get; init; }

    /// <summary>The parameter called <paramref name="name"/>, or null.</summary>
    public MethodParameter? Parameter(string name) => Parameters.FirstOrDefault(p => p.Name == name);
}

/// <summary>
/// A merge method: its <see cref="MethodDeclaration"/> and pure math over float32 spans. It receives its resolved
/// parameters (read through their declarations: <c>inputs[Density, i]</c>) and inputs of equal shape and writes the
/// output; it never touches a file. Adding a method is one class (found by <see cref="MethodRegistry"/> in Alloy and in
/// plugin assemblies), its test and its entry in docs/methods.md.
/// </summary>
public abstract class MergeMethod(MethodDeclaration declaration)
{
    public MethodDeclaration Declaration { get; } = declaration;

    /// <summary>The registry key (<see cref="MethodDeclaration.Name"/>).</summary>
    public string Name => Declaration.Name;

    public IReadOnlyList<MethodParameter> Parameters => Declaration.Parameters;

    /// <summary>
    /// True when this tensor's output is its single input unchanged (a passthrough without scale), so a tensor whose
    /// dtype does not change is copied byte for byte.
    /// </summary>
    public virtual bool CopiesInput(MergeInputsInfo inputs) => false;

    /// <summary>
    /// Float32 buffers of the tensor's (or chunk's) size the method uses besides its inputs and output, so the
    /// executor's memory budget counts them (small tiles and per-row buffers are not counted).
    /// </summary>
    public virtual int ScratchBuffers(int inputCount) => 1;

    /// <summary>
    /// Bytes of working memory the method needs for a whole tensor of <paramref name="shape"/> besides its inputs,
    /// output, scratch buffers and statistics (RegMean's double-precision system), for the executor's budget.
    /// </summary>
    public virtual long ExtraWorkingBytes(long[] shape) => 0;

    /// <summary>
    /// A model-wide pre-pass: for input <paramref name="input"/> of this tensor, the fraction of its model's
    /// task-vector entries (|x − base|, over every tensor of the plan for which this returns a value) to keep, or null
    /// (the default) when the method decides per tensor. The executor then finds, before merging anything, the
    /// magnitude cut keeping exactly that fraction of the model's entries, and hands each tensor its part: to a cut its
    /// <see cref="Chunking"/> plan requests with <see cref="CutRequest.ModelWide"/>, and through
    /// <see cref="MergeInputs.ModelWideCut"/>. Every tensor of one model must ask for the same fraction.
    /// </summary>
    public virtual double? ModelWideKeepFraction(MergeInputsInfo inputs, int input) => null;

    /// <summary>
    /// Side outputs for the whole plan (EMR's per-task masks and rescalers): for each tensor this method merges, given
    /// in plan order, the tensors it writes beside the merged model (filled in <see cref="Merge"/> through
    /// <see cref="MergeInputs.Side"/>) and the exact totals it sums, and how the totals become files after the last
    /// tensor. Null (the default) writes nothing. Called once by the planner, before any data is read; throw
    /// AlloyException to refuse.
    /// </summary>
    public virtual SideOutputPlan? PlanSideOutputs(IReadOnlyList<MergeInputsInfo> tensors) => null;

    /// <summary>
    /// How the executor may split this tensor: <see cref="ChunkPlan.Elementwise"/> anywhere, a plan with whole rows
    /// and/or statistics of the whole tensor gathered first (then <see cref="Accumulate"/> computes them), or null when
    /// the method needs the whole tensor in memory at once. The default follows
    /// <see cref="MethodDeclaration.Elementwise"/>.
    /// </summary>
    public virtual ChunkPlan? Chunking(MergeInputsInfo inputs, long[] shape) =>
        Declaration.Elementwise ? ChunkPlan.Elementwise : null;

    /// <summary>
    /// One unit of a statistics pass of this tensor (<see cref="ChunkPlan"/>): add the unit's part of each sum to
    /// <see cref="StatisticsPass.Sums"/> and count the populations <see cref="StatisticsPass.Counts"/> names.
    /// <c>unit.Statistics</c> holds what earlier passes found.
    /// </summary>
    public virtual void Accumulate(MergeInputs unit, StatisticsPass pass) =>
        throw new NotSupportedException($"merge method '{Name}' gathers no statistics");

    /// <summary>
    /// The statistics of the tensor <paramref name="inputs"/> belong to: the executor's, for a chunk; else gathered now
    /// from the whole tensor by the same passes.
    /// </summary>
    protected TensorStatistics StatisticsOf(MergeInputs inputs) =>
        inputs.Statistics ?? StatisticsGatherer.Gather(this, inputs);

    /// <summary>
    /// Checks the inputs of one output tensor before any data is read; throw AlloyException to refuse.
    /// </summary>
    public virtual void Validate(MergeInputsInfo inputs) { }

    /// <summary>
    /// Merges one output tensor, or one chunk of it when <see cref="Chunking"/> allows (then with the tensor's
    /// statistics in <see cref="MergeInputs.Statistics"/>), into <paramref name="output"/>.
    /// </summary>
    public abstract void Merge(MergeInputs inputs, Span<float> output);
}
