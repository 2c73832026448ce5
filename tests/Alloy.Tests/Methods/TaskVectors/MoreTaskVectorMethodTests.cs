using Alloy.Methods;
using Alloy.Tensors;
using Alloy.Tests.Support;

namespace Alloy.Tests.Methods.TaskVectors;

/// <summary>
/// sce, ram, ramplus_tl, magmax and expo: worked examples in float32 and bf16, invariants, validation.
/// </summary>
public sealed class MoreTaskVectorMethodTests
{
    private static float[] Run(
        string method,
        float[] b,
        float[][] models,
        Dictionary<string, double>? globals = null
    ) => MethodTestKit.Run(MethodRegistry.Find(method)!, [b, .. models], 0, globals);

    private static float[] Bf16(IEnumerable<float> values) => values.Select(v => (float)(BFloat16)v).ToArray();

    /// <summary>
    /// Runs on inputs rounded to <paramref name="dtype"/> and checks the output, rounded once, within 1 ulp of
    /// <paramref name="expected"/>.
    /// </summary>
    private static void Golden(
        string method,
        float[] b,
        float[][] models,
        double[] expected,
        Dictionary<string, double>? globals = null
    )
    {
        Expect.Close($"{method} f32", expected, Run(method, b, models, globals), DType.F32);
        var rounded = Run(method, Bf16(b), models.Select(Bf16).ToArray(), globals);
        Expect.Close($"{method} bf16", expected, Bf16(rounded), DType.BF16);
    }

    private static float[] Values(int n, int model, double scale = 1) =>
        Enumerable.Range(0, n).Select(j => (float)(scale * RandomStream.For(5, "more", model).Normal(j))).ToArray();

    [Fact]
    public void Sce_matches_the_worked_example()
    {
        // Worked by hand from mergekit's rules: w = [0.277778, 0.722222]; signs [+,+]; model 2 disagrees at entry 1 →
        // [2.444444, 2.0].
        Golden(
            "sce",
            [0, 0],
            [
                [1, 2],
                [3, -2],
            ],
            [22.0 / 9, 2.0]
        );
    }

    [Fact]
    public void Sce_select_topk_keeps_the_largest_variances_and_erases_entries_all_models_agree_on()
    {
        // Variances [0, 4, 4, 0]: two nonzero, select_topk 0.5 keeps one, the lower index of the tie (entry 1). The
        // entries both models move by 5 have zero variance and are erased, as in mergekit.
        Golden(
            "sce",
            [0, 0, 0, 0],
            [
                [1, 0, 2, 5],
                [1, 4, -2, 5],
            ],
            [0, 4, 0, 0],
            new() { ["select_topk"] = 0.5 }
        );
        // select_topk 0 erases everything.
        Assert.Equal(
            [1f, 1f],
            Run(
                "sce",
                [1, 1],
                [
                    [2, 3],
                    [4, 5],
                ],
                new() { ["select_topk"] = 0 }
            )
        );
    }

    [Fact]
    public void Sce_divides_by_at_least_1e_minus_6_like_mergekit()
    {
        // Model 2's weight is ~5e-12 of the total; alone on entry 1 it contributes 0.002·w₂/1e-6, not 0.002.
        var output = Run(
            "sce",
            [0, 0],
            [
                [1000, 0],
                [0.001f, 0.002f],
            ]
        );
        var expected = MoreTaskVectorReference.Sce(
            [0, 0],
            [
                [1000, 0],
                [0.001f, 0.002f],
            ]
        );
        Assert.Equal(1e-8, expected[1], 1e-12);
        Expect.Close("sce", expected, output, DType.F32);
    }

    [Fact]
    public void Sce_weights_are_uniform_when_the_task_vectors_are_tiny()
    {
        // Σ mean(τ²) < 1e-6 → w = 1/N: entry 0 is the plain mean of the agreeing entries.
        var output = Run(
            "sce",
            [0, 0],
            [
                [1e-4f, 0],
                [3e-4f, 0],
            ]
        );
        Assert.Equal(2e-4f, output[0], 1e-9f);
    }

