namespace Alloy.Methods.TaskVectors;

/// <summary>
/// ExPO, model extrapolation (Zheng et al., <i>Weak-to-Strong Extrapolation Expedites Alignment</i>, arXiv:2404.16792):
/// θ = θ_ft + α·(θ_ft − θ_pre), with θ_pre the base and θ_ft the fine-tune (the plain mean of the fine-tunes when there
/// are several, as FusionBench does).
/// </summary>
public sealed class Expo()
    : MergeMethod(
        new("expo", "ExPO", "Extrapolates past the fine-tune, away from the base: θ_ft + α·(θ_ft − θ_base).")
        {
            Paper = "https://arxiv.org/abs/2404.16792",
            BaseModel = BaseModelUse.Required,
            Parameters = [ExtrapolationFactor],
        }
    )
{
    public static readonly NumberParameter ExtrapolationFactor = MethodParameter.Number(
        "extrapolation_factor",
        ParameterScope.Global,
        0.1,
        "α: how far past the fine-tune to go along (fine-tune − base); 0 returns the fine-tune."
    );

    public override int ScratchBuffers(int inputCount) => 0;

    public override void Merge(MergeInputs inputs, Span<float> output)
    {
        int[] models = InputRules.FineTunesOrCopyBase(inputs, output);
        if (models.Length == 0)
            return;
        var @base = inputs[inputs.BaseIndex];
        double alpha = inputs[ExtrapolationFactor];
        for (int j = 0; j < output.Length; j++)
        {
            double sum = 0;
            foreach (int i in models)
                sum += inputs[i][j];
            double fineTune = sum / models.Length;
            output[j] = (float)(fineTune + alpha * (fineTune - @base[j]));
        }
    }
}
