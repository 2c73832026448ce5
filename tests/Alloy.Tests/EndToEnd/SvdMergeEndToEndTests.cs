using Alloy.Checkpoints;
using Alloy.LinearAlgebra;
using Alloy.Tensors;
using Alloy.Tests.LinearAlgebra;
using Alloy.Tests.Methods;
using Alloy.Tests.Methods.Geometric;
using Alloy.Tests.Methods.TaskVectors;
using Alloy.Tests.Support;
using static Alloy.Tests.Support.ReferenceLinearAlgebra;

namespace Alloy.Tests.EndToEnd;

/// <summary>
/// The SVD merges through the CLI entry point on the generated model family, once per backend: every output tensor
/// is checked against the method's direct definition computed here in double (2-D tensors as matrices, others by
/// the mean task vector; for cart only the layers' matrices are reduced).
/// </summary>
public sealed class SvdMergeEndToEndTests : IClassFixture<ModelFamily>, IDisposable
{
    private readonly ModelFamily _models;
    private readonly TempFolder _work = new();

    public SvdMergeEndToEndTests(ModelFamily models) => _models = models;

    public void Dispose() => _work.Dispose();

    public static IEnumerable<object[]> Cases() =>
        from backend in DenseBackendTests.BackendNames()
        from method in new[] { "tsv_m", "iso_c", "iso_cts", "star", "cart" }
        select new object[] { method, backend };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_tensor_matches_the_definition(string method, string backend)
    {
        var parameters = string.Join(
            "\n",
            SvdMethodTests
                .Parameters(method)
                .Select(p => $"  {p.Key}: {p.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)}")
        );
        var config = _work.Write(
            $"{method}-{backend}.yml",
            $"""
            merge_method: {method}
            base_model: {_models.Base}
            models:
              - model: {_models.FineTunes[0]}
              - model: {_models.FineTunes[1]}
              - model: {_models.FineTunes[2]}
            {(parameters.Length > 0 ? "parameters:\n" + parameters : "")}
            dtype: float32
            """
        );
        var output = _work[$"out-{method}-{backend}"];
        using (DenseBackend.Use(DenseBackendTests.Get(backend)))
            AlloyCli.Merge(config, output);

        var b = TestCheckpoints.ReadAll(_models.Base);
        var fineTunes = _models.FineTunes.Select(TestCheckpoints.ReadAll).ToList();
        var merged = TestCheckpoints.ReadAll(output);
        Assert.Equal(b.Keys.Order(), merged.Keys.Order());
        using var checkpoint = Checkpoint.Open(_models.Base);
        int matrices = 0;
        foreach (var (name, actual) in merged)
        {
            var shape = checkpoint.Find(name)!.Info.Shape;
            double scale = fineTunes.Append(b).Max(m => m[name].Max(Math.Abs));
            bool matrix =
                shape.Length == 2 && (method != "cart" || name.StartsWith("model.layers.", StringComparison.Ordinal));
            double[] expected;
            if (matrix)
            {
                int rows = (int)shape[0],
                    cols = (int)shape[1];
                var tasks = fineTunes
                    .Select(f => Add(FromRowMajor(f[name], rows, cols), FromRowMajor(b[name], rows, cols), -1))
                    .ToList();
                expected = ToRowMajor(Add(FromRowMajor(b[name], rows, cols), SvdMethodTests.Expected(method, tasks)));
                matrices++;
            }
            else
            {
                double factor = method is "iso_c" or "iso_cts" ? 1.3 : 1;
                expected = b[name]
                    .Select((v, i) => v + factor * fineTunes.Average(f => (double)f[name][i] - v))
                    .ToArray();
            }
            // Float32 SVDs are accurate to ~1e-6 of the matrix's scale; the polar factors of TSV-M and Iso-CTS amplify
            // that by the conditioning of the concatenated blocks (a few ×1e-6 observed with LAPACK), hence 2e-5.
            Expect.Close($"{method} ({backend}) {name}", expected, actual, DType.F32, 20 * scale);
        }
        Assert.True(matrices >= 4 * 7, $"{method}: only {matrices} tensors were merged as matrices");
    }

    [Theory]
    [MemberData(nameof(DenseBackendTests.Backends), MemberType = typeof(DenseBackendTests))]
    public void Output_is_byte_identical_at_any_thread_count(string backend)
    {
        var config = _work.Write(
            $"threads-{backend}.yml",
            $"""
            merge_method: iso_cts
            base_model: {_models.Base}
            models:
              - model: {_models.FineTunes[0]}
              - model: {_models.FineTunes[1]}
            dtype: bfloat16
            """
        );
        using (DenseBackend.Use(DenseBackendTests.Get(backend)))
        {
            AlloyCli.Merge(config, _work[$"one-{backend}"], "--threads", "1");
            AlloyCli.Merge(config, _work[$"four-{backend}"], "--threads", "4");
        }
        var one = File.ReadAllBytes(Path.Combine(_work[$"one-{backend}"], "model.safetensors"));
        var four = File.ReadAllBytes(Path.Combine(_work[$"four-{backend}"], "model.safetensors"));
        Assert.Equal(one, four);
    }
}
