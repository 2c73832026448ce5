using Alloy.Methods.TaskVectors;
using Alloy.Tensors;

namespace Alloy.Methods;

/// <summary>Parameters resolved for one output tensor: globals, and per-model values in input order.</summary>
public sealed class ResolvedParameters
{
    private readonly IReadOnlyDictionary<string, double> _globals;
    private readonly IReadOnlyList<IReadOnlyDictionary<string, double>> _perModel;

    public ResolvedParameters(IReadOnlyDictionary<string, double> globals, IReadOnlyList<IReadOnlyDictionary<string, double>> perModel)
    {
        _globals = globals;
        _perModel = perModel;
    }

    public double? Global(string name) => _globals.TryGetValue(name, out var v) ? v : null;

    public double? ForModel(int input, string name) => _perModel[input].TryGetValue(name, out var v) ? v : null;

    public IReadOnlyDictionary<string, double> Globals => _globals;

    public IReadOnlyDictionary<string, double> ModelValues(int input) => _perModel[input];
}

/// <summary>
/// An output tensor's place in the output model: its layer (null for tensors before or after the layers, such as
/// embeddings, the final norm and the head), whether it comes before the layers, and how many layers the output has.
/// </summary>
public sealed record TensorPosition(int? Layer, bool BeforeLayers, int LayerCount)
{
    public static TensorPosition Unknown { get; } = new(null, false, 0);
}

/// <summary>What a method may know about an output tensor's inputs before their data is read.</summary>
public class MergeInputsInfo
{
    public MergeInputsInfo(string tensorName, IReadOnlyList<string> modelNames, int baseIndex, ResolvedParameters parameters, ulong seed,
        IReadOnlyList<int> modelIndices, TensorPosition? position = null)
    {
        TensorName = tensorName;
        ModelNames = modelNames;
        BaseIndex = baseIndex;
        Parameters = parameters;
        Seed = seed;
        ModelIndices = modelIndices;
        Position = position ?? TensorPosition.Unknown;
    }

    /// <summary>Where the output tensor sits in the output model (for depth-dependent methods such as LiNeS).</summary>
    public TensorPosition Position { get; }

    /// <summary>The output tensor's name.</summary>
    public string TensorName { get; }

    /// <summary>The input models, for messages.</summary>
    public IReadOnlyList<string> ModelNames { get; }

    public int Count => ModelNames.Count;

    /// <summary>Index of the base model's tensor among the inputs, or -1.</summary>
    public int BaseIndex { get; }

    public ResolvedParameters Parameters { get; }

    /// <summary>The merge's random seed.</summary>
    public ulong Seed { get; }

    /// <summary>For each input, the model's position in the recipe (stable across runs; keys random streams).</summary>
    public IReadOnlyList<int> ModelIndices { get; }

    /// <summary>A random stream keyed by (seed, output tensor, model) that does not depend on chunking or threads.</summary>
    public RandomStream Random(int input) => RandomStream.For(Seed, TensorName, ModelIndices[input]);

    public double Global(string name) =>
        Parameters.Global(name) ?? throw new InvalidOperationException($"parameter '{name}' was not resolved for {TensorName}");

    public double ForModel(int input, string name) =>
        Parameters.ForModel(input, name) ?? throw new InvalidOperationException($"parameter '{name}' was not resolved for {ModelNames[input]} / {TensorName}");
}

/// <summary>The float32 inputs of one output tensor, or of one chunk of it for elementwise and streamed methods.</summary>
public sealed class MergeInputs : MergeInputsInfo
{
    private readonly float[][] _data;
    private readonly int _dataStart;
    private readonly int _length;

    private readonly IReadOnlyList<MagnitudeCut?>? _modelWideCuts;

    public MergeInputs(MergeInputsInfo info, float[][] data, int length, long elementOffset, long[] shape,
        IReadOnlyList<MagnitudeCut?>? modelWideCuts = null, TensorStatistics? statistics = null, SideValues? side = null)
        : this(info, data, 0, length, elementOffset, shape, modelWideCuts, statistics, side)
    {
    }

    private MergeInputs(MergeInputsInfo info, float[][] data, int dataStart, int length, long elementOffset, long[] shape,
        IReadOnlyList<MagnitudeCut?>? modelWideCuts, TensorStatistics? statistics, SideValues? side)
        : base(info.TensorName, info.ModelNames, info.BaseIndex, info.Parameters, info.Seed, info.ModelIndices, info.Position)
    {
        _data = data;
        _dataStart = dataStart;
        _length = length;
        ElementOffset = elementOffset;
        Shape = shape;
        _modelWideCuts = modelWideCuts;
        Side = side;
        Statistics = statistics;
    }

    /// <summary>
    /// Where the method writes its side outputs for these entries (see <see cref="MergeMethod.PlanSideOutputs"/>), or
    /// null when it planned none for this tensor.
    /// </summary>
    public SideValues? Side { get; }

    /// <summary>
    /// Input <paramref name="i"/>'s part of its model-wide magnitude cut (see <see cref="MergeMethod.ModelWideKeepFraction"/>),
    /// or null when the method did not ask for one.
    /// </summary>
    public MagnitudeCut? ModelWideCut(int i) => _modelWideCuts?[i];

    /// <summary>
    /// The statistics of the whole tensor (<see cref="MergeMethod.Chunking"/>) as this chunk sees them, when the executor
    /// gathered them; null for a whole tensor merged directly, whose method then gathers them itself.
    /// </summary>
    public TensorStatistics? Statistics { get; }

    /// <summary>Input <paramref name="i"/>'s values (the chunk, when the executor splits the tensor).</summary>
    public ReadOnlySpan<float> this[int i] => _data[i].AsSpan(_dataStart, _length);

    /// <summary>Number of elements in each span.</summary>
    public int Length => _length;

    /// <summary>Position of the first element of this chunk in the whole tensor (0 for whole-tensor methods).</summary>
    public long ElementOffset { get; }

    /// <summary>The output tensor's full shape.</summary>
    public long[] Shape { get; }

    /// <summary>Elements [start, start + length) of these inputs, with the given statistics (and no side outputs: only
    /// methods that write none split their inputs).</summary>
    internal MergeInputs Slice(int start, int length, TensorStatistics? statistics) =>
        new(this, _data, _dataStart + start, length, ElementOffset + start, Shape, _modelWideCuts, statistics, side: null);
}
