using Alloy.Recipes;
using static Alloy.Tests.Recipes.RecipeTestHelpers;

namespace Alloy.Tests.Recipes;

/// <summary>Plain scalars mean what PyYAML's safe_load (YAML 1.1) and pydantic make of them.</summary>
public sealed class Yaml11Tests
{
    private static double Value(string literal)
    {
        var r = Parse($"merge_method: ties\nmodels: [{{model: a}}]\nparameters:\n  p: {literal}\n");
        return Scalar(r.Parameters, "p");
    }

    [Theory]
    [InlineData("yes", 1.0)]
    [InlineData("Yes", 1.0)]
    [InlineData("ON", 1.0)]
    [InlineData("true", 1.0)]
    [InlineData("no", 0.0)]
    [InlineData("Off", 0.0)]
    [InlineData("FALSE", 0.0)]
    [InlineData("1e-5", 1e-5)] // a string in YAML 1.1 (no dot); pydantic turns it into a float
    [InlineData("1.0e-5", 1e-5)] // a float
    [InlineData("1.0e5", 1e5)] // a string too (exponent without sign); still a number for pydantic
    [InlineData("\"0.25\"", 0.25)] // quoted numeric string
    [InlineData("0x10", 16)]
    [InlineData("010", 8)] // YAML 1.1 octal
    [InlineData("0b101", 5)]
    [InlineData("1_000", 1000)]
    [InlineData("1:30", 90)] // sexagesimal
    [InlineData("+.5", 0.5)]
    [InlineData("-2", -2)]
    public void Parameter_scalars(string literal, double expected) => Assert.Equal(expected, Value(literal));

    [Fact]
    public void Infinity_and_nan()
    {
        Assert.Equal(double.PositiveInfinity, Value(".inf"));
        Assert.Equal(double.NegativeInfinity, Value("-.Inf"));
        Assert.True(double.IsNaN(Value(".nan")));
    }

    [Theory]
    [InlineData("y", "y")] // PyYAML's bool resolver has no y/n: a string, not a number
    [InlineData("0o17", "0o17")] // YAML 1.2 octal is a string in YAML 1.1
    [InlineData("abc", "abc")]
    [InlineData("\"yes\"", "yes")]
    public void Non_numeric_scalars_are_texts_that_number_parameters_refuse(string literal, string text)
    {
        // A text is a value of a choice or path parameter; a number parameter refuses it when the recipe is checked.
        var recipe = Parse($"merge_method: ties\nmodels: [{{model: a}}]\nparameters:\n  density: {literal}\n");
        Assert.Equal(new ParameterValue.Text(text), recipe.Parameters["density"]);
        var message = Assert
            .Throws<AlloyException>(() =>
                Alloy.Planning.ParameterCheck.Check(
                    recipe,
                    Alloy.Methods.MethodRegistry.Find("ties")!,
                    new Diagnostics()
                )
            )
            .Message;
        Assert.Equal(
            $"cfg.yml:4:3: parameter 'density' of ties: '{text}' is not a number; it takes a number from 0 to 1",
            message
        );
    }

    [Fact]
    public void A_null_parameter_value_is_rejected()
    {
        var message = Error("merge_method: ties\nmodels: [{model: a}]\nparameters:\n  p: ~\n");
        Assert.StartsWith(
            "cfg.yml:4:6: parameter 'p': expected a number, a gradient list, or filter/value entries",
            message
        );
    }

    [Fact]
    public void Gradients_coerce_each_element()
    {
        var r = Parse("merge_method: ties\nmodels: [{model: a}]\nparameters:\n  p: [yes, 1e-5, '0.5', 0x2]\n");
        Assert.Equal([1.0, 1e-5, 0.5, 2.0], Gradient(r.Parameters, "p"));
    }

