using Alloy.Checkpoints;
using Alloy.Runtime.Inference;
using Alloy.Runtime.Models;
using Alloy.Runtime.Tests.Support;
using Alloy.Runtime.Training;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Runtime.Tests.Training;

/// <summary>The Fisher and RegMean hooks against independent computations on small models.</summary>
public sealed class ParameterStatisticsTests
{
    /// <summary>
    /// The sampled Fisher of one scored position, averaged over many draws, against the true Fisher computed exactly
    /// by summing p(y)·g_y² over the whole vocabulary (one backward pass per token y): the totals over all entries
    /// agree to 15% after 400 draws, and the empirical Fisher (the data's token as y) is a different number.
    /// </summary>
    [Fact]
    public void The_sampled_fisher_estimates_the_true_fisher_over_the_vocabulary()
    {
        var model = RandomModels.Create(RandomModels.Config(tied: true));
        var example = RandomModels.Examples(model.Config.VocabSize, 1, 7)[0];
        var prompt = example.Tokens[..^1];
        var one = new TrainingExample(example.Tokens, example.Tokens.Length - 1);
        var loss = new LossGradients(model);
        double exact = 0;
        for (int y = 0; y < model.Config.VocabSize; y++)
        {
            var labelled = new TrainingExample([.. prompt, y], prompt.Length);
            double p = Math.Exp(-loss.Loss([labelled]).LossSum);
            loss.Gradients.Clear(model.Compute);
            loss.Accumulate([labelled], 1.0);
            exact += p * SquaredNorm(model, loss);
        }
        double Total(ParameterStatistics f) => f.Tensors.Sum(t => t.Values.Sum(v => (double)v));
        var copies = Enumerable.Repeat(one, 400).ToList();
        double sampled = Total(ParameterStatistics.Fisher(model, copies, estimate: FisherEstimate.Sampled));
        double empirical = Total(ParameterStatistics.Fisher(model, [one], estimate: FisherEstimate.Empirical));
        Assert.True(Math.Abs(sampled - exact) < 0.15 * exact, $"sampled {sampled:G6}, exact {exact:G6}");
        Assert.True(Math.Abs(empirical - exact) > 0.01 * exact, "the empirical Fisher equals the true one here");
        Assert.NotEqual(
            Total(ParameterStatistics.Fisher(model, copies[..20], estimate: FisherEstimate.Sampled, seed: 1)),
            Total(ParameterStatistics.Fisher(model, copies[..20], estimate: FisherEstimate.Sampled, seed: 2))
        );
    }

    private static double SquaredNorm(LlamaModel model, LossGradients loss) =>
        model.Parameters.Sum(p => loss.Gradients[p].Sum(g => (double)g * g));

