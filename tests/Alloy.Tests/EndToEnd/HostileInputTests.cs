using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Alloy.Tests.Support;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// Inputs a fuzzer found to crash the process or end in an internal error (issue 14): each must get the one-line
/// error and exit code 1 of any bad input, naming the file and, where there is one, the place.
/// </summary>
public sealed class HostileInputTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public HostileInputTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    private string Out => _work["out"];

    [Theory]
    [InlineData("[", 40_000)]
    [InlineData("{a: ", 20_000)]
    public void Deeply_nested_yaml_is_refused_at_the_depth_limit(string opener, int count)
    {
        // Once enough to overflow the stack of a recursive reader (the process died with exit code 134).
        var config = _work.Write(
            "config.yml",
            "merge_method: linear\nmodels: " + string.Concat(Enumerable.Repeat(opener, count)) + "\n"
        );
        var result = AlloyCli.Fails(config, Out, "nested more than 64 levels deep");
        Assert.Contains("config.yml:2:", result.Stderr);
    }

    [Fact]
    public void Deeply_nested_yaml_blocks_are_refused_too()
    {
        var items = string.Concat(Enumerable.Range(0, 100).Select(i => new string(' ', 2 * i) + "- \n"));
        var config = _work.Write("config.yml", $"merge_method: linear\nmodels:\n{items}");
        var result = AlloyCli.Fails(config, Out, "nested more than 64 levels deep");
        Assert.Contains("config.yml:66:", result.Stderr);
    }

    [Theory]
    [InlineData("models: [{model: BASE}\n]\nparameters: {weight: [1\n0]}\n", "config.yml:5:1:")]
    [InlineData("models:\n  - model: BASE\n    parameters:\n      weight: [1,\n0]\n", "config.yml:6:1:")]
    [InlineData("models:\n  - model: BASE\n    parameters: {weight: 1,\n    density: 1}\n", "config.yml:5:5:")]
    public void A_flow_list_continued_without_indentation_is_a_syntax_error_with_its_place(string yaml, string place)
    {
        // YAML 1.2 (YamlDotNet) forbids it; PyYAML would read `[1` + `0]` as the string '1 0', almost never meant.
        var config = _work.Write("config.yml", "merge_method: linear\n" + yaml.Replace("BASE", _models.Base));
        var result = AlloyCli.Fails(
            config,
            Out,
            "YAML syntax error: a line inside '[...]' or '{...}' must be indented"
        );
        Assert.Contains(place, result.Stderr);
    }

    [Fact]
    public void A_flow_list_continued_with_indentation_still_reads()
    {
        var config = _work.Write(
            "config.yml",
            $"merge_method: linear\nmodels: [{{model: {_models.Base}}},\n  {{model: {_models.FineTunes[0]}}}]\n"
                + "parameters: {weight: [1,\n  0.5]}\n"
        );
        var result = AlloyCli.Run("plan", config);
        Assert.True(result.ExitCode == 0, result.Stderr);
    }

    // ---- JSON ----------------------------------------------------------------------------------------------------

    /// <summary>A copy of fine-tune 1 that a test may damage.</summary>
    private string CopyOfModel()
    {
        var target = _work["damaged"];
        Directory.CreateDirectory(target);
        foreach (var file in Directory.GetFiles(_models.FineTunes[0]))
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        return target;
    }

    private string Linear(string first, string extra = "") =>
        _work.Write(
            "config.yml",
            $$"""
            merge_method: linear
            models:
              - model: "{{first}}"
                parameters: {weight: 1}
              - model: "{{_models.FineTunes[1]}}"
                parameters: {weight: 1}
            {{extra}}
            """
        );

    /// <summary>A PEFT adapter for q_proj of layer 0, with this adapter_config.json.</summary>
    private string Adapter(string config, long[]? loraAShape = null)
    {
        var folder = _work["adapter"];
        long[] shapeA = loraAShape ?? [2, 16];
        TestCheckpoints.Write(
            folder,
            null,
            [
                ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", shapeA, new float[32]),
                ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", [16, 2], new float[32]),
            ]
        );
        File.Move(Path.Combine(folder, "model.safetensors"), Path.Combine(folder, "adapter_model.safetensors"));
        File.WriteAllText(Path.Combine(folder, "adapter_config.json"), config);
        return folder;
    }

    /// <summary>
    /// A merge that reads <paramref name="file"/> after <paramref name="entries"/> (JSON text) was put at the start of
    /// its top-level object; returns the recipe.
    /// </summary>
    private string RecipeReading(string file, string entries)
    {
        if (file == "adapter_config.json")
            return Linear($"{_models.FineTunes[0]}+{Adapter("{" + entries + ", \"peft_type\": \"LORA\"}")}");
        var model = CopyOfModel();
        var path = Path.Combine(model, file);
        var text = File.Exists(path) ? File.ReadAllText(path) : "{}";
        File.WriteAllText(path, "{" + entries + (text.Trim() == "{}" ? "" : ", ") + text.Trim()[1..]);
        // Tokenizer files are read only when the recipe builds a vocabulary.
        return Linear(model, file.StartsWith("tokenizer", StringComparison.Ordinal) ? "tokenizer_source: union" : "");
    }

    public static TheoryData<string> JsonFiles =>
        [
            "config.json",
            "model.safetensors.index.json",
            "adapter_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ];

    [Theory]
    [MemberData(nameof(JsonFiles))]
    public void A_lone_surrogate_escape_is_refused_naming_the_file_and_the_string(string file)
    {
        var recipe = RecipeReading(file, """ "name": "a\ud800b" """);
        AlloyCli.Fails(recipe, Out, $"{file}: the string at 'name' is not valid Unicode (a lone surrogate");
    }

    [Theory]
    [MemberData(nameof(JsonFiles))]
    public void A_key_that_appears_twice_is_refused_naming_the_file_and_the_key(string file)
    {
        var recipe = RecipeReading(file, """ "name": {"x": 1, "x": 2}""");
        AlloyCli.Fails(recipe, Out, $"{file}: key 'x' appears twice in 'name'");
    }

    [Theory]
    [MemberData(nameof(JsonFiles))]
    public void Json_nested_too_deeply_is_refused_naming_the_file_and_the_limit(string file)
    {
        var recipe = RecipeReading(file, "\"deep\": " + new string('[', 40_000) + new string(']', 40_000));
        AlloyCli.Fails(recipe, Out, $"{file}: invalid JSON at line 1, column 73: nested more than 64 levels deep");
    }

    /// <summary>A copy of fine-tune 1 whose model.safetensors has this header (and no data).</summary>
    private string ModelWithHeader(string header)
    {
        var model = CopyOfModel();
        var bytes = Encoding.UTF8.GetBytes(header);
        var file = new byte[8 + bytes.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)bytes.Length);
        bytes.CopyTo(file, 8);
        File.WriteAllBytes(Path.Combine(model, "model.safetensors"), file);
        return model;
    }

    [Theory]
    [InlineData("""{"\udc00": {}}""", "header: a key in the top level is not valid Unicode")]
    [InlineData("""{"w": {"dtype": "F\ud800"}}""", "header: the string at 'w.dtype' is not valid Unicode")]
    [InlineData("""{"w": {}, "w": {}}""", "header: key 'w' appears twice")]
    [InlineData("""{"__metadata__": {"a": "1", "a": "2"}}""", "header: key 'a' appears twice in '__metadata__'")]
    public void A_safetensors_header_with_bad_json_names_the_file(string header, string expected)
    {
        var result = AlloyCli.Fails(Linear(ModelWithHeader(header)), Out, expected);
        Assert.Contains("model.safetensors: header:", result.Stderr);
    }

    [Fact]
    public void A_safetensors_header_nested_too_deeply_names_the_limit()
    {
        var header = "{\"w\": " + new string('[', 30_000) + new string(']', 30_000) + "}";
        AlloyCli.Fails(Linear(ModelWithHeader(header)), Out, "header: invalid JSON at line 1, column 70: nested more");
    }

    // ---- typed fields --------------------------------------------------------------------------------------------

    [Theory]
    [InlineData("\"use_rslora\": \"yes\"", "'use_rslora' must be true or false, not \"yes\"")]
    [InlineData("\"fan_in_fan_out\": 1", "'fan_in_fan_out' must be true or false, not 1")]
    [InlineData("\"peft_type\": [\"LORA\"]", "'peft_type' must be a string, not [\"LORA\"]")]
    [InlineData("\"lora_alpha\": \"16\"", "'lora_alpha' must be a finite number, not \"16\"")]
    [InlineData("\"lora_alpha\": 1e999", "'lora_alpha' must be a finite number, not 1e999")]
    [InlineData("\"alpha_pattern\": [1]", "'alpha_pattern' must be an object, not [1]")]
    [InlineData("\"alpha_pattern\": {\"q_proj\": true}", "alpha_pattern 'q_proj' must be a number, not true")]
    [InlineData("\"alpha_pattern\": {\"q_(proj\": 4}", "alpha_pattern key 'q_(proj' is not a valid regular expression")]
    [InlineData("\"rank_pattern\": {\"[\": 4}", "rank_pattern key '[' is not a valid regular expression")]
    public void An_adapter_setting_of_the_wrong_type_names_the_file_and_the_setting(string entry, string expected)
    {
        var adapter = Adapter("{" + entry + "}");
        var result = AlloyCli.Fails(Linear($"{_models.FineTunes[0]}+{adapter}"), Out, expected);
        Assert.Contains("adapter_config.json: ", result.Stderr);
    }

    [Fact]
    public void An_alpha_pattern_that_backtracks_without_end_fails_in_a_second_instead_of_hanging()
    {
        // Nested quantifiers over "model.layers.0.self_attn.q_proj": exponential backtracking, as no match exists.
        var adapter = Adapter(
            """{"peft_type": "LORA", "r": 2, "lora_alpha": 2, "alpha_pattern": {"([a-z_.0-9]+)+#": 4}}"""
        );
        var clock = System.Diagnostics.Stopwatch.StartNew();
        AlloyCli.Fails(
            Linear($"{_models.FineTunes[0]}+{adapter}"),
            Out,
            "takes over 1 s to match 'model.layers.0.self_attn.q_proj'; simplify the pattern"
        );
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed}");
    }

    [Fact]
    public void A_one_dimensional_lora_a_is_refused_with_the_shapes()
    {
        var adapter = Adapter("""{"peft_type": "LORA", "r": 2, "lora_alpha": 2}""", loraAShape: [32]);
        AlloyCli.Fails(
            Linear($"{_models.FineTunes[0]}+{adapter}"),
            Out,
            "has lora_A [32] and lora_B [16, 2]; both must be matrices"
        );
    }

    [Theory]
    [InlineData("tokenizer_config.json", "\"chat_template\": 5", "'chat_template' must be a string or a list")]
    [InlineData("tokenizer_config.json", "\"chat_template\": [7]", "'chat_template' entries must be")]
    [InlineData(
        "tokenizer.json",
        "\"added_tokens\": [{\"id\": 300, \"content\": \"<x>\", \"special\": \"yes\"}]",
        "added token 300: 'special' must be true or false, not \"yes\""
    )]
    public void A_tokenizer_setting_of_the_wrong_type_names_the_file_and_the_setting(
        string file,
        string entry,
        string expected
    )
    {
        var model = CopyOfModel();
        var path = Path.Combine(model, file);
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        foreach (var (key, value) in JsonNode.Parse("{" + entry + "}")!.AsObject())
            json[key] = value?.DeepClone();
        File.WriteAllText(path, json.ToJsonString());
        var result = AlloyCli.Fails(Linear(model, "tokenizer_source: union"), Out, expected);
        Assert.Contains($"{file}: ", result.Stderr);
    }
}