    [Theory]
    [InlineData("sce")]
    [InlineData("ram")]
    [InlineData("ramplus_tl")]
    [InlineData("expo")]
    public void Identical_fine_tunes_and_a_single_fine_tune_give_that_fine_tune(string method)
    {
        var b = Values(64, 0);
        var ft = Values(64, 1);
        var globals = method == "expo" ? new Dictionary<string, double> { ["extrapolation_factor"] = 0 } : null;
        Expect.Close(method, ft.Select(v => (double)v).ToArray(), Run(method, b, [ft], globals), DType.F32, 4);
        Expect.Close(method, ft.Select(v => (double)v).ToArray(), Run(method, b, [ft, ft, ft], globals), DType.F32, 4);
    }

    [Fact]
    public void Magmax_of_one_fine_tune_is_the_scaled_task_vector()
    {
        var b = Values(32, 0);
        var ft = Values(32, 1);
        var expected = b.Select((v, j) => v + 0.5 * (ft[j] - v)).ToArray();
        Expect.Close("magmax", expected, Run("magmax", b, [ft, ft]), DType.F32, 4);
        Expect.Close(
            "magmax",
            ft.Select(v => (double)v).ToArray(),
            Run("magmax", b, [ft], new() { ["scaling_factor"] = 1 }),
            DType.F32,
            4
        );
    }

    [Theory]
    [InlineData("sce")]
    [InlineData("ram")]
    [InlineData("ramplus_tl")]
    [InlineData("magmax")]
    [InlineData("expo")]
    public void No_fine_tunes_give_the_base(string method)
    {
        var b = Values(16, 0);
        Assert.Equal(b, Run(method, b, []));
    }

    [Fact]
    public void Ram_and_ramplus_tl_match_the_worked_example()
    {
        // Worked by hand from mergekit's rules: shared entry 0 averaged, unique entry 2 kept → [2, 0, 2]; RAM+ λ = 1 +
        // 0.1·min(ρ, 0.2) = 1.02.
        Golden(
            "ram",
            [0, 0, 0],
            [
                [1, 0, 2],
                [3, 0, 0],
            ],
            [2, 0, 2]
        );
        Golden(
            "ramplus_tl",
            [0, 0, 0],
            [
                [1, 0, 2],
                [3, 0, 0],
            ],
            [2, 0, 2.04]
        );
    }

    [Fact]
    public void Ram_ignores_changes_within_epsilon()
    {
        // Entry 0: model 1 moves by 1e-6 ≤ ε, so model 2 is alone there and is kept whole, not halved.
        Assert.Equal(
            [0.5f, 1f],
            Run(
                "ram",
                [0, 0],
                [
                    [1e-6f, 1],
                    [0.5f, 0],
                ]
            )
        );
        Expect.Close(
            "ram",
            [(1e-6 + 0.5) / 2, 1],
            Run(
                "ram",
                [0, 0],
                [
                    [1e-6f, 1],
                    [0.5f, 0],
                ],
                new() { ["epsilon"] = 1e-7 }
            ),
            DType.F32
        );
    }

    [Fact]
    public void Ramplus_tl_scales_unique_entries_by_each_models_shared_to_unique_ratio()
    {
        // Model 1: 1 shared, 4 unique → ρ = 0.25, under the cap α = 0.5 → λ = 1 + 0.2·0.25 = 1.05.
        // Model 2: 1 shared, 0 unique → ρ = 1/ε → capped → λ = 1.1 (no unique entries to scale).
        float[] b = [0, 0, 0, 0, 0];
        float[][] models =
        [
            [1, 1, 1, 1, 1],
            [3, 0, 0, 0, 0],
        ];
        var globals = new Dictionary<string, double> { ["r"] = 0.2, ["alpha"] = 0.5 };
        Golden("ramplus_tl", b, models, [2, 1.05, 1.05, 1.05, 1.05], globals);
        Expect.Close(
            "ramplus_tl",
            MoreTaskVectorReference.Ram(b, models, plus: (0.2, 0.5)),
            Run("ramplus_tl", b, models, globals),
            DType.F32
        );
    }

