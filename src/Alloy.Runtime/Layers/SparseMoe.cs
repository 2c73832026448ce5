using System.Numerics.Tensors;
using Alloy.Runtime.Compute;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;

namespace Alloy.Runtime.Layers;

/// <summary>
/// A sparse mixture of SwiGLU experts (Mixtral's and Qwen2-MoE's SparseMoeBlock). Per token: router logits z = x·Gᵀ,
/// p = softmax(z) over all experts (in double), the top-k experts by z (ties: the lower index), weights p_j of the
/// chosen experts (divided by their sum when <see cref="MoeConfig.NormalizeTopK"/>); the output is Σ w_j·expert_j(x),
/// summed in expert order, plus Qwen2-MoE's sigmoid(x·g_sharedᵀ)·shared_expert(x). Each expert runs once on the rows
/// routed to it, so the work is the top-k's, not all experts'.
/// </summary>
public sealed class SparseMoe : IFeedForward
{
    private readonly RoutingCounts? _counts;
    private readonly int _layer;

    public SparseMoe(
        MoeConfig config,
        Linear router,
        IReadOnlyList<SwiGluMlp> experts,
        SwiGluMlp? shared,
        Linear? sharedGate,
        RoutingCounts? counts = null,
        int layer = 0
    )
    {
        if (router.OutFeatures != config.Experts || experts.Count != config.Experts)
            throw new ArgumentException($"{config.Experts} experts and a router over {router.OutFeatures}");
        if ((shared is null) != (sharedGate is null) || (shared is null) != (config.SharedIntermediateSize is null))
            throw new ArgumentException("a shared expert needs its gate, and the configuration must call for it");
        Config = config;
        Router = router;
        Experts = experts;
        Shared = shared;
        SharedGate = sharedGate;
        _counts = counts;
        _layer = layer;
    }

    public MoeConfig Config { get; }

    /// <summary>The router ("gate"): logits [experts] per token.</summary>
    public Linear Router { get; }

    public IReadOnlyList<SwiGluMlp> Experts { get; }

    /// <summary>Qwen2-MoE's shared expert, which every token goes through.</summary>
    public SwiGluMlp? Shared { get; }

    /// <summary>Qwen2-MoE's shared expert gate [1, H]: the shared expert's output is scaled by sigmoid(x·gᵀ).</summary>
    public Linear? SharedGate { get; }

    public void Forward(ComputeContext context, Matrix normed, BlockActivations a, Matrix residual)
    {
        var m = a.Moe ?? throw new InvalidOperationException("the activations were made for a dense model");
        int rows = normed.Rows,
            k = Config.TopK;
        Router.Forward(context, normed, m.RouterLogits);
        m.Probabilities.Resize(rows);
        m.Route(rows, k);
        context.ForBlocks(rows, 16, (start, end) =>
        {
            for (int r = start; r < end; r++)
                Route(
                    m.RouterLogits.Row(r),
                    m.Probabilities.Row(r),
                    m.Chosen.AsSpan(r * k, k),
                    m.Weights.AsSpan(r * k, k)
                );
        });
        m.Dispatch(rows, k);

        for (int e = 0; e < Experts.Count; e++)
        {
            int count = m.Counts[e];
            _counts?.Add(_layer, e, count);
            if (count == 0)
                continue;
            var (expertRows, input) = (m.Rows[e], m.Inputs[e].Resize(count));
            context.ForBlocks(count, 64, (start, end) =>
            {
                for (int i = start; i < end; i++)
                    normed.Row(expertRows[i]).CopyTo(input.Row(i));
            });
            Experts[e].Forward(context, input, m.Activations[e], m.Outputs[e], accumulate: false);
        }
        // Each token adds its experts' weighted outputs in expert order: the same sum at any thread count.
        context.ForBlocks(rows, 16, (start, end) =>
        {
            for (int r = start; r < end; r++)
            {
                var output = residual.Row(r);
                for (int j = r * k; j < (r + 1) * k; j++)
                    TensorPrimitives.MultiplyAdd(
                        m.Outputs[m.Chosen[j]].Row(m.Positions[j]),
                        m.Weights[j],
                        output,
                        output
                    );
            }
        });

        if (Shared is null || SharedGate is null)
            return;
        Shared.Forward(context, normed, m.Shared, m.SharedOutput, accumulate: false);
        SharedGate.Forward(context, normed, m.SharedGateLogits);
        context.ForBlocks(rows, 16, (start, end) =>
        {
            for (int r = start; r < end; r++)
            {
                var output = residual.Row(r);
                float gate = Sigmoid(m.SharedGateLogits.Data[r]);
                TensorPrimitives.MultiplyAdd(m.SharedOutput.Row(r), gate, output, output);
            }
        });
    }

