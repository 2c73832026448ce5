using Alloy.Methods;
using Alloy.Planning;
using Alloy.Recipes;
using Alloy.Recipes.Yaml;
using Alloy.Tensors;
using Alloy.Tests.Support;
using CsCheck;

namespace Alloy.Tests.Recipes;

/// <summary>
/// Recipes as values: YAML → recipe → YAML → recipe keeps every key, and → plan gives the same plan, for mergekit's
/// example configs, every file in examples/, and random recipes of every method (a property test); a recipe built in
/// code merges the same model as its YAML.
/// </summary>
public sealed class RecipeRoundTripTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public RecipeRoundTripTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    public static TheoryData<string> MergekitExampleNames() => [.. MergekitExamples.All.Select(e => e.Name)];

    [Theory]
    [MemberData(nameof(MergekitExampleNames))]
    public void Mergekit_examples_survive_writing_and_reading(string name)
    {
        var original = RecipeTestHelpers.Parse(MergekitExamples.All.Single(e => e.Name == name).Text);
        var written = RecipeWriter.Write(original);
        var read = RecipeTestHelpers.Parse(written);
        AssertSameRecipe(original, read);
        Assert.Equal(written, RecipeWriter.Write(read));
    }

    private static string Examples() => Path.Combine(EndToEnd.ExampleTests.RepositoryRoot, "examples");

    public static TheoryData<string> ExampleFiles() =>
        [.. Directory.GetFiles(Examples(), "*.yml").Select(f => Path.GetFileName(f)).Order()];

    [Theory]
    [MemberData(nameof(ExampleFiles))]
    public void Example_configs_plan_the_same_after_writing_and_reading(string file)
    {
        var path = Path.Combine(Examples(), file);
        var original = RecipeParser.ParseFile(path, Diagnostics.Silent());
        // The written YAML sits in another folder: relative model paths resolve from the recipe's folder as before.
        var read = RecipeParser.Parse(RecipeWriter.Write(original), "written.yml", Diagnostics.Silent()) with
        {
            Folder = original.Folder,
        };
        AssertSameRecipe(original, read);
        Assert.Equal(Plan(original), Plan(read));
    }

    /// <summary>The plan's description, or the error that stopped it.</summary>
    private static string Plan(MergeRecipe recipe)
    {
        try
        {
            using var session = MergeSession.Open(recipe);
            return session.Plan.Describe();
        }
        catch (AlloyException e)
        {
            return "error: " + e.Message;
        }
    }

    [Fact]
    public void Random_recipes_of_every_method_plan_the_same_after_writing_and_reading()
    {
        int planned = 0;
        RandomRecipe()
            .Sample(
                recipe =>
                {
                    var written = RecipeWriter.Write(recipe);
                    var read = RecipeParser.Parse(written, "written.yml", Diagnostics.Silent());
                    AssertSameRecipe(recipe, read);
                    var expected = Plan(recipe);
                    Assert.Equal(expected, Plan(read));
                    if (!expected.StartsWith("error:", StringComparison.Ordinal))
                        planned++;
                },
                iter: 150,
                seed: "0N0XIzNsQ0O2"
            );
        // Most random recipes plan (the rest are refused the same way, e.g. weights that sum to zero).
        Assert.True(planned > 100, $"only {planned} of 150 random recipes planned");
    }

    /// <summary>
    /// Random recipes over the test models: any built-in method with the models it takes, models: or slices:, every
    /// declared parameter set or not, with scalars, gradients and filtered values within the declared ranges.
    /// </summary>
    private Gen<MergeRecipe> RandomRecipe() =>
        Gen.Int[0, MethodRegistry.BuiltIn.Count - 1]
            .SelectMany(m => Gen.Int[0, int.MaxValue].Select(seed => Build(MethodRegistry.BuiltIn[m], seed)));

    private MergeRecipe Build(MergeMethod method, int seed)
    {
        var random = new Random(seed);
        double Uniform(double low, double high) => low + random.NextDouble() * (high - low);
        ParameterValue? Value(MethodParameter p)
        {
            if (random.Next(3) == 0)
                return null; // not set: the default
            ParameterValue One() =>
                p switch
                {
                    NumberParameter n => Uniform(
                        double.IsFinite(n.Range.Minimum) ? n.Range.Minimum : -1,
                        double.IsFinite(n.Range.Maximum) ? n.Range.Maximum : 2
                    )
                        is var v
                    && n.Range.Contains(v)
                        ? v
                        : (n.Range.Minimum + n.Range.Maximum) / 2,
                    IntegerParameter i => Math.Max(i.Minimum, 0) + random.Next(3),
                    BooleanParameter => random.Next(2) == 1,
                    ChoiceParameter c => c.Names[random.Next(c.Names.Count)],
                    _ => "file.bin",
                };
            if (p is not NumberParameter || random.Next(3) > 0)
                return One();
            return random.Next(2) == 0
                ? new ParameterValue.Gradient([
                    .. Enumerable.Range(0, 2 + random.Next(3)).Select(_ => ((ParameterValue.Scalar)One()).Value),
                ])
                : ParameterValue.Filtered(("mlp", One()), (null, One()));
        }
        var d = method.Declaration;
        var fineTunes = d.Name switch
        {
            "passthrough" => 1,
            "slerp" or "nearswap" or "arcee_fusion" or "nuslerp" => d.BaseModel == BaseModelUse.Optional ? 2 : 1,
            _ => 1 + random.Next(3),
        };
        var builder = new RecipeBuilder(d.Name);
        bool usesBase =
            d.BaseModel == BaseModelUse.Required
            || (d.BaseModel == BaseModelUse.Optional && random.Next(2) == 0 && d.Name != "nuslerp");
        if (usesBase)
            builder.BaseModel(_models.Base);
        var models = _models.FineTunes.Take(fineTunes).ToList();
        if (usesBase && d.Name is "slerp" or "nearswap" or "arcee_fusion")
            models.Insert(0, _models.Base);
        ParameterSettings PerModel()
        {
            var settings = new ParameterSettings();
            foreach (var p in d.Parameters.Where(p => p.Scope == ParameterScope.PerModel))
                if ((p.Required ? One(p) : Value(p)) is { } v)
                    settings[p.Name] = v;
            return settings;
        }
        ParameterValue One(MethodParameter p) =>
            Value(p) ?? (p is NumberParameter n && n.Range.Contains(1) ? 1.0 : 0.5);
        if (random.Next(3) == 0)
        {
            // Slices of the same layer ranges, the base model among the sources where the method uses one.
            int start = random.Next(2),
                end = start + 1 + random.Next(4 - start);
            builder.Slice(s =>
            {
                if (usesBase && !models.Contains(_models.Base))
                    s.Source(_models.Base, start, end);
                foreach (var m in models)
                    s.Source(m, start, end, PerModel());
            });
        }
        else
        {
            foreach (var m in models)
                builder.Model(m, PerModel());
        }
        foreach (var p in d.Parameters.Where(p => p.Scope == ParameterScope.Global))
            if ((p.Required ? One(p) : Value(p)) is { } v)
                builder.Parameter(p.Name, v);
        builder.DType(new[] { DType.F32, DType.BF16, DType.F16 }[random.Next(3)]);
        return builder.Build();
    }

    /// <summary>Every key of two recipes agrees.</summary>
    private static void AssertSameRecipe(MergeRecipe expected, MergeRecipe actual)
    {
        Assert.Equal(expected.Method, actual.Method);
        Assert.Equal(expected.BaseModel, actual.BaseModel);
        Assert.Equal(expected.DType, actual.DType);
        Assert.Equal(expected.OutDType, actual.OutDType);
        Assert.Equal(expected.ChatTemplate, actual.ChatTemplate);
        Assert.Equal(expected.Name, actual.Name);
        Assert.Equal(expected.Models?.Select(m => m.Model), actual.Models?.Select(m => m.Model));
        Assert.Equal(expected.Slices?.Count, actual.Slices?.Count);
        for (int s = 0; s < (expected.Slices?.Count ?? 0); s++)
        {
            Assert.Equal(expected.Slices![s].BaseModel, actual.Slices![s].BaseModel);
            Assert.Equal(
                expected.Slices[s].Sources.Select(x => (x.Model, x.Range)),
                actual.Slices[s].Sources.Select(x => (x.Model, x.Range))
            );
        }
        var blocks = expected.ParameterBlocks().Zip(actual.ParameterBlocks()).ToList();
        Assert.Equal(expected.ParameterBlocks().Count(), blocks.Count);
        foreach (var (a, b) in blocks)
            Assert.Equal(a.Settings.Select(x => (x.Name, x.Value)), b.Settings.Select(x => (x.Name, x.Value)));
        Assert.Equal(expected.Tokenizer is null, actual.Tokenizer is null);
        if (expected.Tokenizer is { } t)
        {
            var u = actual.Tokenizer!;
            Assert.Equal(
                (t.Kind, t.Model, t.PadToMultipleOf, t.Legacy),
                (u.Kind, u.Model, u.PadToMultipleOf, u.Legacy)
            );
            Assert.Equal(t.Tokens.Select(x => (x.Key, x.Value)), u.Tokens.Select(x => (x.Key, x.Value)));
        }
    }

    [Fact]
    public void A_recipe_built_in_code_merges_the_model_its_yaml_merges()
    {
        var recipe = new RecipeBuilder("ties")
            .BaseModel(_models.Base)
            .Model(_models.FineTunes[0], new() { ["weight"] = 1.0, ["density"] = new[] { 1, 0.7, 0.1 } })
            .Model(
                _models.FineTunes[1],
                new() { ["weight"] = ParameterValue.Filtered(("mlp", 0.5), (null, 0.0)), ["density"] = 0.5 }
            )
            .Parameter("normalize", true)
            .DType(DType.BF16)
            .Build();
        Assert.Null(recipe.Text);
        var yaml = _work.Write("ties.yml", recipe.ToYaml());
        Assert.Contains("normalize: true", File.ReadAllText(yaml));

        Merger.Run(recipe, _work["from-code"], new MergeOptions(), Diagnostics.Silent());
        AlloyCli.Merge(yaml, _work["from-yaml"]);
        var fromCode = TestCheckpoints.ReadAll(_work["from-code"]);
        var fromYaml = TestCheckpoints.ReadAll(_work["from-yaml"]);
        Assert.Equal(fromYaml.Keys.Order(), fromCode.Keys.Order());
        foreach (var (name, values) in fromYaml)
            Assert.Equal(values, fromCode[name]);
        // The folder records the recipe as YAML, as for a recipe read from a file.
        Assert.Equal(recipe.ToYaml(), File.ReadAllText(Path.Combine(_work["from-code"], "mergekit_config.yml")));
    }

    [Fact]
    public void Recipes_built_in_code_obey_the_same_rules_as_yaml()
    {
        Assert.Contains(
            "exactly one of 'models' or 'slices'",
            Assert.Throws<AlloyException>(() => new RecipeBuilder("linear").Build()).Message
        );
        Assert.Contains(
            "exactly one of 'models' or 'slices'",
            Assert
                .Throws<AlloyException>(() =>
                    new RecipeBuilder("linear").Model("a").Slice(s => s.Source("a", 0, 1)).Build()
                )
                .Message
        );
        Assert.Contains(
            "All inputs to a slice must contain the same number of layers",
            Assert
                .Throws<AlloyException>(() =>
                    new RecipeBuilder("linear").Slice(s => s.Source("a", 0, 2).Source("b", 0, 3)).Build()
                )
                .Message
        );
        Assert.Contains(
            "Invalid chat template 'short'",
            Assert
                .Throws<AlloyException>(() => new RecipeBuilder("linear").Model("a").ChatTemplate("short").Build())
                .Message
        );
        Assert.Contains(
            "'dtype: int64' is not supported",
            Assert.Throws<AlloyException>(() => new RecipeBuilder("linear").Model("a").DType(DType.I64).Build()).Message
        );
        // Parameters are checked against the method when the recipe is planned, as YAML's are, and say where they are.
        var recipe = new RecipeBuilder("ties")
            .BaseModel(_models.Base)
            .Model(_models.FineTunes[0], new() { ["weight"] = 1.0, ["density"] = 50.0 })
            .Build();
        var error = Assert.Throws<AlloyException>(() => MergeSession.Open(recipe));
        Assert.Equal(
            $"recipe built in code (model '{_models.FineTunes[0]}'): parameter 'density' of ties: 50 is outside the "
                + $"range; it takes a number from 0 to 1",
            error.Message
        );
    }

    [Fact]
    public void Yaml_strings_that_read_as_other_types_are_quoted()
    {
        foreach (
            var text in new[]
            {
                "yes",
                "null",
                "~",
                "2026-12-07",
                "a: b",
                "#x",
                "- x",
                "",
                " padded",
                "0x1F",
                "[a]",
                "new\nline",
                "tab\tbed",
            }
        )
        {
            var recipe = new RecipeBuilder("linear").Model("a").Parameter("mode", text).Build();
            var read = RecipeTestHelpers.Parse(recipe.ToYaml());
            Assert.Equal(new ParameterValue.Text(text), read.Parameters["mode"]);
        }
        foreach (var number in new[] { 1e-5, 0.1, 1.0 / 3, -2.5e300, 123456789012345.0, 0.0 })
        {
            var read = RecipeTestHelpers.Parse(
                new RecipeBuilder("linear").Model("a").Parameter("w", number).Build().ToYaml()
            );
            Assert.Equal(new ParameterValue.Scalar(number), read.Parameters["w"]);
        }
    }
}
