using Alloy.Cli;
using Alloy.Methods;
using Alloy.Recipes;
using Alloy.Tests.Support;

namespace Alloy.Tests.Methods;

/// <summary>
/// Methods declared once: a third-party method from its own assembly used from YAML, typed parameters refused at plan
/// time with the range (each kind), <c>alloy methods</c>, and docs generated from the declarations.
/// </summary>
public sealed class MethodDeclarationTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public MethodDeclarationTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    private static string PluginPath => ExamplePlugin.Path;

    [Fact]
    public void A_method_from_a_plugin_assembly_merges_from_yaml()
    {
        Assert.True(File.Exists(PluginPath), $"the example plugin was not built at {PluginPath}");
        var config = _work.Write(
            "trimmed.yml",
            $"""
            merge_method: trimmed_mean
            models:
              - model: {_models.FineTunes[0]}
              - model: {_models.FineTunes[1]}
              - model: {_models.FineTunes[2]}
            parameters:
              trim: 1
              center: median
              scale: 0.5
            dtype: float32
            """
        );
        var result = AlloyCli.Merge(config, _work["out"], "--plugin", PluginPath);
        Assert.Equal("", result.Stderr);

        var inputs = _models.FineTunes.Select(TestCheckpoints.ReadAll).ToList();
        foreach (var (name, actual) in TestCheckpoints.ReadAll(_work["out"]))
        {
            for (int j = 0; j < actual.Length; j++)
            {
                float[] values = [inputs[0][name][j], inputs[1][name][j], inputs[2][name][j]];
                Array.Sort(values);
                Assert.Equal(values[1] * 0.5f, actual[j]);
            }
        }
        // Its declarations serve it as they serve Alloy's own: listed, and its values checked with their ranges.
        var listed = AlloyCli.Run("methods", "trimmed_mean", "--plugin", PluginPath);
        Assert.Equal(0, listed.ExitCode);
        Assert.Contains("center     global  one of: mean, median          mean", listed.Stdout);
        var bad = _work.Write("bad.yml", File.ReadAllText(config).Replace("center: median", "center: mode"));
        AlloyCli.Fails(
            bad,
            _work["bad-out"],
            "bad.yml:8:3: parameter 'center' of trimmed_mean: 'mode' is not one of the choices; it takes one of: "
                + "mean, median",
            "--plugin",
            PluginPath
        );
    }

    [Fact]
    public void Plugins_that_cannot_be_used_are_refused_in_one_line()
    {
        var config = _work.Write(
            "linear.yml",
            $"merge_method: linear\nmodels:\n  - model: {_models.Base}\n    parameters: {{weight: 1}}\n"
        );
        AlloyCli.Fails(config, _work["a"], "plugin 'missing.dll' does not exist", "--plugin", "missing.dll");
        AlloyCli.Fails(
            config,
            _work["b"],
            "is not a .NET assembly Alloy can load",
            "--plugin",
            _work.Write("fake.dll", "not an assembly")
        );
        // Alloy.dll itself holds only methods that are already registered; the CLI holds none.
        var cli = typeof(Alloy.Cli.Program).Assembly.Location;
        AlloyCli.Fails(config, _work["c"], "has no merge methods", "--plugin", cli);
    }

    [Fact]
    public void A_method_registered_in_code_is_used_by_name_and_a_taken_name_is_refused()
    {
        MethodRegistry.Register(new Kinds());
        MethodRegistry.Register(new Kinds()); // the same class again: nothing happens
        Assert.IsType<Kinds>(MethodRegistry.Find("kinds_probe"));
        var clash = Assert.Throws<AlloyException>(() => MethodRegistry.Register(new Impostor()));
        Assert.Contains("merge method 'ties'", clash.Message);
        Assert.Contains("clashes with the method of that name from Alloy", clash.Message);
        Assert.DoesNotContain(MethodRegistry.BuiltIn, m => m.Name == "kinds_probe");
    }

    /// <summary>One parameter of every kind, for the range errors below; the output is input 0.</summary>
    private sealed class Kinds()
        : MergeMethod(
            new("kinds_probe", "Kinds", "A parameter of every kind.")
            {
                Parameters =
                [
                    MethodParameter.Number("ratio", ParameterScope.PerModel, 0.5, "A fraction.", NumberRange.Fraction),
                    MethodParameter.Integer("steps", ParameterScope.Global, 3, "A count.", minimum: 1),
                    MethodParameter.Boolean("flag", ParameterScope.Global, false, "A switch."),
                    MethodParameter.Choice("mode", ParameterScope.Global, "fast", ["fast", "exact"], "A choice."),
                    MethodParameter.Path("table", ParameterScope.Global, "A file.", required: false),
                ],
            }
        )
    {
        public override void Merge(MergeInputs inputs, Span<float> output) => inputs[0].CopyTo(output);
    }

    private sealed class Impostor() : MergeMethod(new("ties", "Not TIES", "Takes a taken name."))
    {
        public override void Merge(MergeInputs inputs, Span<float> output) => inputs[0].CopyTo(output);
    }

    [Theory]
    [InlineData(
        "ratio: 1.5",
        "parameter 'ratio' of kinds_probe: 1.5 is outside the range; it takes a number from 0 to 1"
    )]
    [InlineData("ratio: abc", "parameter 'ratio' of kinds_probe: 'abc' is not a number; it takes a number from 0 to 1")]
    [InlineData(
        "steps: 2.5",
        "parameter 'steps' of kinds_probe: 2.5 is not a whole number; it takes a whole number of at least 1"
    )]
    [InlineData("steps: 0", "parameter 'steps' of kinds_probe: 0 is too small; it takes a whole number of at least 1")]
    [InlineData(
        "steps: [1, 4]",
        "parameter 'steps' of kinds_probe takes one value (a whole number of at least 1), not a gradient across layers"
    )]
    [InlineData("flag: 0.5", "parameter 'flag' of kinds_probe: 0.5 is not true or false; it takes true or false")]
    [InlineData("flag: maybe", "parameter 'flag' of kinds_probe: 'maybe' is not true or false; it takes true or false")]
    [InlineData(
        "mode: slow",
        "parameter 'mode' of kinds_probe: 'slow' is not one of the choices; it takes one of: fast, exact"
    )]
    [InlineData(
        "mode: 2",
        "parameter 'mode' of kinds_probe: 2 is not one of the choices; it takes one of: fast, exact"
    )]
    [InlineData("table: 7", "parameter 'table' of kinds_probe: 7 is not a path; it takes a file or folder path")]
    public void Each_kind_of_parameter_is_refused_at_plan_time_with_what_it_takes(string line, string expected)
    {
        MethodRegistry.Register(new Kinds());
        var config = _work.Write(
            "kinds.yml",
            $"merge_method: kinds_probe\nmodels:\n  - model: {_models.Base}\nparameters:\n  {line}\n"
        );
        AlloyCli.Fails(config, _work["out"], $"kinds.yml:5:3: {expected}");
    }

    [Fact]
    public void Good_values_of_each_kind_resolve_to_typed_values()
    {
        MethodRegistry.Register(new Kinds());
        var recipe = new RecipeBuilder("kinds_probe")
            .Model(_models.Base, new() { ["ratio"] = new[] { 0.0, 1.0 } })
            .Parameter("steps", 4)
            .Parameter("flag", true)
            .Parameter("mode", "exact")
            .Parameter("table", "weights.json")
            .Build();
        using var session = MergeSession.Open(recipe);
        var job = session.Plan.Jobs.First(j => j.Output.Name == "model.layers.3.mlp.up_proj.weight");
        var info = job.Info!;
        var p = session.Plan.Method.Declaration.Parameters;
        Assert.Equal(1.0, info[(NumberParameter)p[0], 0]); // the gradient's end at the last layer
        Assert.Equal(4, info[(IntegerParameter)p[1]]);
        Assert.True(info[(BooleanParameter)p[2]]);
        Assert.Equal("exact", info[(ChoiceParameter)p[3]]);
        Assert.Equal("weights.json", info[(PathParameter)p[4]]);
    }

    [Fact]
    public void A_relative_path_is_found_from_the_recipes_folder_as_model_paths_are()
    {
        MethodRegistry.Register(new Kinds());
        _work.Write("tables/weights.json", "{}");
        var recipe = new RecipeBuilder("kinds_probe")
            .Model(_models.Base)
            .Parameter("table", "tables/weights.json")
            .RelativeTo(_work.Path)
            .Build();
        using var session = MergeSession.Open(recipe);
        var table = (PathParameter)session.Plan.Method.Declaration.Parameter("table")!;
        Assert.Equal(Path.Combine(_work.Path, "tables/weights.json"), session.Plan.FirstMerged[table]);
    }

    [Fact]
    public void A_global_parameter_set_on_a_model_and_another_methods_parameter_are_warnings()
    {
        var config = _work.Write(
            "ties.yml",
            $$"""
            merge_method: ties
            base_model: {{_models.Base}}
            models:
              - model: {{_models.FineTunes[0]}}
                parameters: {weight: 1, lambda: 0.5, t: 0.4, frobnicate: 2}
            """
        );
        var result = AlloyCli.Merge(config, _work["out"]);
        Assert.Contains(
            "ties.yml:5:29: 'lambda' is one value for all models of merge method 'ties'; set on a model it has no "
                + "effect",
            result.Stderr
        );
        // slerp reads t (mergekit configs carry keys of other methods); nothing reads frobnicate, which is no typo of
        // ties's.
        Assert.Contains("ties.yml:5:42: parameter 't' is not used by merge method 'ties'", result.Stderr);
        Assert.Contains("ties.yml:5:50: parameter 'frobnicate' is not used by merge method 'ties'", result.Stderr);
    }

    [Theory]
    [InlineData("densty: 0.5", "densty", "density")]
    [InlineData("Density: 0.5", "Density", "density")]
    [InlineData("lamda: 0.5", "lamda", "lambda")]
    [InlineData("normalise: true", "normalise", "normalize")]
    public void A_misspelt_parameter_of_the_method_is_an_error_naming_the_intended_one(
        string line,
        string typo,
        string intended
    )
    {
        var config = _work.Write(
            "ties.yml",
            $"merge_method: ties\nbase_model: {_models.Base}\nmodels:\n  - model: {_models.FineTunes[0]}\n    "
                + $"parameters:\n      weight: 1\n      {line}\n"
        );
        AlloyCli.Fails(
            config,
            _work["out"],
            $"ties.yml:7:7: unknown parameter '{typo}' of merge method 'ties'; did you mean '{intended}'?"
        );
    }

    [Fact]
    public void An_unknown_method_suggests_the_closest()
    {
        var config = _work.Write(
            "tie.yml",
            $"merge_method: tie\nbase_model: {_models.Base}\nmodels:\n  - model: {_models.FineTunes[0]}\n"
        );
        AlloyCli.Fails(
            config,
            _work["out"],
            "tie.yml:1:15: unknown merge method 'tie'; did you mean 'ties'? (available: adamerging, arcee_fusion, "
        );
    }

    [Fact]
    public void Mistakes_in_the_recipe_are_reported_before_its_models_are_looked_for()
    {
        // Neither model exists: the recipe's own mistake is the error, not the missing model.
        string Recipe(string method, string parameters) =>
            $"merge_method: {method}\nbase_model: not-downloaded/base\nmodels:\n  - model: not-downloaded/a\n"
            + $"    parameters: {{{parameters}}}\n";
        AlloyCli.Fails(_work.Write("tie.yml", Recipe("tie", "weight: 1")), _work["out"], "unknown merge method 'tie'");
        AlloyCli.Fails(
            _work.Write("density.yml", Recipe("ties", "density: 50")),
            _work["out"],
            "density.yml:5:18: parameter 'density' of ties: 50 is outside the range; it takes a number from 0 to 1"
        );
    }

    [Fact]
    public void Alloy_methods_lists_every_method_and_explains_one()
    {
        var list = AlloyCli.Run("methods");
        Assert.Equal(0, list.ExitCode);
        foreach (var method in MethodRegistry.BuiltIn)
            Assert.Contains($"{method.Name} ", list.Stdout);
        var ties = AlloyCli.Run("methods", "ties");
        Assert.Contains("density                   per model  a number from 0 to 1  1", ties.Stdout);
        Assert.Contains("paper: https://arxiv.org/abs/2306.01708", ties.Stdout);
        var typo = AlloyCli.Run("methods", "tie");
        Assert.Equal(ExitCodes.InputError, typo.ExitCode);
        Assert.Equal("error: unknown merge method 'tie'; did you mean 'ties'?", typo.Stderr.Trim());
    }

    [Fact]
    public void Docs_list_every_method_and_parameter_as_declared()
    {
        var docs = File.ReadAllText(Path.Combine(EndToEnd.ExampleTests.RepositoryRoot, "docs", "methods.md"));
        Assert.True(
            MethodCatalog.WithReference(docs, MethodRegistry.BuiltIn) == docs,
            "docs/methods.md's parameter reference differs from the declarations; run: dotnet run --project "
                + "src/Alloy.Cli -- methods --update-docs docs/methods.md"
        );
        var readme = File.ReadAllText(Path.Combine(EndToEnd.ExampleTests.RepositoryRoot, "README.md"));
        var prose = docs[..docs.IndexOf(MethodCatalog.ReferenceHeading, StringComparison.Ordinal)];
        foreach (var method in MethodRegistry.BuiltIn)
        {
            Assert.True(readme.Contains($"`{method.Name}`"), $"README.md does not list method '{method.Name}'");
            Assert.True(
                prose.Contains($"`{method.Name}`"),
                $"docs/methods.md does not describe method '{method.Name}' above its reference"
            );
            foreach (var parameter in method.Parameters)
                Assert.Contains($"| `{parameter.Name}` |", docs);
        }
    }
}
