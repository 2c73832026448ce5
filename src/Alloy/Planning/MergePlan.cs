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
public sealed record PlannedInput(InputModel Model, StoredTensor Tensor, long[] Shape, RowLayout? Rows = null, LoraDelta? Lora = null)
{
    public bool IsCropped => Rows is null && !Shape.AsSpan().SequenceEqual(Tensor.Info.Shape);

    /// <summary>True when the input is read exactly as stored (so a passthrough can copy its bytes).</summary>
    public bool IsAsStored => Rows is null && Lora is null && !IsCropped;
}

/// <summary>
/// How to produce one output tensor. Without a method, the single input's bytes are copied unchanged (passthrough
/// of same-dtype tensors, integer tensors); with one, inputs are read as float32, merged, and rounded once.
/// </summary>
public sealed record TensorJob(TensorInfo Output, MergeMethod? Method, IReadOnlyList<PlannedInput> Inputs, MergeInputsInfo? Info)
{
    public bool IsCopy => Method is null;

    /// <summary>What the method writes beside the model for this tensor (<see cref="MergeMethod.PlanSideOutputs"/>), or null.</summary>
    public SideOutputs? Side { get; init; }
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
    bool UntiesHead)
{
    /// <summary>The output vocabulary and chat template, when the recipe sets tokenizer or chat_template; null copies the donor's tokenizer.</summary>
    public TokenizerPlan? Tokenizer { get; init; }

    /// <summary>The method's side outputs (each job's part is <see cref="TensorJob.Side"/>), or null when it writes none.</summary>
    public SideOutputPlan? SideOutputs { get; init; }

    public long OutputBytes => Jobs.Sum(j => j.Output.ByteLength);

    public long InputBytes => Jobs.Sum(j => j.Inputs.Sum(i => i.Tensor.Info.ByteLength));
}
