using Alloy.Checkpoints;
using Alloy.Methods;
using Alloy.Recipes;
using Alloy.Tensors;
using Alloy.Tokenizers;

namespace Alloy.Planning;

/// <summary>
/// One input of an output tensor: the stored tensor and the shape read from it: a leading sub-matrix when cropped, or,
/// with <see cref="Rows"/>, an embedding re-laid-out to the output vocabulary.
/// </summary>
/// <param name="Lora">The low-rank update a model+lora reference adds to this tensor as it is read.</param>
/// <param name="LoraBias">The bias update (lora_B.bias) a model+lora reference adds to this bias as it is read.</param>
/// <param name="Gather">The permutation an aligned model's tensor is read through (<c>align:</c>).</param>
public sealed record PlannedInput(
    InputModel Model,
    StoredTensor Tensor,
    long[] Shape,
    RowLayout? Rows = null,
    LoraDelta? Lora = null,
    LoraBias? LoraBias = null,
    Alignment.TensorGather? Gather = null
)
{
    public bool IsCropped => Rows is null && !Shape.AsSpan().SequenceEqual(Tensor.Info.Shape);

    /// <summary>True when the input is read exactly as stored (so a passthrough can copy its bytes).</summary>
    public bool IsAsStored => Rows is null && Lora is null && LoraBias is null && Gather is null && !IsCropped;
}

/// <summary>An input's statistic (a data-aware method's Fisher or Gram matrix) and the file it is in.</summary>
public sealed record PlannedStatistic(StoredTensor Tensor, StatisticsFile File);

/// <summary>
/// Where a tensor's parameters come from, kept so a plan can be given new parameter values without being made again
/// (<see cref="Planner.Reparameterize"/>): its slice (the recipe's, or <c>models:</c> expanded into one), the source of
/// each input within it, each input's own tensor name (filters match it), the layer fraction t of gradients, its place
/// in the output model, the base model's input, and whether the output keeps the stored dtype (so it may be a copy).
/// </summary>
public sealed record TensorOrigin(
    int Slice,
    IReadOnlyList<int> Sources,
    IReadOnlyList<string> InputNames,
    double T,
    TensorPosition Position,
    int BaseIndex,
    bool KeepsDType
);

/// <summary>
/// How to produce one output tensor. Without a method, the single input's bytes are copied unchanged (a method that
/// passes its input through, integer tensors); with one, inputs are read as float32, merged, and rounded once.
/// </summary>
public sealed record TensorJob(
    TensorInfo Output,
    MergeMethod? Method,
    IReadOnlyList<PlannedInput> Inputs,
    MergeInputsInfo? Info
)
{
    public bool IsCopy => Method is null;

    /// <summary>
    /// What the method writes beside the model for this tensor (<see cref="MergeMethod.PlanSideOutputs"/>), or null.
    /// </summary>
    public SideOutputs? Side { get; init; }

    /// <summary>Where the method's parameters come from; null for tensors no method sees (integer tensors).</summary>
    public TensorOrigin? Origin { get; init; }

    /// <summary>
    /// Each input's statistic for a data-aware method (<see cref="MethodDeclaration.Statistics"/>), in input order;
    /// null when the tensor has none (a RegMean tensor that is not a linear layer's weight).
    /// </summary>
    public IReadOnlyList<PlannedStatistic>? Statistics { get; init; }
}

/// <summary>A merge, fully decided: every output tensor in write order, and what the output folder needs.</summary>
public sealed record MergePlan(
    MergeRecipe Recipe,
    MergeMethod Method,
    IReadOnlyList<TensorJob> Jobs,
    InputModel Donor,
    int OutputLayerCount,
    bool LayerCountChanged,
    DType? ConfigDType,
    bool UntiesHead
)
{
    /// <summary>
    /// The output vocabulary and chat template, when the recipe sets tokenizer or chat_template; null copies the
    /// donor's tokenizer.
    /// </summary>
    public TokenizerPlan? Tokenizer { get; init; }

    /// <summary>
    /// The method's side outputs (each job's part is <see cref="TensorJob.Side"/>), or null when it writes none.
    /// </summary>
    public SideOutputPlan? SideOutputs { get; init; }

    /// <summary>
    /// What the method knows of the first tensor it merges: its resolved parameters, from which methods that learn
    /// before merging (AdaMerging, Concrete subspace) read their global settings and each model's data.
    /// </summary>
    public MergeInputsInfo FirstMerged =>
        Jobs.FirstOrDefault(j => j.Info is not null)?.Info
        ?? throw new AlloyException($"merge method '{Method.Name}' merges no tensor of this recipe");

    /// <summary>The options it was planned with (the seed keys random streams; a raw merge has no layers).</summary>
    public PlanOptions Options { get; init; } = new();

    public long OutputBytes => Jobs.Sum(j => j.Output.ByteLength);

    /// <summary>
    /// The plan as text, one line per output tensor: name, dtype and shape; how it is made (copied, or the method with
    /// each input's model, tensor and shape); every parameter's resolved value (globals, then per input). Two plans
    /// that describe alike write the same model.
    /// </summary>
    public string Describe()
    {
        var text = new System.Text.StringBuilder();
        text.Append(
            $"method {Method.Name}, {OutputLayerCount} layers, config dtype {ConfigDType?.TorchName() ?? "-"}\n"
        );
        foreach (var job in Jobs)
        {
            text.Append(job.Output.Name)
                .Append(' ')
                .Append(job.Output.DType.TorchName())
                .Append(" [")
                .Append(string.Join(", ", job.Output.Shape))
                .Append("] ");
            text.Append(job.IsCopy ? "copy of" : "merge of");
            foreach (var input in job.Inputs)
            {
                text.Append($" {input.Model.Name}:{input.Tensor.Info.Name}[{string.Join(", ", input.Shape)}]");
                text.Append(input.Rows is null ? "" : "+rows")
                    .Append(input.Lora is null && input.LoraBias is null ? "" : "+lora");
            }
            if (job.Info is { } info)
            {
                text.Append(" |");
                foreach (var parameter in Method.Parameters)
                {
                    if (parameter.Scope == ParameterScope.Global)
                    {
                        text.Append($" {parameter.Name}={info.Parameters.Global(parameter)?.ToString() ?? "-"}");
                        continue;
                    }
                    var values = Enumerable
                        .Range(0, info.Count)
                        .Select(i => info.Parameters.ForModel(i, parameter)?.ToString() ?? "-");
                    text.Append($" {parameter.Name}=[{string.Join(", ", values)}]");
                }
            }
            text.Append('\n');
        }
        return text.ToString();
    }

    public long InputBytes => Jobs.Sum(j => j.Inputs.Sum(i => i.Tensor.Info.ByteLength));
}
