using Alloy.Runtime.Compute;
using Alloy.Runtime.Layers;
using Alloy.Runtime.Models;

namespace Alloy.Runtime.Inference;

/// <summary>
/// The buffers of forward passes, reused from one pass to the next (they only grow). One state serves one pass at a
/// time; use one per thread to run passes concurrently on the same model. A state that keeps activations holds every
/// block's inputs and intermediate results after the pass — what backward, Fisher and RegMean hooks read.
/// </summary>
public sealed class ForwardState
{
    private readonly BlockActivations[] _blocks;

    internal ForwardState(ModelConfig config, bool keepActivations)
    {
        Config = config;
        KeepsActivations = keepActivations;
        _blocks = new BlockActivations[keepActivations ? config.Layers : 1];
        for (int i = 0; i < _blocks.Length; i++)
            _blocks[i] = new BlockActivations(config);
        FinalHidden = keepActivations ? new Matrix(config.HiddenSize) : _blocks[0].Input;
        FinalInverseRms = new Matrix(1);
        FinalNormed = new Matrix(config.HiddenSize);
        LogitValues = new Matrix(config.VocabSize);
    }

    internal ModelConfig Config { get; }

    public bool KeepsActivations { get; }

    /// <summary>Per block when activations are kept; otherwise one set shared by all blocks.</summary>
    public IReadOnlyList<BlockActivations> Blocks => _blocks;

    /// <summary>The last block's output, every row (in an inference pass, the shared residual stream).</summary>
    public Matrix FinalHidden { get; }

    /// <summary>1/rms of each selected row of <see cref="FinalHidden"/> (kept passes only).</summary>
    public Matrix FinalInverseRms { get; }

    /// <summary>The final norm of the selected rows: the input of the LM head.</summary>
    public Matrix FinalNormed { get; }

    /// <summary>The selected rows' logits.</summary>
    internal Matrix LogitValues { get; }

    /// <summary>The last pass's batch geometry.</summary>
    public BatchLayout? Layout { get; internal set; }

    /// <summary>The rows of the last pass that got logits (rows of <see cref="FinalNormed"/> in this order).</summary>
    public int[] SelectedRows { get; internal set; } = [];

    internal BlockActivations Block(int layer) => _blocks[KeepsActivations ? layer : 0];

    /// <summary>
    /// The input of block <paramref name="layer"/>; <c>layer == Layers</c> gives the final hidden state.
    /// </summary>
    internal Matrix BlockInput(int layer) =>
        !KeepsActivations ? _blocks[0].Input
        : layer < _blocks.Length ? _blocks[layer].Input
        : FinalHidden;
}
