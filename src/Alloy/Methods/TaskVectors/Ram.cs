namespace Alloy.Methods.TaskVectors;

/// <summary>
/// RAM, Reinforced Agent Merging (arXiv:2601.13572), as mergekit defines it: an entry of a task vector counts as active
/// when |τᵢ| &gt; epsilon; an entry only one model changes keeps that model's value, one several models change gets the
/// mean of their values.
/// </summary>
public sealed class Ram : MergeMethod
{
    public override string Name => "ram";
    public override string Title => "Reinforced Agent Merging";
    public override string Reference => "https://arxiv.org/abs/2601.13572";
    public override BaseModelUse BaseModel => BaseModelUse.Required;
    public override int ScratchBuffers(int inputCount) => 0;

    public override IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        ParameterSpec.Global("epsilon", 1e-5, "An entry of a task vector is active (counts as changed) when its magnitude exceeds epsilon."),
    ];

    public override void Validate(MergeInputsInfo inputs) => RamOverlap.Validate(this, inputs);

    public override void Merge(MergeInputs inputs, Span<float> output) =>
        RamOverlap.Merge(inputs, InputRules.NonBase(inputs), inputs.Global("epsilon"), uniqueScales: null, output);
}

/// <summary>
/// RAM+ tensor-local (arXiv:2601.13572), as mergekit's <c>ramplus_tl</c>: RAM, with each model's unique entries scaled by
/// λᵢ = 1 + r·clamp(ρᵢ, 0, alpha), where ρᵢ = (its active entries shared with other models) / max(its unique active
/// entries, epsilon), counted over the tensor.
/// </summary>
public sealed class RamPlusTl : MergeMethod
{
    public override string Name => "ramplus_tl";
    public override string Title => "Reinforced Agent Merging Plus (Tensor-Local)";
    public override string Reference => "https://arxiv.org/abs/2601.13572";
    public override BaseModelUse BaseModel => BaseModelUse.Required;

    /// <summary>The shared/unique counts run over the whole tensor (gathered first, <see cref="Chunking"/>).</summary>
    public override bool IsElementwise => false;

    public override int ScratchBuffers(int inputCount) => 0;

    public override IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        ParameterSpec.Global("r", 0.1, "Strength of the boost of each model's unique entries."),
        ParameterSpec.Global("alpha", 0.2, "Cap on the shared-to-unique ratio ρ in the boost."),
        ParameterSpec.Global("epsilon", 1e-5, "An entry of a task vector is active (counts as changed) when its magnitude exceeds epsilon."),
    ];

    public override void Validate(MergeInputsInfo inputs) => RamOverlap.Validate(this, inputs);

    /// <summary>Streamed: per model, its active entries that other models share and those only it changes (first sums 2m, 2m + 1).</summary>
    public override ChunkPlan? Chunking(MergeInputsInfo inputs, long[] shape) =>
        new() { FirstSums = 2 * InputRules.NonBase(inputs).Length };

    public override void Accumulate(MergeInputs unit, StatisticsPass pass)
    {
        int[] models = InputRules.NonBase(unit);
        double epsilon = unit.Global("epsilon");
        var @base = unit[unit.BaseIndex];
        var (shared, unique) = (new long[models.Length], new long[models.Length]);
        for (int j = 0; j < unit.Length; j++)
        {
            int count = RamOverlap.ActiveCount(unit, models, @base, j, epsilon);
            if (count == 0) continue;
            for (int m = 0; m < models.Length; m++)
            {
                if (!(Math.Abs(unit[models[m]][j] - @base[j]) > (float)epsilon)) continue;
                if (count == 1) unique[m]++;
                else shared[m]++;
            }
        }
        for (int m = 0; m < models.Length; m++)
        {
            pass.Sums[2 * m] += shared[m];
            pass.Sums[2 * m + 1] += unique[m];
        }
    }

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        int[] models = InputRules.NonBase(inputs);
        double epsilon = inputs.Global("epsilon"), r = inputs.Global("r"), alpha = inputs.Global("alpha");
        var stats = StatisticsOf(inputs);
        var scales = new double[models.Length];
        for (int m = 0; m < models.Length; m++)
        {
            // Counts are whole numbers, exact in double.
            double rho = stats.FirstSum(2 * m) / Math.Max(stats.FirstSum(2 * m + 1), epsilon);
            scales[m] = 1 + r * Math.Min(Math.Max(rho, 0), alpha);   // torch's clamp(min, max): max wins
        }
        RamOverlap.Merge(inputs, models, epsilon, scales, output);
    }
}

/// <summary>The active-entry overlap shared by <see cref="Ram"/> and <see cref="RamPlusTl"/>.</summary>
/// <remarks>Magnitudes are compared with epsilon rounded to float32, as torch compares a float32 tensor with a scalar.</remarks>
public static class RamOverlap
{
    public static void Validate(MergeMethod method, MergeInputsInfo inputs)
    {
        double epsilon = inputs.Global("epsilon");
        if (!(epsilon >= 0))
            throw new AlloyException($"{method.Name}: epsilon {epsilon} for tensor '{inputs.TensorName}' is not a magnitude; use a small non-negative threshold such as 1e-5");
    }

    /// <summary>How many models change entry <paramref name="j"/> by more than epsilon.</summary>
    public static int ActiveCount(MergeInputs inputs, int[] models, ReadOnlySpan<float> @base, int j, double epsilon)
    {
        int count = 0;
        foreach (int i in models)
            if (Math.Abs(inputs[i][j] - @base[j]) > (float)epsilon) count++;
        return count;
    }

    /// <summary>
    /// base + Σ over active models of τᵢ (times <paramref name="uniqueScales"/>[i], if given) where one model is active,
    /// or of τᵢ / (number active) where several are.
    /// </summary>
    public static void Merge(MergeInputs inputs, int[] models, double epsilon, double[]? uniqueScales, Span<float> output)
    {
        var @base = inputs[inputs.BaseIndex];
        for (int j = 0; j < output.Length; j++)
        {
            int count = ActiveCount(inputs, models, @base, j, epsilon);
            double sum = 0;
            for (int m = 0; m < models.Length; m++)
            {
                float task = inputs[models[m]][j] - @base[j];
                if (!(Math.Abs(task) > (float)epsilon)) continue;
                sum += count == 1 ? task * (uniqueScales?[m] ?? 1) : (double)task / count;
            }
            output[j] = (float)(@base[j] + sum);
        }
    }
}
