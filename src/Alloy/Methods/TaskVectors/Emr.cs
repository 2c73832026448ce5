namespace Alloy.Methods.TaskVectors;

/// <summary>
/// EMR-Merging, Elect, Mask &amp; Rescale (Huang et al., NeurIPS 2024, arXiv:2405.17461). The unified model: per entry,
/// elect γ = +1 where Σₜτₜ &gt; 0 and −1 otherwise (zero counts as negative, as the reference code does), and take the
/// largest magnitude among the task vectors agreeing with γ: out = b + γ·maxₜ |τₜ·[τₜγ &gt; 0]|. With
/// <c>write_task_masks</c>, also each task's mask Mₜ = [τₜγ &gt; 0] (side tensors, packed bits) and rescaler
/// sₜ = Σ_tensors mean|τₜ| / Σ_tensors mean|Mₜ ⊙ τ_uni| (the reference code's sums of per-tensor means), which
/// rebuild task t's model as b + sₜ·Mₜ ⊙ τ_uni; see <see cref="EmrTaskFiles"/>.
/// </summary>
public sealed class Emr()
    : MergeMethod(
        new(
            "emr",
            "EMR-Merging",
            "Elects a sign per entry and keeps the largest agreeing magnitude; optionally each task's mask and "
                + "rescaler."
        )
        {
            Paper = "https://arxiv.org/abs/2405.17461",
            BaseModel = BaseModelUse.Required,
            Parameters = [WriteTaskMasks],
        }
    )
{
    /// <summary>Tuning-free: the one parameter only asks for the per-task masks and rescalers.</summary>
    public static readonly BooleanParameter WriteTaskMasks = MethodParameter.Boolean(
        "write_task_masks",
        ParameterScope.Global,
        false,
        $"Also write each task's mask and rescaler into {EmrTaskFiles.Folder}/ beside the unified model, to rebuild "
            + $"each fine-tune's model (one bit per entry per task). One value for the whole merge."
    );

    public override int ScratchBuffers(int inputCount) => 0;

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        var @base = inputs[inputs.BaseIndex];
        int[] models = InputRules.NonBase(inputs);
        var side = inputs.Side;
        // Side tensor k is task k's mask (zero until set); totals 2k and 2k + 1 are Σ|τₖ| and Σ|Mₖ ⊙ τ_uni|.
        var taskSums = side is null ? [] : models.Select((_, k) => side.Total(2 * k)).ToArray();
        var maskedSums = side is null ? [] : models.Select((_, k) => side.Total(2 * k + 1)).ToArray();
        for (int j = 0; j < output.Length; j++)
        {
            double sum = 0;
            foreach (int i in models)
                sum += inputs[i][j] - @base[j];
            float sign = sum > 0 ? 1 : -1;
            float largest = 0;
            foreach (int i in models)
            {
                float task = inputs[i][j] - @base[j];
                if (task * sign > 0)
                    largest = Math.Max(largest, Math.Abs(task));
            }
            output[j] = @base[j] + sign * largest;
            if (side is null)
                continue;
            for (int k = 0; k < models.Length; k++)
            {
                float task = inputs[models[k]][j] - @base[j];
                taskSums[k].Add(Math.Abs(task));
                if (task * sign <= 0)
                    continue;
                side.Tensor(k)[j] = 1;
                maskedSums[k].Add(largest); // |τ_uni| where the mask is set
            }
        }
    }

    public override SideOutputPlan? PlanSideOutputs(IReadOnlyList<MergeInputsInfo> tensors) =>
        EmrTaskFiles.Plan(tensors);
}