    [Fact]
    public void Ram_methods_agree_with_the_reference_on_random_tensors()
    {
        var b = Values(500, 0);
        // Sparse task vectors so that entries are unique, shared and inactive in every combination.
        var models = Enumerable
            .Range(1, 3)
            .Select(m => Values(500, m).Select((v, j) => (j * (m + 2)) % 5 < 2 ? b[j] : v).ToArray())
            .ToArray();
        Expect.Close("ram", MoreTaskVectorReference.Ram(b, models), Run("ram", b, models), DType.F32, 8);
        Expect.Close(
            "ramplus_tl",
            MoreTaskVectorReference.Ram(b, models, plus: (0.1, 0.2)),
            Run("ramplus_tl", b, models),
            DType.F32,
            8
        );
        Expect.Close(
            "sce",
            MoreTaskVectorReference.Sce(b, models, 0.3),
            Run("sce", b, models, new() { ["select_topk"] = 0.3 }),
            DType.F32,
            8
        );
    }

    [Fact]
    public void Magmax_takes_the_largest_magnitude_and_the_later_model_on_ties()
    {
        // τ₁ = [1, −3, 2], τ₂ = [−2, 3, 1] → τ_max = [−2, 3 (tie: the later model), 2], × 0.5 around base 0.5.
        Golden(
            "magmax",
            [0.5f, 0.5f, 0.5f],
            [
                [1.5f, -2.5f, 2.5f],
                [-1.5f, 3.5f, 1.5f],
            ],
            [-0.5, 2, 1.5]
        );
        Golden(
            "magmax",
            [0.5f, 0.5f, 0.5f],
            [
                [-1.5f, 3.5f, 1.5f],
                [1.5f, -2.5f, 2.5f],
            ],
            [-0.5, -1, 1.5]
        );
        Golden(
            "magmax",
            [0, 0, 0],
            [
                [1, -3, 2],
                [-2, 3, 1],
            ],
            [-2, 3, 2],
            new() { ["scaling_factor"] = 1 }
        );
    }

    [Fact]
    public void Expo_extrapolates_from_the_base_through_the_fine_tune_or_their_mean()
    {
        // θ_ft + α(θ_ft − θ_pre): [2, 0] from [1, 2] with α 0.5 → [2.5, −1]; two fine-tunes are averaged first.
        Golden(
            "expo",
            [1, 2],
            [
                [2, 0],
            ],
            [2.5, -1],
            new() { ["extrapolation_factor"] = 0.5 }
        );
        Golden(
            "expo",
            [1, 2],
            [
                [3, 0],
                [1, 0],
            ],
            [2.5, -1],
            new() { ["extrapolation_factor"] = 0.5 }
        );
        Golden(
            "expo",
            [1, 2],
            [
                [2, 0],
            ],
            [2.1, -0.2]
        );
    }

    [Fact]
    public void Ram_refuses_a_negative_epsilon()
    {
        var e = Assert.Throws<AlloyException>(() =>
            Run(
                "ram",
                [0],
                [
                    [1],
                ],
                new() { ["epsilon"] = -1 }
            )
        );
        Assert.Contains("epsilon", e.Message);
    }

    [Fact]
    public void Pcb_keeps_each_tasks_top_scored_entries_and_scales_them_by_lambda()
    {
        // clamp_ratio 0, pcb_ratio 0.5 of 4 entries: each task keeps only its top score (scale 1), the rest get scale
        // 0. Task 1's top is entry 3 (|τ| 4, agreeing with the sum), task 2's is entry 1; λ = 1.2 → [0, 2.4, 0, 4.8].
        float[][] models =
        [
            [1, 0, 0, 4],
            [0, 2, 0, 1],
        ];
        Golden("pcb", [0, 0, 0, 0], models, [0, 2.4, 0, 4.8], new() { ["pcb_ratio"] = 0.5, ["clamp_ratio"] = 0 });
        // The default clamp_ratio on a tensor under 10 000 entries clamps each task's largest magnitude to its second
        // largest, as pcb-merging.py's indexing does: both tasks' tops are then entry 3 at magnitude 1 → 1.2.
        Golden("pcb", [0, 0, 0, 0], models, [0, 0, 0, 1.2], new() { ["pcb_ratio"] = 0.5 });
    }

