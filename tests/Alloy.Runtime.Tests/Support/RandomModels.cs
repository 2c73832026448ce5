using Alloy.LinearAlgebra;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;
using Alloy.Tensors;

namespace Alloy.Runtime.Tests.Support;

/// <summary>
/// Small models built in memory with seeded random weights, and seeded token sequences, for gradient tests.
/// </summary>
public static class RandomModels
{
    /// <summary>
    /// A Llama-family config small enough for finite differences: GQA 4:2, head_dim 4, and the given biases, tying and
    /// window. Weights are N(0, 1/fan_in) and norms 1 + N(0, 0.1²), so attention is far from uniform.
    /// </summary>
    public static ModelConfig Config(
        ArchitectureFamily family = ArchitectureFamily.Llama,
        bool biases = true,
        bool tied = false,
        int? window = null
    ) =>
        new()
        {
            Family = family,
            VocabSize = 23,
            HiddenSize = 16,
            IntermediateSize = 24,
            Layers = 2,
            Heads = 4,
            KeyValueHeads = 2,
            HeadDim = 4,
            RmsNormEpsilon = 1e-5,
            QkvBias = biases,
            OutputBias = biases && family == ArchitectureFamily.Llama,
            MlpBias = biases && family == ArchitectureFamily.Llama,
            TieWordEmbeddings = tied,
            SlidingWindow = window,
        };

    /// <summary>
    /// A mixture-of-experts config of the same size: 4 experts of intermediate size 12, top-2. Mixtral (renormalised
    /// weights, fused experts) or Qwen2-MoE (no renormalisation, a shared expert of 20, per-expert layout).
    /// </summary>
    public static ModelConfig Moe(ArchitectureFamily family, ExpertLayout? layout = null, bool? normalize = null)
    {
        bool qwen = family == ArchitectureFamily.Qwen2Moe;
        return Config(family, biases: qwen) with
        {
            Moe = new MoeConfig
            {
                Experts = 4,
                TopK = 2,
                IntermediateSize = 12,
                NormalizeTopK = normalize ?? !qwen,
                SharedIntermediateSize = qwen ? 20 : null,
                Layout = layout ?? (qwen ? ExpertLayout.PerExpert : ExpertLayout.Fused),
            },
        };
    }

    public static LlamaModel Create(ModelConfig config, ulong seed = 3, int threads = 2, DenseBackend? backend = null)
    {
        var parameters = ParameterSet.Zeros(config);
        foreach (var p in parameters)
        {
            var stream = RandomStream.For(seed, p.Name, 0);
            bool norm = p.Name.EndsWith("norm.weight", StringComparison.Ordinal),
                bias = p.Name.EndsWith(".bias", StringComparison.Ordinal);
            double scale = norm || bias ? 0.1 : 1 / Math.Sqrt(p.Columns);
            for (int i = 0; i < p.Data.Length; i++)
                p.Data[i] = (float)((norm ? 1 : 0) + scale * stream.Normal(i));
        }
        return new LlamaModel(
            config,
            parameters,
            new RuntimeOptions { Threads = threads, Backend = backend ?? DenseBackend.Managed }
        );
    }

    /// <summary>
    /// Seeded examples of the given lengths (token ids below <paramref name="vocab"/>), each scored from
    /// <paramref name="scoredFrom"/>.
    /// </summary>
    public static TrainingExample[] Examples(int vocab, int scoredFrom, params int[] lengths) =>
        [.. TestModels.Sequences(vocab, lengths).Select(tokens => new TrainingExample(tokens, scoredFrom))];
}
