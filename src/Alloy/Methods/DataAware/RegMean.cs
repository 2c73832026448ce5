using System.Numerics.Tensors;
using Alloy.Checkpoints;
using Alloy.Recipes;

namespace Alloy.Methods.DataAware;

/// <summary>
/// RegMean (Jin et al., ICLR 2023): each linear layer's weight is the least-squares fit that reproduces every model's
/// outputs on its own inputs (<see cref="RegMeanSolve"/>), from each model's Gram matrix of the layer's inputs — a file
/// made by <c>alloy regmean</c>, or computed from the model's <c>data:</c>. Tensors without Gram matrices (embeddings,
/// norms, biases) are averaged. Gram matrices are mean-normalised (divided by their token count) and scaled by the
/// model's weight, so equal weights give the reference's W* = (Σ G̃_t)⁻¹ Σ G̃_t W_t.
/// </summary>
public class RegMean : MergeMethod
{
    public RegMean()
        : this(
            new("regmean", "RegMean", "Least-squares merge of linear layers from their inputs' Gram matrices.")
            {
                Paper = "https://arxiv.org/abs/2212.09849",
            }
        ) { }

    /// <summary>A variant with RegMean's parameters, statistics and merge (<see cref="RegMeanPlusPlus"/>).</summary>
    protected RegMean(MethodDeclaration declaration)
        : base(
            declaration with
            {
                Parameters = [Weight, Gram, Data, Alpha, Samples],
                Elementwise = false,
                Statistics = new(StatisticsFile.RegMeanGram, StatisticShape.InputGram, Gram)
                {
                    Data = Data,
                    Samples = Samples,
                },
            }
        ) { }

    public static readonly NumberParameter Weight = MethodParameter.Number(
        "weight",
        ParameterScope.PerModel,
        1,
        "Each model's weight: scales its Gram matrices, and its share of the tensors that are averaged.",
        NumberRange.NonNegative
    );

    public static readonly PathParameter Gram = MethodParameter.Path(
        "gram",
        ParameterScope.PerModel,
        "The model's Gram matrices, a file made by `alloy regmean` (or set data).",
        required: false
    );

    public static readonly PathParameter Data = MethodParameter.Path(
        "data",
        ParameterScope.PerModel,
        "Examples (.txt or .jsonl, as `alloy regmean --data`) to compute the model's Gram matrices from (cached).",
        required: false
    );

    public static readonly NumberParameter Alpha = MethodParameter.Number(
        "alpha",
        ParameterScope.Global,
        0.95,
        "Scale of the Gram matrices' off-diagonal entries (1: exact RegMean; 0: variance-weighted averaging).",
        NumberRange.Fraction
    );

    public static readonly IntegerParameter Samples = MethodParameter.Integer(
        "regmean_samples",
        ParameterScope.Global,
        256,
        "With data: the examples the Gram matrices are computed over (the first N).",
        minimum: 1
    );

    public override void Validate(MergeInputsInfo inputs)
    {
        double total = 0;
        for (int i = 0; i < inputs.Count; i++)
            total += inputs[Weight, i];
        if (total == 0)
            throw new AlloyException($"regmean: the weights of tensor '{inputs.TensorName}' are all zero");
    }

    public override int ScratchBuffers(int inputCount) => 0;

    public override long ExtraWorkingBytes(long[] shape) =>
        shape.Length == 2 ? RegMeanSolve.WorkingBytes(shape[0], shape[1]) : 0;

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        if (!inputs.HasStatistics)
        {
            double total = 0;
            for (int i = 0; i < inputs.Count; i++)
                total += inputs[Weight, i];
            output.Clear();
            for (int i = 0; i < inputs.Count; i++)
                TensorPrimitives.MultiplyAdd(inputs[i], (float)(inputs[Weight, i] / total), output, output);
            return;
        }
        int rows = checked((int)inputs.Shape[0]),
            cols = checked((int)inputs.Shape[1]);
        using var solve = new RegMeanSolve(rows, cols, inputs[Alpha]);
        for (int i = 0; i < inputs.Count; i++)
            solve.Add(inputs[i], inputs.Statistic(i), inputs[Weight, i] / inputs.StatisticSummaries![i].Count);
        try
        {
            solve.Solve(output);
        }
        catch (AlloyException e)
        {
            throw new AlloyException($"regmean: tensor '{inputs.TensorName}': {e.Message}; check the Gram files", e);
        }
    }
}

/// <summary>
/// RegMean++ (FusionBench's <c>regmean_plusplus</c>): RegMean, with each model's Gram matrices of block ℓ gathered
/// from inputs that have passed through the already merged blocks before ℓ (and the model's own block ℓ), so each
/// block is fitted to the inputs the merged model will give it. The Grams are gathered block by block before the merge
/// (<see cref="IMergeLearner.SequentialGrams"/>, Alloy.Runtime) from each model's <c>data:</c>, and then merged as
/// RegMean merges; the merge itself is RegMean's.
/// </summary>
public sealed class RegMeanPlusPlus()
    : RegMean(
        new(
            "regmean_plusplus",
            "RegMean++",
            "RegMean with each block's Gram matrices taken on the outputs of the blocks merged before it."
        )
        {
            Paper = "https://github.com/tanganke/fusion_bench/tree/main/fusion_bench/method/regmean_plusplus",
        }
    )
{
    /// <summary>
    /// <paramref name="recipe"/> with each model's <c>gram:</c> naming its file of <paramref name="grams"/> (in model
    /// order) instead of <c>data:</c>: the merge of the Grams gathered block by block.
    /// </summary>
    public static MergeRecipe WithGrams(MergeRecipe recipe, IReadOnlyList<string> grams)
    {
        var entries = recipe.Models
            ?? throw new AlloyException($"{recipe.MethodLocation}: regmean_plusplus needs models:, not slices:");
        static ParameterSettings Without(ParameterSettings settings) => new(settings.Where(s => s.Name != Data.Name));
        return recipe with
        {
            Text = null,
            Parameters = Without(recipe.Parameters),
            Models =
            [
                .. entries.Select(
                    (entry, t) =>
                        entry with
                        {
                            Parameters = new ParameterSettings(Without(entry.Parameters))
                            {
                                [Gram.Name] = new ParameterValue.Text(grams[t]),
                            },
                        }
                ),
            ],
        };
    }
}
