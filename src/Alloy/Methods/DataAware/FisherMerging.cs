using Alloy.Checkpoints;
using Alloy.Tensors;

namespace Alloy.Methods.DataAware;

/// <summary>
/// Fisher-weighted averaging (Matena &amp; Raffel, 2022), per entry: θ = Σ_t c_t F̃_t θ_t / Σ_t c_t F̃_t, where F̃_t =
/// max(F_t, floor) is model t's diagonal Fisher, floored as the reference code does, and c_t its weight — divided by
/// the L2 norm of its whole Fisher when normalising (the reference's default), so a model whose Fisher is larger
/// overall (more data, a sharper loss) does not outweigh the others by that alone. Each model's Fisher comes from a
/// file made by <c>alloy fisher</c> or is computed from its <c>data:</c>.
/// </summary>
public sealed class FisherMerging()
    : MergeMethod(
        new("fisher", "Fisher merging", "Average weighted per entry by each model's diagonal Fisher information.")
        {
            Paper = "https://arxiv.org/abs/2111.09832",
            Parameters = [Weight, Fisher, Data, Floor, NormalizeFishers, Samples, Estimate],
            Statistics = new(StatisticsFile.DiagonalFisher, StatisticShape.SameAsTensor, Fisher)
            {
                Data = Data,
                Samples = Samples,
                Estimate = Estimate,
            },
        }
    )
{
    public static readonly NumberParameter Weight = MethodParameter.Number(
        "weight",
        ParameterScope.PerModel,
        1,
        "Each model's coefficient c_t.",
        NumberRange.NonNegative
    );

    public static readonly PathParameter Fisher = MethodParameter.Path(
        "fisher",
        ParameterScope.PerModel,
        "The model's diagonal Fisher, a file made by `alloy fisher` (or set data).",
        required: false
    );

    public static readonly PathParameter Data = MethodParameter.Path(
        "data",
        ParameterScope.PerModel,
        "Examples (.txt or .jsonl, as `alloy fisher --data`) to compute the model's Fisher from (cached).",
        required: false
    );

    public static readonly NumberParameter Floor = MethodParameter.Number(
        "fisher_floor",
        ParameterScope.Global,
        1e-6,
        "Fisher values below this count as this, so entries no model is sure of are averaged.",
        NumberRange.NonNegative
    );

    public static readonly BooleanParameter NormalizeFishers = MethodParameter.Boolean(
        "normalize_fishers",
        ParameterScope.Global,
        true,
        "Divide each model's coefficient by the L2 norm of its whole Fisher."
    );

    public static readonly IntegerParameter Samples = MethodParameter.Integer(
        "fisher_samples",
        ParameterScope.Global,
        256,
        "With data: the examples the Fisher is computed over (the first N).",
        minimum: 1
    );

    public static readonly ChoiceParameter Estimate = MethodParameter.Choice(
        "fisher_estimate",
        ParameterScope.Global,
        "sampled",
        ["sampled", "empirical"],
        "With data: the model's Fisher, each target drawn from the model's own prediction (sampled), or the "
            + "data's tokens as targets (empirical)."
    );

    public override void Validate(MergeInputsInfo inputs)
    {
        double total = 0;
        for (int i = 0; i < inputs.Count; i++)
            total += inputs[Weight, i];
        if (total == 0)
            throw new AlloyException($"fisher: the weights of tensor '{inputs.TensorName}' are all zero");
    }

    /// <summary>The numerator and denominator, in double.</summary>
    public override int ScratchBuffers(int inputCount) => 4;

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        double floor = inputs[Floor];
        var coefficients = new double[inputs.Count];
        for (int t = 0; t < inputs.Count; t++)
        {
            double norm = inputs[NormalizeFishers] ? inputs.StatisticSummaries![t].Norm : 1;
            if (!(norm > 0) || !double.IsFinite(norm))
                throw new AlloyException(
                    $"fisher: the Fisher of model '{inputs.ModelNames[t]}' has norm {norm}; it cannot be normalised"
                );
            coefficients[t] = inputs[Weight, t] / norm;
        }
        int n = output.Length;
        var numerator = BufferPool<double>.Rent(n);
        var denominator = BufferPool<double>.Rent(n);
        try
        {
            Array.Clear(numerator, 0, n);
            Array.Clear(denominator, 0, n);
            for (int t = 0; t < inputs.Count; t++)
            {
                ReadOnlySpan<float> theta = inputs[t],
                    fisher = inputs.Statistic(t);
                double c = coefficients[t];
                for (int j = 0; j < n; j++)
                {
                    if (!(fisher[j] >= 0) || float.IsInfinity(fisher[j]))
                        throw new AlloyException(
                            $"fisher: the Fisher of model '{inputs.ModelNames[t]}' has {fisher[j]} in tensor "
                                + $"'{inputs.TensorName}'; a Fisher is a finite non-negative number"
                        );
                    double weight = c * Math.Max(fisher[j], floor);
                    numerator[j] += weight * theta[j];
                    denominator[j] += weight;
                }
            }
            for (int j = 0; j < n; j++)
            {
                // Every Fisher is zero here and there is no floor: no model has a preference, so average by weight.
                if (denominator[j] == 0)
                    for (int t = 0; t < inputs.Count; t++)
                    {
                        numerator[j] += coefficients[t] * inputs[t][j];
                        denominator[j] += coefficients[t];
                    }
                output[j] = (float)(numerator[j] / denominator[j]);
            }
        }
        finally
        {
            BufferPool<double>.Return(numerator);
            BufferPool<double>.Return(denominator);
        }
    }
}
