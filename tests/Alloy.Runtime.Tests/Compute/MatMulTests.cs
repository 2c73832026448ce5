using Alloy.Runtime.Compute;
using Alloy.Runtime.Tests.Support;
using Alloy.Tensors;

namespace Alloy.Runtime.Tests.Compute;

/// <summary>
/// The runtime's tiled products: right values for every transpose, β and bias, and a grid that covers C once.
/// </summary>
public sealed class MatMulTests
{
    public static TheoryData<string> Backends() => Reference.Backends();

    [Theory]
    [MemberData(nameof(Backends))]
    public void Tiled_products_match_double_precision_for_every_transpose(string backend)
    {
        var context = new ComputeContext(new RuntimeOptions { Backend = Reference.Backend(backend), Threads = 3 });
        foreach (var (m, n, k) in new[] { (1, 700, 96), (37, 200, 130), (600, 129, 70), (1030, 64, 5) })
        {
            foreach (bool transA in new[] { false, true })
            {
                foreach (bool transB in new[] { false, true })
                {
                    var a = Random(m * k, "a");
                    var b = Random(k * n, "b");
                    var bias = Random(n, "bias");
                    var c = Random(m * n, "c");
                    var original = (float[])c.Clone();
                    int lda = transA ? m : k,
                        ldb = transB ? k : n;
                    MatMul.Multiply(context, transA, transB, m, n, k, a, lda, b, ldb, c, n, beta: 0.5f, bias: bias);
                    for (int i = 0; i < m; i += Math.Max(1, m / 13))
                    {
                        for (int j = 0; j < n; j += Math.Max(1, n / 17))
                        {
                            double sum = 0,
                                scale = 0;
                            for (int p = 0; p < k; p++)
                            {
                                double x = transA ? a[p * lda + i] : a[i * lda + p],
                                    y = transB ? b[j * ldb + p] : b[p * ldb + j];
                                sum += x * y;
                                scale += Math.Abs(x * y);
                            }
                            double expected = sum + 0.5 * original[i * n + j] + bias[j];
                            Assert.True(
                                Math.Abs(c[i * n + j] - expected) <= 1e-5 * (scale + 1),
                                $"{m}×{n}×{k} {transA}/{transB} at ({i}, {j}): {c[i * n + j]} vs {expected}"
                            );
                        }
                    }
                }
            }
        }
    }

    [Fact]
    public void The_tile_grid_covers_every_output_element_exactly_once()
    {
        foreach (
            var (m, n, k) in new[]
            {
                (1, 1, 1),
                (1, 768, 768),
                (513, 1500, 768),
                (513, 32000, 768),
                (2048, 256, 768),
                (1537, 65, 3),
                (3, 10_000, 4096),
            }
        )
        {
            var grid = MatMul.Grid.For(m, n, k);
            var covered = new int[(long)m * n > 1_000_000 ? 0 : m * n]; // the large shapes: sizes only
            long total = 0;
            for (int t = 0; t < grid.Count; t++)
            {
                var (r0, r1, c0, c1) = grid.Tile(t);
                Assert.True(r0 < r1 && c0 < c1 && r1 <= m && c1 <= n, $"{m}×{n}: empty or outside tile {t}");
                Assert.True(c0 % MatMul.ColumnQuantum == 0);
                total += (long)(r1 - r0) * (c1 - c0);
                if (covered.Length > 0)
                    for (int r = r0; r < r1; r++)
                    for (int c = c0; c < c1; c++)
                        covered[r * n + c]++;
            }
            Assert.Equal((long)m * n, total);
            Assert.All(covered, x => Assert.Equal(1, x));
        }
    }

    private static float[] Random(int count, string name)
    {
        var stream = RandomStream.For(3, name, count);
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = (float)stream.Normal(i);
        return values;
    }
}
