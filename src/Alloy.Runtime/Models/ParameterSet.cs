using System.Collections;
using Alloy.Checkpoints;
using Alloy.Runtime.Compute;
using Alloy.Tensors;

namespace Alloy.Runtime.Models;

/// <summary>
/// A model's parameters by Hugging Face name, in transformers' state_dict order. A tied model has one
/// model.embed_tokens.weight that the head also uses (and no lm_head.weight), as Hugging Face saves it.
/// </summary>
public sealed class ParameterSet : IReadOnlyList<Parameter>
{
    private readonly List<Parameter> _list;
    private readonly Dictionary<string, Parameter> _byName;

    public ParameterSet(IEnumerable<Parameter> parameters)
    {
        _list = [.. parameters];
        _byName = new Dictionary<string, Parameter>(_list.Count, StringComparer.Ordinal);
        foreach (var p in _list)
            if (!_byName.TryAdd(p.Name, p))
                throw new ArgumentException($"parameter '{p.Name}' appears twice");
    }

    public int Count => _list.Count;

    public Parameter this[int index] => _list[index];

    public Parameter this[string name] =>
        _byName.TryGetValue(name, out var p)
            ? p
            : throw new KeyNotFoundException($"the model has no parameter '{name}'");

    public Parameter? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>The number of float32 values over all parameters.</summary>
    public long ElementCount => _list.Sum(p => (long)p.Data.Length);

    public IEnumerator<Parameter> GetEnumerator() => _list.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>
    /// Zero-filled parameters of the shapes <paramref name="config"/> gives (for initialisation by a trainer).
    /// </summary>
    public static ParameterSet Zeros(ModelConfig config) =>
        new(config.ParameterShapes().Select(s => new Parameter(s.Name, s.Shape)));

    /// <summary>
    /// Reads every parameter <paramref name="config"/> calls for from <paramref name="checkpoint"/>, converted once to
    /// float32 (in parallel, tensor by tensor). A missing tensor, a wrong shape, a non-float dtype, or a tensor the
    /// architecture has no place for is an <see cref="AlloyException"/> naming it.
    /// </summary>
    public static ParameterSet Read(Checkpoint checkpoint, ModelConfig config, ComputeContext context)
    {
        var shapes = config.ParameterShapes();
        var expected = shapes.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
        var unused = checkpoint
            .Tensors.Where(t => !expected.Contains(t.Name) && !Ignorable(t.Name, config))
            .Select(t => t.Name)
            .ToList();
        if (unused.Count > 0)
        {
            string more = unused.Count > 1 ? $" (and {unused.Count - 1} more)" : "";
            throw new AlloyException(
                $"{checkpoint.Path}: tensor '{unused[0]}'{more} has no place in a "
                    + $"{config.Family.ToString().ToLowerInvariant()} model as config.json describes it; check "
                    + $"num_hidden_layers, attention_bias, mlp_bias and tie_word_embeddings"
            );
        }

        var stored = new StoredTensor[shapes.Count];
        for (int i = 0; i < shapes.Count; i++)
        {
            var (name, shape) = shapes[i];
            var tensor = checkpoint.Find(name)
                ?? throw new AlloyException(
                    name == "lm_head.weight"
                        ? $"{checkpoint.Path}: tensor 'lm_head.weight' is missing, and config.json says "
                            + $"tie_word_embeddings is false (set it to true if the head shares the embedding)"
                        : $"{checkpoint.Path}: tensor '{name}' is missing"
                );
            var actual = tensor.Info.Shape;
            if (!actual.SequenceEqual(shape.Select(d => (long)d)))
                throw new AlloyException(
                    $"{checkpoint.Path}: tensor '{name}' has shape [{string.Join(", ", actual)}], but config.json "
                        + $"implies [{string.Join(", ", shape)}]"
                );
            if (!tensor.Info.DType.IsFloat())
                throw new AlloyException(
                    $"{checkpoint.Path}: tensor '{name}' is stored as {tensor.Info.DType.SafetensorsName()}; a model's "
                        + $"weights must be floating point"
                );
            stored[i] = tensor;
        }

        var parameters = new Parameter[shapes.Count];
        context.For(shapes.Count, i =>
        {
            var parameter = new Parameter(shapes[i].Name, shapes[i].Shape);
            stored[i].ReadFloat32(0, parameter.Data);
            parameters[i] = parameter;
        });
        return new ParameterSet(parameters);
    }

    /// <summary>
    /// Tensors transformers ignores too: old checkpoints' rotary buffers, and the stored head of a tied model.
    /// </summary>
    internal static bool Ignorable(string name, ModelConfig config) =>
        name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)
        || (config.TieWordEmbeddings && name == "lm_head.weight");
}
