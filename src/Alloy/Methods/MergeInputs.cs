using Alloy.Methods.TaskVectors;
using Alloy.Recipes;
using Alloy.Tensors;

namespace Alloy.Methods;

/// <summary>
/// A method's parameters resolved for one output tensor: each global once, each per-model parameter for every input (in
/// input order), as the recipe sets them or by default. A per-model parameter may be unset for the base model.
/// </summary>
public sealed class ResolvedParameters
{
    private readonly IReadOnlyDictionary<MethodParameter, SettingValue> _globals;
    private readonly IReadOnlyList<IReadOnlyDictionary<MethodParameter, SettingValue>> _perModel;

    public ResolvedParameters(
        IReadOnlyDictionary<MethodParameter, SettingValue> globals,
        IReadOnlyList<IReadOnlyDictionary<MethodParameter, SettingValue>> perModel
    )
    {
        _globals = globals;
        _perModel = perModel;
    }

    /// <summary>The global's value, or null when it is unset (an optional path).</summary>
    public SettingValue? Global(MethodParameter parameter) => _globals.TryGetValue(parameter, out var v) ? v : null;

    /// <summary>
    /// Input <paramref name="input"/>'s value, or null when it is unset (the base model, an optional path).
    /// </summary>
    public SettingValue? ForModel(int input, MethodParameter parameter) =>
        _perModel[input].TryGetValue(parameter, out var v) ? v : null;

    /// <summary>
    /// The value for input <paramref name="input"/>, or the global when <paramref name="input"/> is null.
    /// </summary>
    public SettingValue? Of(MethodParameter parameter, int? input) =>
        input is { } i ? ForModel(i, parameter) : Global(parameter);
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
    public MergeInputsInfo(
        string tensorName,
        IReadOnlyList<string> modelNames,
        int baseIndex,
        ResolvedParameters parameters,
        ulong seed,
        IReadOnlyList<int> modelIndices,
        TensorPosition? position = null,
        IReadOnlyList<IStatisticSummary>? statistics = null
    )
    {
        TensorName = tensorName;
        ModelNames = modelNames;
        BaseIndex = baseIndex;
        Parameters = parameters;
        Seed = seed;
        ModelIndices = modelIndices;
        Position = position ?? TensorPosition.Unknown;
        StatisticSummaries = statistics;
    }

    /// <summary>
    /// For a data-aware method (<see cref="MethodDeclaration.Statistics"/>): each input's statistics file, in input
    /// order; null when this tensor has no statistics.
    /// </summary>
    public IReadOnlyList<IStatisticSummary>? StatisticSummaries { get; }

    /// <summary>True when the inputs come with statistics (<see cref="MergeInputs.Statistic"/>).</summary>
    public bool HasStatistics => StatisticSummaries is not null;

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

    /// <summary>
    /// A random stream keyed by (seed, output tensor, model) that does not depend on chunking or threads.
    /// </summary>
    public RandomStream Random(int input) => RandomStream.For(Seed, TensorName, ModelIndices[input]);

    // ---- parameters, read through their declarations ------------------------------------------------------

    /// <summary>A global number: <c>inputs[Lambda]</c>.</summary>
    public double this[NumberParameter parameter] => Value(parameter, null);

    /// <summary>Input <paramref name="input"/>'s number: <c>inputs[Weight, i]</c>.</summary>
    public double this[NumberParameter parameter, int input] => Value(parameter, input);

    public int this[IntegerParameter parameter] => Value(parameter, null);

    public int this[IntegerParameter parameter, int input] => Value(parameter, input);

    public bool this[BooleanParameter parameter] => Value(parameter, null);

    public bool this[BooleanParameter parameter, int input] => Value(parameter, input);

    public string this[ChoiceParameter parameter] => Value(parameter, null);

    public string this[ChoiceParameter parameter, int input] => Value(parameter, input);

    /// <summary>A path, or null when an optional one is unset.</summary>
    public string? this[PathParameter parameter] => Parameters.Global(parameter)?.Text;

    public string? this[PathParameter parameter, int input] => Parameters.ForModel(input, parameter)?.Text;