    /// <summary>
    /// One token's routing: p = softmax(logits), the top-k experts (ascending index in <paramref name="chosen"/>) and
    /// their weights.
    /// </summary>
    private void Route(Span<float> logits, Span<float> probabilities, Span<int> chosen, Span<float> weights)
    {
        float max = TensorPrimitives.Max(logits);
        double total = 0;
        foreach (float z in logits)
            total += Math.Exp(z - max);
        for (int i = 0; i < logits.Length; i++)
            probabilities[i] = (float)(Math.Exp(logits[i] - max) / total);
        // The largest logits; strict > keeps the lower index among equal ones (torch.topk leaves ties unspecified).
        for (int j = 0; j < chosen.Length; j++)
        {
            int best = -1;
            for (int i = 0; i < logits.Length; i++)
                if (chosen[..j].IndexOf(i) < 0 && (best < 0 || logits[i] > logits[best]))
                    best = i;
            chosen[j] = best;
        }
        chosen.Sort();
        double sum = 0;
        foreach (int e in chosen)
            sum += Math.Exp(logits[e] - max) / total;
        for (int j = 0; j < chosen.Length; j++)
        {
            double p = Math.Exp(logits[chosen[j]] - max) / total;
            weights[j] = (float)(Config.NormalizeTopK ? p / sum : p);
        }
    }

    public void Backward(
        ComputeContext context,
        Matrix normed,
        BlockActivations a,
        Matrix outputGradient,
        BackwardState b,
        GradientSet gradients
    )
    {
        var m = a.Moe ?? throw new InvalidOperationException("the activations were made for a dense model");
        var g = b.Moe ?? throw new InvalidOperationException("the backward state was made for a dense model");
        int rows = normed.Rows,
            k = Config.TopK;
        b.Normed.Resize(rows).Span.Clear();
        g.Resize(rows, k);

        for (int e = 0; e < Experts.Count; e++)
        {
            int count = m.Counts[e];
            if (count == 0)
                continue;
            var (expertRows, slots, output) = (m.Rows[e], m.Slots[e], m.Outputs[e]);
            var dy = g.ExpertOutput.Resize(count);
            context.ForBlocks(count, 16, (start, end) =>
            {
                for (int i = start; i < end; i++)
                {
                    var upstream = outputGradient.Row(expertRows[i]);
                    // ∂loss/∂w of this (token, expert) pair, and the expert's output gradient w·dy.
                    g.WeightGradients[slots[i]] = TensorPrimitives.Dot(upstream, output.Row(i));
                    TensorPrimitives.Multiply(upstream, m.Weights[slots[i]], dy.Row(i));
                }
            });
            Experts[e].Backward(context, m.Inputs[e], m.Activations[e], dy, g.Expert, g.ExpertInput, false, gradients);
            context.ForBlocks(count, 64, (start, end) =>
            {
                for (int i = start; i < end; i++)
                {
                    var target = b.Normed.Row(expertRows[i]);
                    TensorPrimitives.Add(target, g.ExpertInput.Row(i), target);
                }
            });
        }

        g.RouterLogits.Resize(rows);
        context.ForBlocks(rows, 16, (start, end) =>
        {
            for (int r = start; r < end; r++)
                RouteBackward(
                    m.Probabilities.Row(r),
                    m.Chosen.AsSpan(r * k, k),
                    m.Weights.AsSpan(r * k, k),
                    g.WeightGradients.AsSpan(r * k, k),
                    g.RouterLogits.Row(r)
                );
        });
        Router.Backward(context, normed, g.RouterLogits, b.Normed, true, gradients);

        if (Shared is null || SharedGate is null)
            return;
        var sharedGradient = g.ExpertOutput.Resize(rows);
        g.SharedGateLogits.Resize(rows);
        context.ForBlocks(rows, 16, (start, end) =>
        {
            for (int r = start; r < end; r++)
            {
                var upstream = outputGradient.Row(r);
                float gate = Sigmoid(m.SharedGateLogits.Data[r]);
                g.SharedGateLogits.Data[r] = TensorPrimitives.Dot(upstream, m.SharedOutput.Row(r)) * gate * (1 - gate);
                TensorPrimitives.Multiply(upstream, gate, sharedGradient.Row(r));
            }
        });
        Shared.Backward(context, normed, m.Shared, sharedGradient, g.Shared, b.Normed, true, gradients);
        SharedGate.Backward(context, normed, g.SharedGateLogits, b.Normed, true, gradients);
    }

