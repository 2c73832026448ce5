using System.Numerics.Tensors;
using Alloy.LinearAlgebra;
using Alloy.Methods.TaskVectors;

namespace Alloy.Methods.Svd;

/// <summary>
/// The frame shared by the data-free SVD merges (TSV-M, Iso-C, Iso-CTS, STAR, CART): task vectors τₜ = xₜ − base;
/// 2-D weight matrices are merged by the method's linear algebra, every other tensor (norms, biases) gets a scaled
/// mean of its task vectors, as in the reference implementations; the result is base + merged task vector.
/// </summary>
public abstract class SvdMergeMethod(MethodDeclaration declaration)
    : MergeMethod(
        declaration with
        {
            BaseModel = BaseModelUse.Required,
            EmbeddingShapes = EmbeddingShapeRule.TruncateToBase,
            SkipsMismatchedInputs = true,
            Elementwise = false,
        }
    )
{
    /// <summary>
    /// Task vectors, singular vectors, orthogonalised blocks and LAPACK's workspace, in tensor-sized units.
    /// </summary>
    public override int ScratchBuffers(int inputCount) => 10;

    public override void Validate(MergeInputsInfo inputs)
    {
        if (inputs.Count < 2)
            throw new AlloyException(
                $"{Name}: tensor '{inputs.TensorName}' has no model besides the base model; list at least one "
                    + $"fine-tuned model under models:"
            );
    }

    /// <summary>
    /// Whether this tensor is merged as a matrix; by default every 2-D tensor is (FusionBench's rule).
    /// </summary>
    protected virtual bool IsMatrix(MergeInputs inputs) =>
        inputs.Shape.Length == 2 && inputs.Shape[0] > 0 && inputs.Shape[1] > 0;

    /// <summary>The factor on the mean task vector of tensors that are not merged as matrices.</summary>
    protected abstract double NonMatrixScale(MergeInputs inputs);

    /// <summary>
    /// A factor on each task vector (in <see cref="TaskVectorSet.Models"/> order) before anything else; null: 1 for
    /// all.
    /// </summary>
    protected virtual float[]? TaskScales(MergeInputs inputs) => null;

    /// <summary>Writes the merged task vector of a rows×cols matrix into <paramref name="delta"/>.</summary>
    protected abstract void MergeMatrix(
        MergeInputs inputs,
        TaskVectorSet tasks,
        int rows,
        int cols,
        DenseBackend linear,
        Span<float> delta
    );

    public sealed override void Merge(MergeInputs inputs, Span<float> output)
    {
        using var tasks = new TaskVectorSet(inputs, TaskScales(inputs));
        if (IsMatrix(inputs))
        {
            for (int i = 0; i < inputs.Count; i++)
                if (!DenseBackend.AllFinite(inputs[i]))
                    throw new AlloyException(
                        $"{Name}: tensor '{inputs.TensorName}' of model '{inputs.ModelNames[i]}' contains NaN or "
                            + $"infinity; an SVD-based merge needs finite weights"
                    );
            MergeMatrix(
                inputs,
                tasks,
                checked((int)inputs.Shape[0]),
                checked((int)inputs.Shape[1]),
                DenseBackend.Current,
                output
            );
        }
        else
        {
            tasks.Mean(output);
            TensorPrimitives.Multiply(output, (float)NonMatrixScale(inputs), output);
        }
        TensorPrimitives.Add(output, inputs[inputs.BaseIndex], output);
    }

    /// <summary>
    /// Copies the leading <paramref name="count"/> singular triplets of an SVD (U rows×r, S, Vᵀ r×cols) into slot
    /// [at, at + count) of concatenated factors: columns of <paramref name="uCat"/> (rows×catWidth), entries of
    /// <paramref name="sCat"/>, rows of <paramref name="vtCat"/> (catWidth×cols).
    /// </summary>
    protected static void CopyTriplets(
        ReadOnlySpan<float> u,
        ReadOnlySpan<float> s,
        ReadOnlySpan<float> vt,
        int rows,
        int cols,
        int r,
        int count,
        Span<float> uCat,
        Span<float> sCat,
        Span<float> vtCat,
        int catWidth,
        int at
    )
    {
        if (count == 0)
            return;
        for (int i = 0; i < rows; i++)
            u.Slice(i * r, count).CopyTo(uCat.Slice(i * catWidth + at, count));
        s[..count].CopyTo(sCat[at..]);
        vt[..(count * cols)].CopyTo(vtCat[(at * cols)..]);
    }

    /// <summary>The mean of singular values, summed in double.</summary>
    protected static double MeanOf(ReadOnlySpan<float> values)
    {
        double sum = 0;
        foreach (var v in values)
            sum += v;
        return sum / values.Length;
    }
}
