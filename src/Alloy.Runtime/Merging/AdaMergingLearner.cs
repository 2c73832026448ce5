using System.Numerics.Tensors;
using Alloy.Runtime.Models;
using Alloy.Runtime.Training;
using Alloy.Tensors;

namespace Alloy.Runtime.Merging;

/// <summary>What <see cref="AdaMergingLearner.Learn"/> found.</summary>
/// <param name="Lambdas">
/// [task][group], clamped to [0, 1] as the merge uses them; layer-wise, group k is the model's parameter k.
/// </param>
/// <param name="Losses">The loss of each step's batches, before that step's update.</param>
public sealed record AdaMergingResult(double[][] Lambdas, IReadOnlyList<double> Losses);

/// <summary>
/// AdaMerging (Yang et al., ICLR 2024, arXiv 2310.02575): merging coefficients learnt without labels, by making the
/// merged model θ(λ)_k = θ0_k + Σ_t clamp(λ_{t,g(k)}, 0, 1)·τ_{t,k} confident, i.e. by minimising the entropy of its
/// next-token distribution after each task's unlabeled prompts. A λ array's shape says the granularity: one column
/// per task is task-wise, one per parameter tensor (in the model's order) layer-wise. One caller at a time.
/// </summary>
public sealed class AdaMergingLearner
{
    /// <summary>
    /// Elements per unit of parallel work when filling θ and reducing ⟨∂L/∂θ, τ⟩; fixed, so the reductions' order,
    /// and with it every bit of the result, does not depend on the thread count.
    /// </summary>
    private const int ChunkSize = 1 << 16;

    private readonly float[][] _base;
    private readonly float[][][] _deltas; // [task][parameter]
    private readonly (int Parameter, int Start, int End)[] _chunks;
    private readonly LossGradients _loss;

    /// <summary>
    /// <paramref name="model"/>'s values are overwritten by every evaluation, so <paramref name="baseParameters"/>
    /// must be a copy of the base, not the model's own parameters. Every set must hold each of the model's parameters
    /// under its name and shape (a sparsified task vector keeps its zeros).
    /// </summary>
    public AdaMergingLearner(LlamaModel model, ParameterSet baseParameters, IReadOnlyList<ParameterSet> taskVectors)
    {
        if (taskVectors.Count == 0)
            throw new AlloyException("AdaMerging needs at least one task vector");
        Model = model;
        _base = Storage(model, baseParameters, "the base model");
        _deltas = [.. taskVectors.Select((tv, t) => Storage(model, tv, $"task vector {t + 1}"))];
        _chunks =
        [
            .. model.Parameters.SelectMany(
                (p, k) =>
                    Enumerable
                        .Range(0, (p.Data.Length + ChunkSize - 1) / ChunkSize)
                        .Select(c => (k, c * ChunkSize, Math.Min(p.Data.Length, (c + 1) * ChunkSize)))
            ),
        ];
        _loss = new LossGradients(model);
    }

    /// <summary>The model that holds θ(λ) of the last evaluation.</summary>
    public LlamaModel Model { get; }

    public int Tasks => _deltas.Length;

    /// <summary>λ per task at <paramref name="granularity"/>: 1, or the model's parameter count.</summary>
    public int Groups(LambdaGranularity granularity) =>
        granularity == LambdaGranularity.Task ? 1 : Model.Parameters.Count;

    /// <summary>
    /// Writes θ(λ) into the model, tensor chunks in parallel. Per element, each task's product is rounded and added in
    /// task order, as the merge engine's task arithmetic does; a λ clamped to 0 adds nothing, so all-zero λ leave the
    /// base's exact bits.
    /// </summary>
    public void Apply(double[][] lambdas)
    {
        int groups = CheckShape(lambdas);
        var coefficients = lambdas.Select(row => row.Select(l => (float)Math.Clamp(l, 0, 1)).ToArray()).ToArray();
        var parameters = Model.Parameters;
        Model.Compute.For(_chunks.Length, c =>
        {
            var (k, start, end) = _chunks[c];
            var theta = parameters[k].Data.AsSpan(start, end - start);
            _base[k].AsSpan(start, end - start).CopyTo(theta);
            for (int t = 0; t < Tasks; t++)
            {
                float coefficient = coefficients[t][groups == 1 ? 0 : k];
                if (coefficient != 0)
                    TensorPrimitives.MultiplyAdd(_deltas[t][k].AsSpan(start, end - start), coefficient, theta, theta);
            }
        });
    }