    /// <summary>
    /// ∂loss/∂logits of one token from ∂loss/∂w of its chosen experts (the choice itself is piecewise constant). With
    /// renormalisation, w is the softmax of the chosen logits alone: dz_j = w_j·(g_j − Σ w·g) on the chosen experts, 0
    /// elsewhere. Without, w_j = p_j of the full softmax: dz_i = p_i·(g_i·[i chosen] − Σ_chosen p·g) for every i.
    /// </summary>
    private void RouteBackward(
        ReadOnlySpan<float> probabilities,
        ReadOnlySpan<int> chosen,
        ReadOnlySpan<float> weights,
        ReadOnlySpan<float> weightGradients,
        Span<float> logitGradients
    )
    {
        double mean = 0;
        for (int j = 0; j < chosen.Length; j++)
            mean += (double)weights[j] * weightGradients[j];
        if (Config.NormalizeTopK)
        {
            logitGradients.Clear();
            for (int j = 0; j < chosen.Length; j++)
                logitGradients[chosen[j]] = (float)(weights[j] * (weightGradients[j] - mean));
            return;
        }
        for (int i = 0; i < probabilities.Length; i++)
            logitGradients[i] = (float)(-probabilities[i] * mean);
        for (int j = 0; j < chosen.Length; j++)
            logitGradients[chosen[j]] = (float)(probabilities[chosen[j]] * (weightGradients[j] - mean));
    }

    private static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));
}

/// <summary>
/// One block's mixture-of-experts activations: the routing of every token and, per expert, the rows routed to it with
/// its input, SwiGLU intermediates and output (what backward reads). Buffers only grow.
/// </summary>
public sealed class MoeActivations
{
    internal MoeActivations(ModelConfig config)
    {
        var moe = config.Moe!;
        int hidden = config.HiddenSize;
        RouterLogits = new Matrix(moe.Experts);
        Probabilities = new Matrix(moe.Experts);
        Counts = new int[moe.Experts];
        Rows = [.. Enumerable.Range(0, moe.Experts).Select(_ => Array.Empty<int>())];
        Slots = [.. Enumerable.Range(0, moe.Experts).Select(_ => Array.Empty<int>())];
        Inputs = [.. Enumerable.Range(0, moe.Experts).Select(_ => new Matrix(hidden))];
        Activations = [.. Enumerable.Range(0, moe.Experts).Select(_ => new SwiGluActivations(moe.IntermediateSize))];
        Outputs = [.. Enumerable.Range(0, moe.Experts).Select(_ => new Matrix(hidden))];
        Shared = new SwiGluActivations(moe.SharedIntermediateSize ?? 0);
        SharedOutput = new Matrix(hidden);
        SharedGateLogits = new Matrix(1);
    }