    private T Value<T>(MethodParameter<T> parameter, int? input) =>
        Parameters.Of(parameter, input) is { } value
            ? parameter.Read(value)
            : throw new InvalidOperationException(
                $"parameter '{parameter.Name}' was not resolved for "
                    + (input is { } i ? $"{ModelNames[i]} / {TensorName}" : TensorName)
            );
}

/// <summary>
/// The float32 inputs of one output tensor, or of one chunk of it for elementwise and streamed methods.
/// </summary>
public sealed class MergeInputs : MergeInputsInfo
{
    private readonly float[][] _data;
    private readonly int _dataStart;
    private readonly int _length;

    private readonly IReadOnlyList<MagnitudeCut?>? _modelWideCuts;
    private readonly StatisticValues? _statisticValues;

    public MergeInputs(
        MergeInputsInfo info,
        float[][] data,
        int length,
        long elementOffset,
        long[] shape,
        IReadOnlyList<MagnitudeCut?>? modelWideCuts = null,
        TensorStatistics? statistics = null,
        SideValues? side = null,
        StatisticValues? statisticValues = null
    )
        : this(info, data, 0, length, elementOffset, shape, modelWideCuts, statistics, side, statisticValues) { }

    private MergeInputs(
        MergeInputsInfo info,
        float[][] data,
        int dataStart,
        int length,
        long elementOffset,
        long[] shape,
        IReadOnlyList<MagnitudeCut?>? modelWideCuts,
        TensorStatistics? statistics,
        SideValues? side,
        StatisticValues? statisticValues
    )
        : base(
            info.TensorName,
            info.ModelNames,
            info.BaseIndex,
            info.Parameters,
            info.Seed,
            info.ModelIndices,
            info.Position,
            info.StatisticSummaries
        )
    {
        _data = data;
        _dataStart = dataStart;
        _length = length;
        ElementOffset = elementOffset;
        Shape = shape;
        _modelWideCuts = modelWideCuts;
        Side = side;
        Statistics = statistics;
        _statisticValues = statisticValues;
        if (HasStatistics && statisticValues is null)
            throw new ArgumentException(
                $"the statistics of '{info.TensorName}' were not read",
                nameof(statisticValues)
            );
    }

    /// <summary>
    /// Input <paramref name="i"/>'s statistic (<see cref="MethodDeclaration.Statistics"/>): the same entries as
    /// <c>this[i]</c> for a per-entry statistic, the whole matrix for a Gram matrix.
    /// </summary>
    public ReadOnlySpan<float> Statistic(int i) =>
        _statisticValues is not { } values ? throw new InvalidOperationException($"'{TensorName}' has no statistics")
        : values.Aligned ? values.Data[i].AsSpan(_dataStart, _length)
        : values.Data[i].AsSpan(0, values.Lengths[i]);

    /// <summary>
    /// Where the method writes its side outputs for these entries (see <see cref="MergeMethod.PlanSideOutputs"/>), or
    /// null when it planned none for this tensor.
    /// </summary>
    public SideValues? Side { get; }

    /// <summary>
    /// Input <paramref name="i"/>'s part of its model-wide magnitude cut (see
    /// <see cref="MergeMethod.ModelWideKeepFraction"/>), or null when the method did not ask for one.
    /// </summary>
    public MagnitudeCut? ModelWideCut(int i) => _modelWideCuts?[i];

    /// <summary>
    /// The statistics of the whole tensor (<see cref="MergeMethod.Chunking"/>) as this chunk sees them, when the
    /// executor gathered them; null for a whole tensor merged directly, whose method then gathers them itself.
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
        new(
            this,
            _data,
            _dataStart + start,
            length,
            ElementOffset + start,
            Shape,
            _modelWideCuts,
            statistics,
            side: null,
            _statisticValues
        );
}

/// <summary>
/// The statistic values read for a tensor's inputs: per input, aligned with the inputs' entries (a chunk's, for a
/// per-entry statistic), or whole matrices of the given lengths.
/// </summary>
public sealed record StatisticValues(float[][] Data, bool Aligned, int[] Lengths);
