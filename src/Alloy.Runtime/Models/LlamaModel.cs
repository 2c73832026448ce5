using Alloy.Checkpoints;
using Alloy.Runtime.Compute;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Layers;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Models;

/// <summary>
/// A Llama-family causal language model (Llama, Mistral, Qwen2) in float32: embedding → decoder blocks → final norm →
/// LM head (the embedding matrix when tied). Layers reference the <see cref="Parameters"/> by object, so every weight
/// is reachable by its Hugging Face name. The model is immutable apart from its weights' values; forward passes on
/// separate <see cref="ForwardState"/>s may run concurrently.
/// </summary>
public sealed class LlamaModel
{
    private readonly object _defaultGate = new();
    private ForwardState? _defaultState;

    public LlamaModel(ModelConfig config, ParameterSet parameters, RuntimeOptions? options = null)
    {
        Config = config;
        Parameters = parameters;
        Compute = new ComputeContext(options ?? RuntimeOptions.Default);
        var shapes = config.ParameterShapes();
        foreach (var (name, shape) in shapes)
        {
            var p = parameters.Find(name)
                ?? throw new ArgumentException($"the parameter set has no '{name}'", nameof(parameters));
            if (!p.Shape.SequenceEqual(shape))
                throw new ArgumentException(
                    $"'{name}' is [{string.Join(", ", p.Shape)}], expected [{string.Join(", ", shape)}]",
                    nameof(parameters)
                );
        }
        if (parameters.Count != shapes.Count)
            throw new ArgumentException(
                "the parameter set has parameters the configuration does not call for",
                nameof(parameters)
            );

        Routing = config.Moe is null ? null : new RoutingCounts(config.Layers, config.Moe.Experts);
        Embedding = new Embedding(parameters["model.embed_tokens.weight"]);
        Rope = new RotaryEmbedding(config.Rope, config.HeadDim);
        var blocks = new DecoderBlock[config.Layers];
        for (int layer = 0; layer < config.Layers; layer++)
        {
            string p = $"model.layers.{layer}.";
            Linear Linear(string name) => new(parameters[p + name + ".weight"], parameters.Find(p + name + ".bias"));
            var attention = new SelfAttention(
                config,
                layer,
                Linear("self_attn.q_proj"),
                Linear("self_attn.k_proj"),
                Linear("self_attn.v_proj"),
                Linear("self_attn.o_proj"),
                Rope
            );
            IFeedForward mlp = config.Moe is null
                ? new SwiGluMlp(Linear("mlp.gate_proj"), Linear("mlp.up_proj"), Linear("mlp.down_proj"))
                : CreateMoe(config, config.Moe, parameters, layer, Routing!);
            blocks[layer] = new DecoderBlock(
                new RmsNorm(parameters[p + "input_layernorm.weight"], config.RmsNormEpsilon),
                attention,
                new RmsNorm(parameters[p + "post_attention_layernorm.weight"], config.RmsNormEpsilon),
                mlp
            );
        }
        Blocks = blocks;
        FinalNorm = new RmsNorm(parameters["model.norm.weight"], config.RmsNormEpsilon);
        Head = new Linear(config.TieWordEmbeddings ? Embedding.Weight : parameters["lm_head.weight"], null);
    }

    private static SparseMoe CreateMoe(
        ModelConfig config,
        MoeConfig moe,
        ParameterSet parameters,
        int layer,
        RoutingCounts counts
    )
    {
        string p = $"model.layers.{layer}.";
        int hidden = config.HiddenSize;
        var experts = new SwiGluMlp[moe.Experts];
        for (int e = 0; e < moe.Experts; e++)
        {
            var (gate, up, down) = moe.ExpertWeights(config.Family, p, e, hidden);
            experts[e] = new SwiGluMlp(
                new Linear(parameters[gate.Name], null, gate.Row, moe.IntermediateSize),
                new Linear(parameters[up.Name], null, up.Row, moe.IntermediateSize),
                new Linear(parameters[down.Name], null, down.Row, hidden)
            );
        }
        Linear Named(string name) => new(parameters[p + name], null);
        bool shared = moe.SharedIntermediateSize is not null;
        return new SparseMoe(
            moe,
            new Linear(parameters[moe.RouterName(config.Family, p)], null),
            experts,
            shared
                ? new SwiGluMlp(
                    Named("mlp.shared_expert.gate_proj.weight"),
                    Named("mlp.shared_expert.up_proj.weight"),
                    Named("mlp.shared_expert.down_proj.weight")
                )
                : null,
            shared ? Named("mlp.shared_expert_gate.weight") : null,
            counts,
            layer
        );
    }