    [Theory]
    [InlineData("yes", "boolean")]
    [InlineData("1.5", "number")]
    [InlineData("2024-01-01", "date")]
    public void Model_names_that_YAML_reads_as_non_strings_must_be_quoted(string name, string kind)
    {
        var message = Error($"merge_method: linear\nmodels:\n  - model: {name}\n");
        Assert.StartsWith("cfg.yml:3:12: 'model': a model name must be a string", message);
        Assert.Contains($"YAML 1.1 reads {name} as a {kind}, so put it in quotes: \"{name}\"", message);
        // Quoted, the same names are fine.
        Assert.Equal(name, Parse($"merge_method: linear\nmodels:\n  - model: \"{name}\"\n").Models![0].Model.Path);
    }

    [Fact]
    public void Duplicate_key_keeps_the_last_value_and_warns()
    {
        var r = Parse(
            """
            merge_method: linear
            models:
              - model: a
                parameters:
                  weight: 0.2
                  density: 0.9
                  weight: 0.7
            merge_method: ties
            """,
            out var diagnostics
        );
        Assert.Equal("ties", r.Method);
        Assert.Equal(new SourceLocation(Cfg, 8, 15), r.MethodLocation);
        var p = r.Models![0].Parameters;
        Assert.Equal(0.7, Scalar(p, "weight"));
        Assert.Equal(["weight", "density"], p.Select(s => s.Name)); // Python dict order: first position, last value
        Assert.Equal(2, diagnostics.Warnings.Count);
        Assert.StartsWith("cfg.yml:7:7: duplicate key 'weight' (first at line 5)", diagnostics.Warnings[0]);
        Assert.StartsWith("cfg.yml:8:1: duplicate key 'merge_method' (first at line 1)", diagnostics.Warnings[1]);
    }

    [Fact]
    public void Anchors_aliases_and_merge_keys()
    {
        var r = Parse(
            """
            common: &common {density: 0.5, weight: 0.3}
            merge_method: ties
            base_model: &base org/base
            models:
              - model: *base
              - model: org/a
                parameters:
                  <<: *common
                  weight: 0.9
              - model: org/b
                parameters: *common
            """,
            out var diagnostics
        );
        Assert.Equal("org/base", r.Models![0].Model.Path);
        Assert.Equal(0.5, Scalar(r.Models[1].Parameters, "density"));
        Assert.Equal(0.9, Scalar(r.Models[1].Parameters, "weight")); // own keys override merged ones, silently
        Assert.Equal(0.3, Scalar(r.Models[2].Parameters, "weight"));
        Assert.Equal(["org/base", "org/a", "org/b"], r.ReferencedModels().Select(m => m.Path));
        var warning = Assert.Single(diagnostics.Warnings); // only the unknown top-level 'common' key
        Assert.StartsWith("cfg.yml:1:1: unknown key 'common' in the config (ignored", warning);
    }

    [Fact]
    public void Unknown_alias_is_an_error()
    {
        Assert.StartsWith(
            "cfg.yml:2:13: unknown alias '*nope'",
            Error("merge_method: linear\nbase_model: *nope\nmodels: [{model: a}]\n")
        );
    }

    [Fact]
    public void Explicit_str_tag_keeps_a_number_as_text()
    {
        var r = Parse("merge_method: linear\nmodels:\n  - model: !!str 1.5\n");
        Assert.Equal("1.5", r.Models![0].Model.Path);
    }

    [Fact]
    public void Layer_range_accepts_what_pydantic_accepts()
    {
        var r = Parse(
            "merge_method: passthrough\nslices:\n  - sources:\n      - model: a\n        layer_range: [0x0, '8']\n"
        );
        Assert.Equal(new LayerRange(0, 8), r.Slices![0].Sources[0].Range);
    }

    [Fact]
    public void Explicit_float_and_int_tags()
    {
        var r = Parse("merge_method: ties\nmodels: [{model: a}]\nparameters:\n  p: !!float 0x10\n  q: !!int '7'\n");
        Assert.Equal(16.0, Scalar(r.Parameters, "p"));
        Assert.Equal(7.0, Scalar(r.Parameters, "q"));
        Assert.StartsWith(
            "cfg.yml:4:6: 'abc' is not a valid YAML float",
            Error("merge_method: ties\nmodels: [{model: a}]\nparameters:\n  p: !!float abc\n")
        );
    }
}
