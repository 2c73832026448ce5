using Alloy.Checkpoints;
using Alloy.Tensors;

namespace Alloy.Runtime.Models;

/// <summary>
/// Receives a merge straight into a model's parameters: each merged tensor arrives as the bytes a model folder would
/// store (rounded once to the merge's output dtype, float32 or bfloat16 …) and is widened to float32 in place, so a
/// merged model runs without touching disk and computes exactly what its written folder would. One sink per merge;
/// <see cref="Complete"/> checks that every parameter was filled.
/// </summary>
public sealed class ModelSink(LlamaModel model) : ITensorSink
{
    private readonly Dictionary<string, long> _filled = new(StringComparer.Ordinal);

    public LlamaModel Model { get; } = model;

    public void Append(TensorInfo tensor, ReadOnlySpan<byte> bytes)
    {
        if (Model.Parameters.Find(tensor.Name) is not { } parameter)
        {
            if (ParameterSet.Ignorable(tensor.Name, Model.Config))
                return;
            throw new AlloyException(
                $"the merge writes tensor '{tensor.Name}', which has no place in a "
                    + $"{Model.Config.Family.ToString().ToLowerInvariant()} model as the merged config.json describes "
                    + $"it"
            );
        }
        if (!tensor.Shape.SequenceEqual(parameter.Shape.Select(d => (long)d)))
            throw new AlloyException(
                $"the merge writes '{tensor.Name}' as [{string.Join(", ", tensor.Shape)}], but the model needs "
                    + $"[{string.Join(", ", parameter.Shape)}]"
            );
        if (!tensor.DType.IsFloat())
            throw new AlloyException(
                $"the merge writes '{tensor.Name}' as {tensor.DType.SafetensorsName()}; a model's weights must be "
                    + $"floating point"
            );
        int size = tensor.DType.Size();
        long start = _filled.GetValueOrDefault(tensor.Name);
        int count = bytes.Length / size;
        TensorConvert.ToFloat32(bytes, tensor.DType, parameter.Data.AsSpan((int)start, count));
        _filled[tensor.Name] = start + count;
    }

    /// <summary>Checks that every parameter of the model was filled whole.</summary>
    public void Complete()
    {
        foreach (var parameter in Model.Parameters)
        {
            if (_filled.GetValueOrDefault(parameter.Name) != parameter.Data.Length)
                throw new AlloyException(
                    $"the merge did not write the model's parameter '{parameter.Name}'; the merged model is incomplete"
                );
        }
    }
}

/// <summary>Merges held in memory as runnable models (a merge → evaluate loop costs no disk I/O).</summary>
public static class MergedModel
{
    /// <summary>
    /// A new model in memory: the session's merge (its plan as it stands), with the configuration the merged folder's
    /// config.json would have.
    /// </summary>
    public static LlamaModel Create(
        MergeSession session,
        RuntimeOptions? options = null,
        Action<Execution.MergeProgress>? progress = null,
        CancellationToken cancellation = default
    )
    {
        var json = session.OutputConfig
            ?? throw new AlloyException(
                $"the merged model has no config.json (its donor '{session.Plan.Donor.Name}' has none), so it cannot "
                    + $"be run"
            );
        var config = ModelConfig.FromJson(json, $"the merged config.json of {session.Recipe.SourceName}");
        var model = new LlamaModel(config, ParameterSet.Zeros(config), options);
        Refill(session, model, progress, cancellation);
        return model;
    }

    /// <summary>
    /// The tokenizer the merged folder would have (its files written to a temporary folder, read, and deleted).
    /// </summary>
    public static Tokenizers.Encoding.TextTokenizer Tokenizer(MergeSession session)
    {
        var folder = Directory.CreateTempSubdirectory("alloy-tokenizer-");
        try
        {
            session.WriteRunFiles(folder.FullName);
            return Tokenizers.Encoding.TextTokenizer.Load(folder.FullName);
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    /// <summary>
    /// Merges the session's plan again (after <see cref="MergeSession.Reparameterize"/>) into
    /// <paramref name="model"/>'s parameters.
    /// </summary>
    public static void Refill(
        MergeSession session,
        LlamaModel model,
        Action<Execution.MergeProgress>? progress = null,
        CancellationToken cancellation = default
    )
    {
        var sink = new ModelSink(model);
        session.Run(sink, progress, cancellation);
        sink.Complete();
    }
}
