namespace Alloy.Runtime.Models;

/// <summary>How a checkpoint stores its experts.</summary>
public enum ExpertLayout
{
    /// <summary>
    /// transformers' current layout: <c>mlp.experts.gate_up_proj</c> [experts, 2·I, H] (each expert's gate rows, then
    /// its up rows) and <c>mlp.experts.down_proj</c> [experts, H, I].
    /// </summary>
    Fused,

    /// <summary>
    /// One module per expert: Mixtral's older <c>block_sparse_moe.experts.N.w1</c> (gate), <c>w3</c> (up), <c>w2</c>
    /// (down), which llama.cpp and transformers ≤ 4.x read; Qwen2-MoE's <c>mlp.experts.N.{gate,up,down}_proj</c>.
    /// </summary>
    PerExpert,
}

/// <summary>
/// A sparse mixture of experts in every decoder layer (Mixtral, Qwen2-MoE): a router picks the top-k of
/// <see cref="Experts"/> SwiGLU experts per token.
/// </summary>
public sealed record MoeConfig
{
    public required int Experts { get; init; }

    /// <summary>num_experts_per_tok: the experts each token is sent to.</summary>
    public required int TopK { get; init; }

    /// <summary>An expert's intermediate size (Mixtral: intermediate_size; Qwen2-MoE: moe_intermediate_size).</summary>
    public required int IntermediateSize { get; init; }

    /// <summary>Whether the top-k routing weights are divided by their sum (Mixtral always; Qwen2-MoE: norm_topk_prob).
    /// </summary>
    public required bool NormalizeTopK { get; init; }

    /// <summary>Qwen2-MoE's shared expert's intermediate size; null when there is none (Mixtral).</summary>
    public int? SharedIntermediateSize { get; init; }

    public ExpertLayout Layout { get; init; } = ExpertLayout.Fused;

    /// <summary>The module holding the router and experts: Mixtral's per-expert checkpoints say block_sparse_moe.
    /// </summary>
    private string Module(ArchitectureFamily family) =>
        family == ArchitectureFamily.Mixtral && Layout == ExpertLayout.PerExpert ? "block_sparse_moe" : "mlp";

    /// <summary>The router's weight [experts, H] in a layer (prefix "model.layers.L.").</summary>
    public string RouterName(ArchitectureFamily family, string prefix) => $"{prefix}{Module(family)}.gate.weight";

    /// <summary>
    /// Where expert <paramref name="expert"/>'s gate, up and down weights are: a parameter name and the first of its
    /// rows (the fused layout stacks every expert in one parameter).
    /// </summary>
    public ((string Name, int Row) Gate, (string Name, int Row) Up, (string Name, int Row) Down) ExpertWeights(
        ArchitectureFamily family,
        string prefix,
        int expert,
        int hidden
    )
    {
        string experts = $"{prefix}{Module(family)}.experts.";
        if (Layout == ExpertLayout.Fused)
        {
            string gateUp = experts + "gate_up_proj";
            return (
                (gateUp, 2 * IntermediateSize * expert),
                (gateUp, 2 * IntermediateSize * expert + IntermediateSize),
                (experts + "down_proj", hidden * expert)
            );
        }
        string e = $"{experts}{expert}.";
        return family == ArchitectureFamily.Mixtral
            ? ((e + "w1.weight", 0), (e + "w3.weight", 0), (e + "w2.weight", 0))
            : ((e + "gate_proj.weight", 0), (e + "up_proj.weight", 0), (e + "down_proj.weight", 0));
    }

    /// <summary>The parameters of one layer's mixture, in transformers' state_dict order.</summary>
    public IEnumerable<(string Name, int[] Shape)> Shapes(ArchitectureFamily family, string prefix, int hidden)
    {
        int i = IntermediateSize;
        yield return (RouterName(family, prefix), [Experts, hidden]);
        if (Layout == ExpertLayout.Fused)
        {
            var first = ExpertWeights(family, prefix, 0, hidden);
            yield return (first.Gate.Name, [Experts, 2 * i, hidden]);
            yield return (first.Down.Name, [Experts, hidden, i]);
        }
        else
            for (int e = 0; e < Experts; e++)
            {
                var (gate, up, down) = ExpertWeights(family, prefix, e, hidden);
                // Mixtral's modules are w1, w2, w3 in that order; Qwen2-MoE's gate, up, down.
                var ordered = family == ArchitectureFamily.Mixtral ? new[] { gate, down, up } : [gate, up, down];
                foreach (var (name, _) in ordered)
                    yield return (name, name == down.Name ? [hidden, i] : [i, hidden]);
            }
        if (SharedIntermediateSize is int shared)
        {
            yield return ($"{prefix}mlp.shared_expert.gate_proj.weight", [shared, hidden]);
            yield return ($"{prefix}mlp.shared_expert.up_proj.weight", [shared, hidden]);
            yield return ($"{prefix}mlp.shared_expert.down_proj.weight", [hidden, shared]);
            yield return ($"{prefix}mlp.shared_expert_gate.weight", [1, hidden]);
        }
    }
}