    [Fact]
    public void Pcb_agrees_with_the_reference_on_random_tensors_and_identical_fine_tunes_act_as_one()
    {
        var b = Values(400, 0);
        var models = Enumerable.Range(1, 3).Select(m => Values(400, m)).ToArray();
        var method = MethodRegistry.Find("pcb")!;
        var perModel = new List<IReadOnlyDictionary<string, double>>
        {
            new Dictionary<string, double>(),
            new Dictionary<string, double> { ["lambda"] = 1.0 },
            new Dictionary<string, double> { ["lambda"] = 0.8 },
            new Dictionary<string, double> { ["lambda"] = 1.3 },
        };
        var globals = new Dictionary<string, double> { ["pcb_ratio"] = 0.2, ["clamp_ratio"] = 0.01 };
        var actual = MethodTestKit.Run(method, [b, .. models], 0, globals, perModel);
        Expect.Close("pcb", PcbReference.Merge(b, models, [1.0, 0.8, 1.3], 0.2, 0.01), actual, DType.F32, 16);
        Expect.Close(
            "pcb default",
            PcbReference.Merge(b, models, [1.2, 1.2, 1.2]),
            Run("pcb", b, models),
            DType.F32,
            16
        );

        // Identical fine-tunes rank their entries alike (both scores grow with |τ|), so they merge to what one gives.
        var one = Run("pcb", b, [models[0]], globals);
        Expect.Close(
            "pcb identical",
            one.Select(v => (double)v).ToArray(),
            Run("pcb", b, [models[0], models[0], models[0]], globals),
            DType.F32,
            16
        );
        Assert.NotEqual(b, one);
    }

    [Theory]
    [InlineData("pcb_ratio", 0)]
    [InlineData("pcb_ratio", 1.5)]
    [InlineData("clamp_ratio", 0.5)]
    public void Pcb_refuses_ratios_outside_their_range(string parameter, double value)
    {
        var e = Assert.Throws<AlloyException>(() =>
            Run(
                "pcb",
                [0, 0],
                [
                    [1, 2],
                ],
                new() { [parameter] = value }
            )
        );
        Assert.Contains(parameter, e.Message);
    }

    [Fact]
    public void Emr_unified_model_takes_the_largest_agreeing_magnitude_with_the_elected_sign()
    {
        // τ₁ = [1, −2, 3, 0, 1], τ₂ = [2, 1, −1, 0, −1] around base 1: sums [3, −1, 2, 0, 0] → γ [+, −, +, −, −]
        // (0 counts as −); largest agreeing |τ|: [2, 2, 3, 0, 1] → τ_uni [2, −2, 3, 0, −1].
        Golden(
            "emr",
            [1, 1, 1, 1, 1],
            [
                [2, -1, 4, 1, 2],
                [3, 2, 0, 1, 0],
            ],
            [3, -1, 4, 1, 0]
        );
    }

    [Fact]
    public void Emr_agrees_with_the_reference_and_identical_fine_tunes_give_that_fine_tune()
    {
        var b = Values(300, 0);
        var models = Enumerable.Range(1, 3).Select(m => Values(300, m)).ToArray();
        Expect.Close("emr", EmrReference.Unified(b, models), Run("emr", b, models), DType.F32, 8);
        Expect.Close(
            "emr identical",
            models[0].Select(v => (double)v).ToArray(),
            Run("emr", b, [models[0], models[0]]),
            DType.F32,
            8
        );
        Assert.Equal(b, Run("emr", b, []));
    }
}
