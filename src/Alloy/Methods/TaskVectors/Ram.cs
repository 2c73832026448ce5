namespace Alloy.Methods.TaskVectors;

/// <summary>
/// RAM, Reinforced Agent Merging (arXiv:2601.13572), as mergekit defines it: an entry of a task vector counts as active
/// when |τᵢ| &gt; epsilon; an entry only one model changes keeps that model's value, one several models change gets the
/// mean of their values.
/// </summary>
public sealed class Ram()
    : MergeMethod(
        new(
            "ram",
            "Reinforced Agent Merging",
            "Entries only one model changes keep its value; entries several change get their mean."
        )
        {
            Paper = "https://arxiv.org/abs/2601.13572",
            BaseModel = BaseModelUse.Required,
            Parameters = [RamOverlap.Epsilon],
        }
    )
{
    public override int ScratchBuffers(int inputCount) => 0;

    public override void Merge(MergeInputs inputs, Span<float> output) =>
        RamOverlap.Merge(inputs, InputRules.NonBase(inputs), inputs[RamOverlap.Epsilon], uniqueScales: null, output);
}

/// <summary>
/// RAM+ tensor-local (arXiv:2601.13572), as mergekit's <c>ramplus_tl</c>: RAM, with each model's unique entries scaled
/// by λᵢ = 1 + r·clamp(ρᵢ, 0, alpha), where ρᵢ = (its active entries shared with other models) / max(its unique active
/// entries, epsilon), counted over the tensor.
/// </summary>
public sealed class RamPlusTl()
    : MergeMethod(
        new(
            "ramplus_tl",
            "Reinforced Agent Merging Plus (Tensor-Local)",
            "RAM, with each model's unique entries boosted by how much of its change other models share."
        )
        {
            Paper = "https://arxiv.org/abs/2601.13572",
            BaseModel = BaseModelUse.Required,
            // The shared/unique counts run over the whole tensor (gathered first, see Chunking).
            Elementwise = false,
            Parameters = [R, Alpha, RamOverlap.Epsilon],
        }
    )
{
    public static readonly NumberParameter R = MethodParameter.Number(
        "r",
        ParameterScope.Global,
        0.1,
        "Strength of the boost of each model's unique entries.",
        NumberRange.NonNegative
    );

    public static readonly NumberParameter Alpha = MethodParameter.Number(
        "alpha",
        ParameterScope.Global,
        0.2,
        "Cap on the shared-to-unique ratio ρ in the boost.",
        NumberRange.NonNegative
    );

    public override int ScratchBuffers(int inputCount) => 0;

    /// <summary>Streamed: per model, its active entries that other models share and those only it changes.</summary>
    public override ChunkPlan? Chunking(MergeInputsInfo inputs, long[] shape) =>
        Layout(InputRules.NonBase(inputs).Length).Plan;

    private static (ChunkPlan Plan, SumSlot[] Shared, SumSlot[] Unique) Layout(int models)
    {
        var layout = new StatisticsLayout();
        var slots = Enumerable
            .Range(0, models)
            .Select(_ => (Shared: layout.FirstSum(), Unique: layout.FirstSum()))
            .ToArray();
        return (layout.Plan(), [.. slots.Select(s => s.Shared)], [.. slots.Select(s => s.Unique)]);
    }

    public override void Accumulate(MergeInputs unit, StatisticsPass pass)
    {
        int[] models = InputRules.NonBase(unit);
        double epsilon = unit[RamOverlap.Epsilon];
        var @base = unit[unit.BaseIndex];
        var (shared, unique) = (new long[models.Length], new long[models.Length]);
        for (int j = 0; j < unit.Length; j++)
        {
            int count = RamOverlap.ActiveCount(unit, models, @base, j, epsilon);
            if (count == 0)
                continue;
            for (int m = 0; m < models.Length; m++)
            {
                if (!(Math.Abs(unit[models[m]][j] - @base[j]) > (float)epsilon))
                    continue;
                if (count == 1)
                    unique[m]++;
                else
                    shared[m]++;
            }
        }
        var slots = Layout(models.Length);
        for (int m = 0; m < models.Length; m++)
        {
            pass.Add(slots.Shared[m], shared[m]);
            pass.Add(slots.Unique[m], unique[m]);
        }
    }

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        int[] models = InputRules.NonBase(inputs);
        double epsilon = inputs[RamOverlap.Epsilon],
            r = inputs[R],
            alpha = inputs[Alpha];
        var stats = StatisticsOf(inputs);
        var slots = Layout(models.Length);
        var scales = new double[models.Length];
        for (int m = 0; m < models.Length; m++)
        {
            // Counts are whole numbers, exact in double.
            double rho = stats[slots.Shared[m]] / Math.Max(stats[slots.Unique[m]], epsilon);
            scales[m] = 1 + r * Math.Min(Math.Max(rho, 0), alpha); // torch's clamp(min, max): max wins
        }
        RamOverlap.Merge(inputs, models, epsilon, scales, output);
    }
}

/// <summary>The active-entry overlap shared by <see cref="Ram"/> and <see cref="RamPlusTl"/>.</summary>
/// <remarks>Magnitudes are compared with epsilon rounded to float32, as torch compares a float32 tensor with a
/// scalar.</remarks>
public static class RamOverlap
{
    /// <summary>An entry of a task vector is active (counts as changed) when its magnitude exceeds epsilon.</summary>
    public static readonly NumberParameter Epsilon = MethodParameter.Number(
        "epsilon",
        ParameterScope.Global,
        1e-5,
        "An entry of a task vector is active (counts as changed) when its magnitude exceeds epsilon.",
        NumberRange.NonNegative
    );

    /// <summary>How many models change entry <paramref name="j"/> by more than epsilon.</summary>
    public static int ActiveCount(MergeInputs inputs, int[] models, ReadOnlySpan<float> @base, int j, double epsilon)
    {
        int count = 0;
        foreach (int i in models)
            if (Math.Abs(inputs[i][j] - @base[j]) > (float)epsilon)
                count++;
        return count;
    }

    /// <summary>
    /// base + Σ over active models of τᵢ (times <paramref name="uniqueScales"/>[i], if given) where one model is
    /// active, or of τᵢ / (number active) where several are.
    /// </summary>
    public static void Merge(
        MergeInputs inputs,
        int[] models,
        double epsilon,
        double[]? uniqueScales,
        Span<float> output
    )
    {
        var @base = inputs[inputs.BaseIndex];
        for (int j = 0; j < output.Length; j++)
        {
            int count = ActiveCount(inputs, models, @base, j, epsilon);
            double sum = 0;
            for (int m = 0; m < models.Length; m++)
            {
                float task = inputs[models[m]][j] - @base[j];
                if (!(Math.Abs(task) > (float)epsilon))
                    continue;
                sum += count == 1 ? task * (uniqueScales?[m] ?? 1) : (double)task / count;
            }
            output[j] = (float)(@base[j] + sum);
        }
    }
}
