namespace Alloy.Tests.Recipes;

/// <summary>
/// mergekit's example configs (from its examples/ folder and README), verbatim: parsed by
/// <see cref="ExampleConfigTests"/>, round-tripped through <see cref="Alloy.Recipes.Yaml.RecipeWriter"/> by
/// <see cref="RecipeRoundTripTests"/>.
/// </summary>
public static class MergekitExamples
{
    public const string Ties = """
        models:
          - model: psmathur/orca_mini_v3_13b
            parameters:
              density: [1, 0.7, 0.1] # density gradient
              weight: 1.0
          - model: garage-bAInd/Platypus2-13B
            parameters:
              density: 0.5
              weight: [0, 0.3, 0.7, 1] # weight gradient
          - model: WizardLM/WizardMath-13B-V1.0
            parameters:
              density: 0.33
              weight:
                - filter: mlp
                  value: 0.5
                - value: 0
        merge_method: ties
        base_model: TheBloke/Llama-2-13B-fp16
        parameters:
          normalize: true
          int8_mask: true
        dtype: float16
        """;

    public const string GradientSlerp = """
        slices:
          - sources:
              - model: psmathur/orca_mini_v3_13b
                layer_range: [0, 40]
              - model: garage-bAInd/Platypus2-13B
                layer_range: [0, 40]
        # or, the equivalent models: syntax:
        # models:
        #   - model: psmathur/orca_mini_v3_13b
        #   - model: garage-bAInd/Platypus2-13B
        merge_method: slerp
        base_model: psmathur/orca_mini_v3_13b
        parameters:
          t:
            - filter: self_attn
              value: [0, 0.5, 0.3, 0.7, 1]
            - filter: mlp
              value: [1, 0.5, 0.7, 0.3, 0]
            - value: 0.5 # fallback for rest of tensors
        dtype: float16
        """;

    public const string OrcaminiPlaty44Layer = """
        slices:
          - sources:
            - model: psmathur/orca_mini_v3_13b
              layer_range: [0, 24]
          - sources:
            - model: garage-bAInd/Platypus2-13B
              layer_range: [20, 40]
        merge_method: passthrough
        dtype: float16
        """;

    public const string BioMerge = """
        models:
          - model: mistralai/Mistral-7B-Instruct-v0.2
            parameters:
              density: 0.5
              weight: 0.5
          - model: BioMistral/BioMistral-7B
            parameters:
              density: 0.5
              weight: 0.5
        merge_method: ties
        base_model: mistralai/Mistral-7B-v0.1
        parameters:
          normalize: false
          int8_mask: true
        dtype: float16
        """;

    public const string Linear = """
        models:
          - model: psmathur/orca_mini_v3_13b
            parameters:
              weight: 1.0
          - model: WizardLM/WizardLM-13B-V1.2
            parameters:
              weight: 0.3
          - model: garage-bAInd/Platypus2-13B
            parameters:
              weight: 0.5
        merge_method: linear
        dtype: float16
        """;

    public const string ArceeFusion = """
        models:
          - model: model_a
          - model: model_b
        merge_method: arcee_fusion
        base_model: model_a
        dtype: bfloat16
        """;

    public const string Tokenizer = """
        merge_method: linear
        models:
          - model: chatml_model
            parameters: {weight: 0.5}
          - model: llama3_model
            parameters: {weight: 0.5}
        tokenizer:
          source: union
          tokens:
            <|im_start|>:
              source: "chatml_model"
            <|start_header_id|>:
              source: "llama3_model"
              force: true
            <|renamed_token|>:
              source:
                kind: "model_token"
                model: "path/to/model"
                token: "<|original_token|>"  # or token_id: 1234
            <|unused|>:
              source:
                kind: "zero"
          pad_to_multiple_of: null
        """;

    public const string TokenizerTokenIdAndPadding = """
        merge_method: linear
        models: [{model: a}]
        tokenizer:
          source: base
          tokens:
            <x>: {source: {kind: model_token, model: b, token_id: 1234}}
            <y>:
          pad_to_multiple_of: 64
        """;

    public const string PassthroughScale = """
        merge_method: passthrough
        models:
          - model: model_a
            parameters:
              scale:
                - filter: o_proj
                  value: 0
                - value: 1
        """;

    public static IReadOnlyList<(string Name, string Text)> All { get; } =
    [
        (nameof(Ties), Ties),
        (nameof(GradientSlerp), GradientSlerp),
        (nameof(OrcaminiPlaty44Layer), OrcaminiPlaty44Layer),
        (nameof(BioMerge), BioMerge),
        (nameof(Linear), Linear),
        (nameof(ArceeFusion), ArceeFusion),
        (nameof(Tokenizer), Tokenizer),
        (nameof(TokenizerTokenIdAndPadding), TokenizerTokenIdAndPadding),
        (nameof(PassthroughScale), PassthroughScale),
    ];
}