    /// <summary>
    /// Loads a Hugging Face model folder (config.json and safetensors or .bin weights, sharded or not, any float dtype)
    /// through the same checkpoint reader as merging; weights are converted once to float32 and the files closed.
    /// </summary>
    public static LlamaModel Load(string path, RuntimeOptions? options = null)
    {
        options ??= RuntimeOptions.Default;
        using var checkpoint = Checkpoint.Open(path);
        if (checkpoint.Config is null)
            throw new AlloyException(
                $"{checkpoint.Path}: no {Checkpoint.ConfigFileName} beside the weights; the runtime needs it to know "
                    + $"the architecture"
            );
        var config = ModelConfig.FromJson(
            checkpoint.Config,
            System.IO.Path.Combine(checkpoint.Folder ?? "", Checkpoint.ConfigFileName)
        );
        // A mixture's experts are fused or per expert, as the checkpoint has them (and as a save writes them back).
        if (config.Moe is { } moe)
        {
            var perExpert = moe with { Layout = ExpertLayout.PerExpert };
            string first = perExpert.ExpertWeights(config.Family, "model.layers.0.", 0, config.HiddenSize).Gate.Name;
            if (checkpoint.Find(first) is not null)
                config = config with { Moe = perExpert };
        }
        var parameters = ParameterSet.Read(checkpoint, config, new ComputeContext(options));
        return new LlamaModel(config, parameters, options);
    }

    public ModelConfig Config { get; }

    /// <summary>
    /// How often each expert has been chosen by the forward passes so far (mixtures of experts; null for a dense
    /// model). Take a <see cref="RoutingCounts.Snapshot"/> before and after a task for the task's routing.
    /// </summary>
    public RoutingCounts? Routing { get; }

    public ParameterSet Parameters { get; }

    public ComputeContext Compute { get; }

    public Embedding Embedding { get; }

    public RotaryEmbedding Rope { get; }

    public IReadOnlyList<DecoderBlock> Blocks { get; }

    public RmsNorm FinalNorm { get; }

    /// <summary>The LM head; its weight is the embedding's when the embeddings are tied.</summary>
    public Linear Head { get; }

    /// <summary>
    /// Buffers for forward passes; <paramref name="keepActivations"/> keeps every block's activations for backward.
    /// </summary>
    public ForwardState CreateState(bool keepActivations = false) => new(Config, keepActivations);

    /// <summary>
    /// A KV cache for <paramref name="sequences"/> sequences, with room for <paramref name="capacity"/> tokens each to
    /// start with.
    /// </summary>
    public KvCache CreateCache(int sequences, int capacity = 256) => new(Config, sequences, capacity);

    /// <summary>
    /// A forward pass on the model's own buffers (one caller at a time); the logits are a copy the caller keeps.
    /// </summary>
    public Logits Forward(TokenBatch batch, LogitSelection? selection = null, KvCache? cache = null)
    {
        lock (_defaultGate)
        {
            _defaultState ??= CreateState();
            return Forward(batch, _defaultState, selection, cache).Copy();
        }
    }