    /// <summary>x·Gᵀ, rows × experts.</summary>
    public Matrix RouterLogits { get; }

    /// <summary>softmax of the router logits over all experts.</summary>
    public Matrix Probabilities { get; }

    /// <summary>Token r's chosen experts at [r·k, (r + 1)·k), in ascending order.</summary>
    public int[] Chosen { get; private set; } = [];

    /// <summary>The routing weight of each chosen expert.</summary>
    public float[] Weights { get; private set; } = [];

    /// <summary>Where each choice's row is among its expert's rows (the row of <see cref="Outputs"/>).</summary>
    public int[] Positions { get; private set; } = [];

    /// <summary>The number of tokens routed to each expert in the last pass.</summary>
    public int[] Counts { get; }

    /// <summary>Each expert's tokens (rows of the block, ascending); the first Counts[e] entries are valid.</summary>
    public int[][] Rows { get; }

    /// <summary>Each expert's choices: the index into <see cref="Chosen"/> of each of its rows.</summary>
    public int[][] Slots { get; }

    public Matrix[] Inputs { get; }
    public SwiGluActivations[] Activations { get; }

    /// <summary>Each expert's output on its rows, before the routing weight.</summary>
    public Matrix[] Outputs { get; }

    public SwiGluActivations Shared { get; }
    public Matrix SharedOutput { get; }
    public Matrix SharedGateLogits { get; }

    internal void Route(int rows, int k)
    {
        if (Chosen.Length < rows * k)
            (Chosen, Weights, Positions) = (new int[rows * k], new float[rows * k], new int[rows * k]);
    }

    /// <summary>Lists each expert's rows from the choices (ascending rows, so the same at any thread count).</summary>
    internal void Dispatch(int rows, int k)
    {
        Array.Clear(Counts);
        for (int j = 0; j < rows * k; j++)
            Counts[Chosen[j]]++;
        for (int e = 0; e < Counts.Length; e++)
            if (Rows[e].Length < Counts[e])
                (Rows[e], Slots[e]) = (new int[Counts[e]], new int[Counts[e]]);
        Array.Clear(Counts);
        for (int j = 0; j < rows * k; j++)
        {
            int e = Chosen[j],
                i = Counts[e]++;
            (Rows[e][i], Slots[e][i], Positions[j]) = (j / k, j, i);
        }
    }
}

/// <summary>A mixture of experts' gradient buffers, shared by every block in turn (as all of BackwardState).</summary>
public sealed class MoeGradients
{
    internal MoeGradients(ModelConfig config)
    {
        var moe = config.Moe!;
        Expert = new SwiGluActivations(moe.IntermediateSize);
        Shared = new SwiGluActivations(moe.SharedIntermediateSize ?? 0);
        ExpertOutput = new Matrix(config.HiddenSize);
        ExpertInput = new Matrix(config.HiddenSize);
        RouterLogits = new Matrix(moe.Experts);
        SharedGateLogits = new Matrix(1);
    }

    /// <summary>∂loss/∂ an expert's intermediates.</summary>
    public SwiGluActivations Expert { get; }

    public SwiGluActivations Shared { get; }

    /// <summary>∂loss/∂ an expert's (or the shared expert's) output, on its rows.</summary>
    public Matrix ExpertOutput { get; }

    /// <summary>∂loss/∂ an expert's input, on its rows (scattered into the block's ∂loss/∂normed).</summary>
    public Matrix ExpertInput { get; }

    public Matrix RouterLogits { get; }
    public Matrix SharedGateLogits { get; }

    /// <summary>∂loss/∂ each routing weight, laid out as <see cref="MoeActivations.Weights"/>.</summary>
    public float[] WeightGradients { get; private set; } = [];

    internal void Resize(int rows, int k)
    {
        if (WeightGradients.Length < rows * k)
            WeightGradients = new float[rows * k];
    }
}
