using System.Numerics.Tensors;
using Alloy.Adapters;
using Alloy.Runtime.Compute;
using Alloy.Runtime.Models;
using Alloy.Tensors;

namespace Alloy.Runtime.Training;

/// <summary>A LoRA adapter's shape, with PEFT's defaults (<c>LoraConfig</c>: r 8, lora_alpha 8, q_proj and v_proj).
/// </summary>
public sealed record LoraOptions
{
    /// <summary>PEFT's name for every linear layer of the decoder blocks (not the head).</summary>
    public const string AllLinear = "all-linear";

    public int Rank { get; init; } = 8;

    /// <summary>α: the update is (α / r)·B·A.</summary>
    public double Alpha { get; init; } = 8;

    /// <summary>Module names (the last part, as q_proj) or <see cref="AllLinear"/>.</summary>
    public IReadOnlyList<string> Targets { get; init; } = ["q_proj", "v_proj"];

    /// <summary>Seeds A's initialisation (B starts at zero, so the adapted model starts as the base).</summary>
    public ulong Seed { get; init; }

    public double Scale => Alpha / Rank;

    public void Validate()
    {
        if (Rank < 1)
            throw new AlloyException($"--lora-rank must be at least 1 (got {Rank})");
        if (!(Alpha > 0 && double.IsFinite(Alpha)))
            throw new AlloyException($"--lora-alpha must be positive (got {Alpha})");
        if (Targets.Count == 0)
            throw new AlloyException("--lora-targets names no module");
    }
}

/// <summary>
/// A LoRA adapter trained on a frozen model: each target weight runs as W₀ + s·B·A, and only A and B learn. The
/// layers keep computing with a dense weight (refreshed by <see cref="Apply"/> after every step) and its dense
/// gradient G, from which the chain rule gives ∂/∂A = s·Bᵀ·G and ∂/∂B = s·G·Aᵀ — exact, and no layer needs a second
/// code path. The price is one dense gradient per weight, which the runtime's small models can afford.
/// </summary>
public sealed class TrainableLora
{
    private readonly Target[] _targets;

    private sealed record Target(string Module, Parameter Weight, float[] Frozen, Parameter A, Parameter B)
    {
        /// <summary>s·B, the left factor the forward pass used (kept for the backward pass).</summary>
        public float[] ScaledB { get; } = new float[B.Data.Length];
    }

    public TrainableLora(LlamaModel model, LoraOptions options)
    {
        options.Validate();
        Model = model;
        Options = options;
        bool all = options.Targets.Contains(LoraOptions.AllLinear);
        var wanted = options.Targets.ToHashSet(StringComparer.Ordinal);
        var targets = new List<Target>();
        foreach (var weight in model.Parameters)
        {
            if (weight.Shape.Length != 2 || !weight.Name.StartsWith("model.layers.", StringComparison.Ordinal))
                continue;
            string module = weight.Name[..^".weight".Length];
            if (!all && !wanted.Contains(module[(module.LastIndexOf('.') + 1)..]))
                continue;
            var a = new Parameter($"{AdapterFolder.Prefix}{module}.lora_A.weight", [options.Rank, weight.Columns]);
            var b = new Parameter($"{AdapterFolder.Prefix}{module}.lora_B.weight", [weight.Rows, options.Rank]);
            // PEFT's kaiming_uniform_(a=√5): U(−1/√in, 1/√in).
            float bound = 1f / MathF.Sqrt(weight.Columns);
            var random = RandomStream.For(options.Seed, a.Name, 0);
            for (int i = 0; i < a.Data.Length; i++)
                a.Data[i] = (2 * random.Uniform(i) - 1) * bound;
            targets.Add(new Target(module, weight, (float[])weight.Data.Clone(), a, b));
        }
        if (targets.Count == 0)
        {
            var names = model.Parameters.Where(p => p.Name.StartsWith("model.layers.0.", StringComparison.Ordinal));
            var leaves = names.Where(p => p.Shape.Length == 2).Select(p => p.Name.Split('.')[^2]);
            throw new AlloyException(
                $"--lora-targets {string.Join(",", options.Targets)} matches no linear layer; the model has "
                    + $"{string.Join(", ", leaves)} (or give {LoraOptions.AllLinear})"
            );
        }
        _targets = [.. targets];
        Parameters = new ParameterSet(_targets.SelectMany(t => new[] { t.A, t.B }));
        Apply();
    }

    public LlamaModel Model { get; }

    public LoraOptions Options { get; }

    /// <summary>The trained factors under PEFT's names (lora_A then lora_B of each module, in the model's order).
    /// </summary>
    public ParameterSet Parameters { get; }

    /// <summary>The adapted modules (as q_proj's "model.layers.0.self_attn.q_proj").</summary>
    public IEnumerable<string> Modules => _targets.Select(t => t.Module);

    /// <summary>Sets every target weight to W₀ + s·B·A (after each optimizer step).</summary>
    public void Apply()
    {
        var context = Model.Compute;
        float scale = (float)Options.Scale;
        int rank = Options.Rank;
        foreach (var t in _targets)
        {
            TensorPrimitives.Multiply(t.B.Data, scale, t.ScaledB);
            t.Frozen.CopyTo(t.Weight.Data, 0);
            MatMul.Multiply(
                context,
                false,
                false,
                t.Weight.Rows,
                t.Weight.Columns,
                rank,
                t.ScaledB,
                rank,
                t.A.Data,
                t.Weight.Columns,
                t.Weight.Data,
                t.Weight.Columns,
                1f
            );
        }
    }

    /// <summary>
    /// The factors' gradients from the dense weights' gradients: ∂/∂A = (s·B)ᵀ·G and ∂/∂B = s·G·Aᵀ, written (not
    /// added) into <paramref name="adapter"/>.
    /// </summary>
    public void Backward(GradientSet model, GradientSet adapter)
    {
        var context = Model.Compute;
        int rank = Options.Rank;
        foreach (var t in _targets)
        {
            var (rows, cols, g) = (t.Weight.Rows, t.Weight.Columns, model[t.Weight]);
            MatMul.Multiply(context, true, false, rank, cols, rows, t.ScaledB, rank, g, cols, adapter[t.A], cols);
            var gb = adapter[t.B];
            MatMul.Multiply(context, false, true, rows, rank, cols, g, cols, t.A.Data, cols, gb, rank);
            TensorPrimitives.Multiply(gb, (float)Options.Scale, gb);
        }
    }

    /// <summary>
    /// Writes the adapter as a PEFT folder (adapter_config.json with r, lora_alpha and target_modules,
    /// adapter_model.safetensors, a card) for <paramref name="baseModel"/>.
    /// </summary>
    public void Save(string folder, string baseModel, DType dtype, string card)
    {
        var tensors = Parameters
            .Select(p => new AdapterTensor(p.Name, dtype, [.. p.Shape.Select(d => (long)d)], p.Data))
            .ToList();
        AdapterFolder.Write(
            folder,
            tensors,
            [.. _targets.Select(t => (t.Module, Options.Rank))],
            [],
            baseModel,
            card,
            Options.Alpha
        );
    }
}