    /// <summary>
    /// The causal forward pass of <paramref name="batch"/>: logits for the <paramref name="selection"/> (default: all
    /// tokens), computed in <paramref name="state"/>'s buffers (valid until its next pass). With a
    /// <paramref name="cache"/>, sequence s continues cache slot s: its tokens take the next positions, attend to
    /// everything the slot holds, and are appended to it.
    /// </summary>
    public Logits Forward(TokenBatch batch, ForwardState state, LogitSelection? selection = null, KvCache? cache = null)
    {
        if (state.Config != Config)
            throw new ArgumentException("the state was made by a model of another configuration", nameof(state));
        CheckTokens(batch);
        if (cache is not null)
        {
            if (!cache.Fits(Config))
                throw new ArgumentException("the KV cache was made for a model of another shape", nameof(cache));
            if (cache.Sequences != batch.Count)
                throw new AlloyException(
                    $"the batch has {batch.Count} sequences but the KV cache holds {cache.Sequences}"
                );
        }

        var layout = BatchLayout.For(batch, cache);
        cache?.Reserve(layout);
        state.Layout = layout;
        Embedding.Forward(batch.Tokens, state.BlockInput(0));
        for (int layer = 0; layer < Blocks.Count; layer++)
        {
            Blocks[layer]
                .Forward(
                    Compute,
                    state.BlockInput(layer),
                    state.BlockInput(layer + 1),
                    state.Block(layer),
                    layout,
                    cache,
                    state.KeepsActivations
                );
        }

        var rows = (selection ?? LogitSelection.All).Rows(layout);
        state.SelectedRows = rows;
        FinalNorm.Forward(
            Compute,
            state.FinalHidden,
            state.FinalNormed,
            state.KeepsActivations ? state.FinalInverseRms : null,
            rows
        );
        Head.Forward(Compute, state.FinalNormed, state.LogitValues);
        cache?.Advance(layout);
        return new Logits(state.LogitValues, layout, rows);
    }

    /// <summary>Gradient buffers for <see cref="Backward"/>, reused from pass to pass.</summary>
    public BackwardState CreateBackwardState() => new(Config);

    /// <summary>
    /// Backpropagates through the last forward pass of <paramref name="state"/> (which must keep activations and have
    /// run without a KV cache): its logits buffer must hold ∂loss/∂logits of the selected rows (the caller's loss puts
    /// them there, see <see cref="CrossEntropy"/>). Every parameter's gradient is added to
    /// <paramref name="gradients"/>.
    /// </summary>
    public void Backward(TokenBatch batch, ForwardState state, BackwardState backward, GradientSet gradients)
    {
        if (!state.KeepsActivations)
            throw new ArgumentException(
                "backward needs a forward state made with keepActivations: true",
                nameof(state)
            );
        if (state.Config != Config || gradients.Parameters != Parameters)
            throw new ArgumentException("the state or gradients belong to another model");
        var layout = state.Layout ?? throw new InvalidOperationException("backward needs a forward pass first");
        if (layout.Rows != batch.TotalTokens)
            throw new ArgumentException("the batch is not the one of the last forward pass", nameof(batch));
        var b = backward;
        Head.Backward(Compute, state.FinalNormed, state.LogitValues, b.FinalNormed, false, gradients);
        b.Residual.Resize(layout.Rows).Span.Clear();
        FinalNorm.Backward(
            Compute,
            state.FinalHidden,
            state.FinalInverseRms,
            b.FinalNormed,
            b.Residual,
            true,
            b.NormScratch,
            gradients,
            state.SelectedRows
        );
        for (int layer = Blocks.Count - 1; layer >= 0; layer--)
            Blocks[layer].Backward(Compute, state.Block(layer), layout, b, gradients);
        Embedding.Backward(Compute, batch.TokenArray, b.Residual, gradients);
    }

    private void CheckTokens(TokenBatch batch)
    {
        for (int s = 0; s < batch.Count; s++)
        {
            var tokens = batch.Sequence(s);
            for (int i = 0; i < tokens.Length; i++)
                if ((uint)tokens[i] >= (uint)Config.VocabSize)
                    throw new AlloyException(
                        $"token id {tokens[i]} (sequence {s}, token {i}) is outside the model's vocabulary of "
                            + $"{Config.VocabSize}"
                    );
        }
    }
}