    /// <summary>
    /// The Fisher of the largest-valued element of every parameter against per-example gradients taken by central
    /// differences (h = 1e-3) of each example's summed loss, squared and averaged: agreement to 3% + 1e-6 (the
    /// difference quotients are good to about 1e-4 of gradients of order 0.1–1).
    /// </summary>
    [Fact]
    public void Fisher_is_the_mean_of_per_example_squared_gradients()
    {
        var model = RandomModels.Create(RandomModels.Config(tied: true));
        var examples = new[]
        {
            RandomModels.Examples(model.Config.VocabSize, 1, 13)[0],
            RandomModels.Examples(model.Config.VocabSize, 5, 9)[0],
            RandomModels.Examples(model.Config.VocabSize, 1, 6, 20)[1],
        };
        var fisher = ParameterStatistics.Fisher(model, examples);
        Assert.Equal(Alloy.Checkpoints.StatisticsFile.DiagonalFisher, fisher.Kind);
        Assert.Equal(3, fisher.Count);
        Assert.Equal(model.Parameters.Select(p => p.Name), fisher.Tensors.Select(t => t.Name));

        var loss = new LossGradients(model);
        var failures = new List<string>();
        foreach (var (p, tensor) in model.Parameters.Zip(fisher.Tensors))
        {
            Assert.Equal(p.Shape, tensor.Shape);
            int index = Array.IndexOf(tensor.Values, tensor.Values.Max());
            double expected = 0;
            foreach (var example in examples)
            {
                float saved = p.Data[index];
                p.Data[index] = saved + 1e-3f;
                double plus = loss.Loss([example]).LossSum;
                p.Data[index] = saved - 1e-3f;
                double minus = loss.Loss([example]).LossSum;
                p.Data[index] = saved;
                double g = (plus - minus) / 2e-3;
                expected += g * g / examples.Length;
            }
            if (Math.Abs(expected - tensor.Values[index]) > 0.03 * expected + 1e-6)
                failures.Add(
                    $"{p.Name}[{index}]: Fisher {tensor.Values[index]:G6}, from finite differences {expected:G6}"
                );
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>
    /// Gram matrices over batches of 2 examples: layer 0's q/k/v input recomputed in double from the embedding and
    /// the norm weight; every other layer's against the kept inputs of one pass over all examples at once; token
    /// count, names, the untied head; saving and reading back with the metadata.
    /// </summary>
    [Fact]
    public void Grams_are_sums_of_each_linear_layers_input_outer_products()
    {
        var model = RandomModels.Create(RandomModels.Config(ArchitectureFamily.Qwen2, tied: true));
        var examples = RandomModels.Examples(model.Config.VocabSize, 3, 11, 70, 5, 8, 2);
        var grams = ParameterStatistics.Grams(model, examples, batchSize: 2);
        int tokens = examples.Sum(e => e.Tokens.Length);
        Assert.Equal(tokens, grams.Count);
        int hidden = model.Config.HiddenSize;

        // Layer 0's q/k/v input: input_layernorm(embedding rows), in double.
        var expected0 = new double[hidden * hidden];
        var embed = model.Parameters["model.embed_tokens.weight"].Data;
        var norm = model.Parameters["model.layers.0.input_layernorm.weight"].Data;
        var x = new double[hidden];
        foreach (int token in examples.SelectMany(e => e.Tokens))
        {
            double squares = 0;
            for (int j = 0; j < hidden; j++)
                squares += (double)embed[token * hidden + j] * embed[token * hidden + j];
            double inverse = 1 / Math.Sqrt(squares / hidden + model.Config.RmsNormEpsilon);
            for (int j = 0; j < hidden; j++)
                x[j] = embed[token * hidden + j] * inverse * norm[j];
            for (int i = 0; i < hidden; i++)
            for (int j = 0; j < hidden; j++)
                expected0[i * hidden + j] += x[i] * x[j];
        }
        foreach (var name in new[] { "q_proj", "k_proj", "v_proj" })
            AssertClose(expected0, Find(grams, $"model.layers.0.self_attn.{name}.weight"), 1e-5);

        // Every layer against the kept inputs of a single pass.
        var state = model.CreateState(keepActivations: true);
        model.Forward(TokenBatch.FromSequences(examples.Select(e => (IReadOnlyList<int>)e.Tokens)), state);
        for (int layer = 0; layer < model.Config.Layers; layer++)
        {
            var a = state.Blocks[layer];
            string p = $"model.layers.{layer}.";
            AssertClose(Gram(a.AttentionNormed), Find(grams, p + "self_attn.k_proj.weight"), 1e-5);
            AssertClose(Gram(a.Context), Find(grams, p + "self_attn.o_proj.weight"), 1e-5);
            AssertClose(Gram(a.MlpNormed), Find(grams, p + "mlp.gate_proj.weight"), 1e-5);
            AssertClose(Gram(a.MlpNormed), Find(grams, p + "mlp.up_proj.weight"), 1e-5);
            AssertClose(Gram(a.Hidden), Find(grams, p + "mlp.down_proj.weight"), 1e-5);
        }
        Assert.Null(grams.Tensors.FirstOrDefault(t => t.Name == "lm_head.weight")); // tied Qwen2
        Assert.Equal(7 * model.Config.Layers, grams.Tensors.Count);

        using var temp = new TempFolder();
        var path = Path.Combine(temp.Path, "stats", "grams.safetensors");
        grams.Save(path);
        Assert.Single(Directory.GetFiles(Path.GetDirectoryName(path)!));
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(Alloy.Checkpoints.StatisticsFile.RegMeanGram, file.Metadata["alloy_statistic"]);
        Assert.Equal(tokens.ToString(), file.Metadata["tokens"]);
        using var checkpoint = Checkpoint.Open(path);
        var stored = checkpoint.Find("model.layers.1.mlp.down_proj.weight")!;
        var values = new float[stored.Info.ElementCount];
        TensorConvert.ToFloat32(stored.Bytes(0, (int)stored.Info.ByteLength), stored.Info.DType, values);
        Assert.Equal(Find(grams, "model.layers.1.mlp.down_proj.weight"), values);
    }

    [Fact]
    public void An_untied_model_gets_the_heads_gram()
    {
        var model = RandomModels.Create(RandomModels.Config());
        var examples = RandomModels.Examples(model.Config.VocabSize, 1, 9, 4);
        var grams = ParameterStatistics.Grams(model, examples, batchSize: 1);
        var state = model.CreateState(keepActivations: true);
        model.Forward(TokenBatch.FromSequences(examples.Select(e => (IReadOnlyList<int>)e.Tokens)), state);
        AssertClose(Gram(state.FinalNormed), Find(grams, "lm_head.weight"), 1e-5);
        Assert.Equal("lm_head.weight", grams.Tensors[^1].Name);
    }

    private static float[] Find(ParameterStatistics statistics, string name) =>
        statistics.Tensors.Single(t => t.Name == name).Values;

    private static double[] Gram(Alloy.Runtime.Compute.Matrix x)
    {
        var gram = new double[x.Columns * x.Columns];
        for (int r = 0; r < x.Rows; r++)
        {
            var row = x.Row(r);
            for (int i = 0; i < x.Columns; i++)
            for (int j = 0; j < x.Columns; j++)
                gram[i * x.Columns + j] += (double)row[i] * row[j];
        }
        return gram;
    }

    private static void AssertClose(double[] expected, float[] actual, double relative)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.Max(Math.Abs);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(
                Math.Abs(expected[i] - actual[i]) <= relative * scale,
                $"[{i}]: expected {expected[i]}, got {actual[i]}"
            );
    }
}
