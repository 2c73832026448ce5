namespace Alloy.Methods.TaskVectors;

/// <summary>
/// MagMax (Marczak et al., ECCV 2024, arXiv:2407.06322): per entry, the task vector with the largest magnitude, scaled
/// and added to the base: θ = θ₀ + scaling_factor·τ_max. Equal magnitudes go to the later model (the official code's
/// ≥).
/// </summary>
public sealed class MagMax()
    : MergeMethod(
        new("magmax", "MagMax", "Per entry, the task vector of largest magnitude, scaled.")
        {
            Paper = "https://arxiv.org/abs/2407.06322",
            BaseModel = BaseModelUse.Required,
            Parameters = [ScalingFactor],
        }
    )
{
    public static readonly NumberParameter ScalingFactor = MethodParameter.Number(
        "scaling_factor",
        ParameterScope.Global,
        0.5,
        "Scale of the selected task vector (FusionBench's name; 0.5 as in the official 8-task script)."
    );

    public override int ScratchBuffers(int inputCount) => 0;

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        var @base = inputs[inputs.BaseIndex];
        // Later in the recipe wins ties, so visit the models in recipe order.
        int[] models = InputRules.NonBase(inputs).OrderBy(i => inputs.ModelIndices[i]).ToArray();
        float scale = (float)inputs[ScalingFactor];
        for (int j = 0; j < output.Length; j++)
        {
            float best = 0;
            bool any = false;
            foreach (int i in models)
            {
                float task = inputs[i][j] - @base[j];
                if (!any || Math.Abs(task) >= Math.Abs(best))
                    best = task;
                any = true;
            }
            output[j] = @base[j] + scale * best;
        }
    }
}