    /// <summary>
    /// The loss at <paramref name="lambdas"/>: Σ over tasks of the mean entropy over that task's batch (one batch per
    /// task). The model is left holding θ(λ).
    /// </summary>
    public double Loss(double[][] lambdas, IReadOnlyList<IReadOnlyList<int[]>> batches)
    {
        CheckBatches(batches);
        Apply(lambdas);
        return TaskPrompts.Entropy(_loss, batches, gradient: false);
    }

    /// <summary>
    /// The loss and ∂L/∂λ_{t,g} = Σ_{k in g} ⟨∂L/∂θ_k, τ_{t,k}⟩ where 0 ≤ λ_{t,g} ≤ 1, else 0 (torch.clamp's gradient),
    /// from one backward pass per task batch into one gradient set. Dot products are in double.
    /// </summary>
    public (double Loss, double[][] Gradient) LossAndGradient(
        double[][] lambdas,
        IReadOnlyList<IReadOnlyList<int[]>> batches
    )
    {
        CheckBatches(batches);
        Apply(lambdas);
        var context = Model.Compute;
        var gradients = _loss.Gradients;
        gradients.Clear(context);
        double loss = TaskPrompts.Entropy(_loss, batches, gradient: true);

        var partial = new double[_chunks.Length, Tasks];
        var parameters = Model.Parameters;
        context.For(_chunks.Length, c =>
        {
            var (k, start, end) = _chunks[c];
            var g = gradients[parameters[k]].AsSpan(start, end - start);
            for (int t = 0; t < Tasks; t++)
                partial[c, t] = SpanMath.Dot(g, _deltas[t][k].AsSpan(start, end - start));
        });
        int groups = lambdas[0].Length;
        var gradient = lambdas.Select(row => new double[row.Length]).ToArray();
        for (int c = 0; c < _chunks.Length; c++) // chunks are in parameter order: each group's sum has a fixed order
        for (int t = 0; t < Tasks; t++)
            gradient[t][groups == 1 ? 0 : _chunks[c].Parameter] += partial[c, t];
        for (int t = 0; t < Tasks; t++)
        for (int g = 0; g < groups; g++)
            if (lambdas[t][g] is not (>= 0 and <= 1))
                gradient[t][g] = 0;
        return (loss, gradient);
    }

