using Alloy.Recipes;

namespace Alloy.Tests.Support;

/// <summary>A merge's bytes must not depend on how the executor splits and schedules the work.</summary>
public static class ChunkInvariance
{
    /// <summary>
    /// Merges <paramref name="recipe"/> twice, with one thread and 97-element chunks into WORK/one and with four
    /// threads and 1 Mi-element chunks into WORK/many, and asserts the weights are byte-identical.
    /// </summary>
    public static void AssertSameBytes(MergeRecipe recipe, TempFolder work)
    {
        Merger.Run(
            recipe,
            work["one"],
            new MergeOptions
            {
                Execution = new() { Threads = 1, ChunkElements = 97 },
            },
            new Diagnostics()
        );
        Merger.Run(
            recipe,
            work["many"],
            new MergeOptions
            {
                Execution = new() { Threads = 4, ChunkElements = 1 << 20 },
            },
            new Diagnostics()
        );
        Assert.Equal(
            File.ReadAllBytes(work["one/model.safetensors"]),
            File.ReadAllBytes(work["many/model.safetensors"])
        );
    }
}
