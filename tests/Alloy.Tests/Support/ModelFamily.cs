using Alloy.Synthetic;
using Alloy.Tensors;

namespace Alloy.Tests.Support;

/// <summary>A generated base model and fine-tunes, made once per test class.</summary>
public sealed class ModelFamily : IDisposable
{
    private readonly TempFolder _folder = new();

    public ModelFamily()
    {
        Spec = new TinyLlamaSpec
        {
            DType = DType.F32,
            Layers = 4,
            VocabSize = 264,
            HiddenSize = 16,
            IntermediateSize = 32,
            Heads = 2,
            KeyValueHeads = 1,
        };
        var folders = TinyLlama.WriteFamily(_folder.Path, Spec, fineTunes: 3);
        Base = folders[0];
        FineTunes = folders.Skip(1).ToList();
    }

    public TinyLlamaSpec Spec { get; }
    public string Base { get; }
    public IReadOnlyList<string> FineTunes { get; }
    public string Root => _folder.Path;

    public void Dispose() => _folder.Dispose();
}