    /// <summary>
    /// Learns λ with Adam from <see cref="AdaMergingOptions.Initial"/>, on each task's prompts in a seeded order taken
    /// <see cref="AdaMergingOptions.BatchSize"/> at a time, cyclically. λ are float32 like the reference's torch
    /// parameters, and the house's <see cref="AdamW"/> (without weight decay) steps them. At the end
    /// <paramref name="model"/> holds θ(final λ). <paramref name="progress"/> receives each 1-based step and its loss.
    /// </summary>
    public static AdaMergingResult Learn(
        LlamaModel model,
        ParameterSet baseParameters,
        IReadOnlyList<ParameterSet> taskVectors,
        IReadOnlyList<IReadOnlyList<int[]>> prompts,
        AdaMergingOptions options,
        Action<int, double>? progress = null,
        CancellationToken cancellation = default
    )
    {
        options.Validate();
        var merging = new AdaMergingLearner(model, baseParameters, taskVectors);
        merging.CheckBatches(prompts);
        int tasks = merging.Tasks,
            groups = merging.Groups(options.Granularity);
        var lambda = new Parameter("adamerging.lambdas", [tasks, groups]);
        Array.Fill(lambda.Data, (float)options.Initial);
        var lambdaSet = new ParameterSet([lambda]);
        var lambdaGradient = new GradientSet(lambdaSet);
        var adam = new AdamW(lambdaSet, new TrainingOptions { WeightDecay = 0 });
        double[][] Current() => [.. lambda.Data.Chunk(groups).Select(row => row.Select(l => (double)l).ToArray())];

        var batcher = new TaskPrompts(prompts, options.BatchSize, options.Seed);
        var losses = new List<double>(options.Steps);
        for (int step = 0; step < options.Steps; step++)
        {
            cancellation.ThrowIfCancellationRequested();
            var (loss, gradient) = merging.LossAndGradient(Current(), batcher.Batches(step));
            if (!double.IsFinite(loss))
                throw new AlloyException(
                    $"AdaMerging step {step + 1}: the entropy is not finite ({loss}); check the task vectors' scale"
                );
            for (int t = 0; t < tasks; t++)
            for (int g = 0; g < groups; g++)
                lambdaGradient[lambda][t * groups + g] = (float)gradient[t][g];
            adam.Step(model.Compute, lambdaGradient, options.LearningRate);
            losses.Add(loss);
            progress?.Invoke(step + 1, loss);
        }
        var final = Current();
        merging.Apply(final);
        return new AdaMergingResult([.. final.Select(row => row.Select(l => Math.Clamp(l, 0, 1)).ToArray())], losses);
    }

    /// <summary>The values of every model parameter in <paramref name="set"/>, checked by name and shape.</summary>
    private static float[][] Storage(LlamaModel model, ParameterSet set, string what)
    {
        var storage = new float[model.Parameters.Count][];
        for (int k = 0; k < model.Parameters.Count; k++)
        {
            var p = model.Parameters[k];
            var other = set.Find(p.Name)
                ?? throw new AlloyException($"{what} has no tensor '{p.Name}'; AdaMerging needs every tensor");
            if (!other.Shape.SequenceEqual(p.Shape))
                throw new AlloyException(
                    $"{what} has '{p.Name}' as [{string.Join(", ", other.Shape)}], but the model needs "
                        + $"[{string.Join(", ", p.Shape)}]"
                );
            if (ReferenceEquals(other.Data, p.Data))
                throw new ArgumentException(
                    $"{what} shares '{p.Name}' with the model, whose values AdaMerging overwrites; pass a copy"
                );
            storage[k] = other.Data;
        }
        if (set.Count != model.Parameters.Count)
        {
            var extra = set.First(p => model.Parameters.Find(p.Name) is null);
            throw new AlloyException($"{what} has tensor '{extra.Name}', which the model has no place for");
        }
        return storage;
    }

    /// <summary>The number of groups, after checking there is one row per task of 1 or one-per-parameter λ.</summary>
    private int CheckShape(double[][] lambdas)
    {
        int parameters = Model.Parameters.Count;
        if (lambdas.Length != Tasks || lambdas.Any(row => row.Length != lambdas[0].Length))
            throw new ArgumentException($"λ must have {Tasks} rows of equal length, one per task", nameof(lambdas));
        if (lambdas[0].Length is not 1 && lambdas[0].Length != parameters)
            throw new ArgumentException(
                $"λ rows must hold 1 (task-wise) or {parameters} (layer-wise) values, not {lambdas[0].Length}",
                nameof(lambdas)
            );
        return lambdas[0].Length;
    }

    private void CheckBatches(IReadOnlyList<IReadOnlyList<int[]>> batches)
    {
        if (batches.Count != Tasks)
            throw new AlloyException($"AdaMerging has {Tasks} task vectors but prompts for {batches.Count} tasks");
        for (int t = 0; t < Tasks; t++)
            if (batches[t].Count == 0)
                throw new AlloyException($"task {t + 1} has no prompts; AdaMerging needs unlabeled prompts per task");
    }
}
