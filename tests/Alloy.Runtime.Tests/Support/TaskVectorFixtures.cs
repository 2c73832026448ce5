using Alloy.Runtime.Models;
using Alloy.Tensors;

namespace Alloy.Runtime.Tests.Support;

/// <summary>Task vectors and prompts for the learners of merging coefficients and masks.</summary>
public static class TaskVectorFixtures
{
    /// <summary>
    /// A random model (vocabulary 23, hidden 16, 2 layers), a copy of its weights as the base, and task vectors of
    /// about half the weights' scale, so λ moves the predictions a lot and the gradients are far from zero.
    /// </summary>
    public static (LlamaModel Model, ParameterSet Base, ParameterSet[] TaskVectors) Setup(int tasks, int threads = 2)
    {
        var model = RandomModels.Create(RandomModels.Config(), threads: threads);
        var @base = new ParameterSet(model.Parameters.Select(p => new Parameter(p.Name, p.Shape, [.. p.Data])));
        var taskVectors = Enumerable
            .Range(0, tasks)
            .Select(t => new ParameterSet(
                model.Parameters.Select(p =>
                {
                    var stream = RandomStream.For(100 + (ulong)t, p.Name, t);
                    double scale = p.Shape.Length == 2 ? 0.5 / Math.Sqrt(p.Columns) : 0.2;
                    var delta = new float[p.Data.Length];
                    for (int i = 0; i < delta.Length; i++)
                        delta[i] = (float)(scale * stream.Normal(i));
                    return new Parameter(p.Name, p.Shape, delta);
                })
            ))
            .ToArray();
        return (model, @base, taskVectors);
    }

    /// <summary>Per task, <paramref name="count"/> seeded prompts of 2 to 9 tokens.</summary>
    public static IReadOnlyList<int[]>[] Prompts(int tasks, int count, int vocab = 23) =>
        [
            .. Enumerable
                .Range(0, tasks)
                .Select(t =>
                {
                    var stream = RandomStream.For(17, "prompts", t);
                    return (IReadOnlyList<int[]>)
                        [
                            .. Enumerable
                                .Range(0, count)
                                .Select(i =>
                                    Enumerable
                                        .Range(0, 2 + (int)(stream.Uniform(1000 * i) * 8))
                                        .Select(j => (int)(stream.Uniform(1000 * i + 1 + j) * vocab))
                                        .ToArray()
                                ),
                        ];
                }),
        ];
}
