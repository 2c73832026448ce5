using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Alloy.LinearAlgebra;

/// <summary>
/// Blocked float32 matrix multiply (Goto's scheme): panels of op(B) and op(A) are packed into contiguous slivers
/// (α and the transposes are applied while packing, edges padded with zeros), and a register-blocked kernel computes
/// MR×NR tiles of C with fused multiply-adds. Row blocks of C run in parallel; each element of C is summed by one
/// thread in a fixed order over k, so results do not depend on the thread count.
/// </summary>
internal static unsafe class ManagedGemm
{
    private const int MR = 6;
    private static readonly int W = Vector<float>.Count;
    private static readonly int NR = 2 * Vector<float>.Count;
    private const int KC = 256;
    private const int MC = 16 * MR;
    private const int NC = 2048;

    /// <summary>Below this many multiply-adds, the parallel loop costs more than it saves.</summary>
    private const long ParallelWork = 1L << 21;

    /// <summary>C = α·op(A)·op(B) + β·C; <paramref name="parallel"/> lets large products use every core.</summary>
    public static void Run(
        bool transA,
        bool transB,
        int m,
        int n,
        int k,
        float alpha,
        ReadOnlySpan<float> a,
        int lda,
        ReadOnlySpan<float> b,
        int ldb,
        float beta,
        Span<float> c,
        int ldc,
        bool parallel = true
    )
    {
        for (int i = 0; i < m; i++)
        {
            var row = c.Slice(i * ldc, n);
            if (beta == 0)
                row.Clear();
            else if (beta != 1)
                System.Numerics.Tensors.TensorPrimitives.Multiply(row, beta, row);
        }
        if (m == 0 || n == 0 || k == 0 || alpha == 0)
            return;

        int nc = Math.Min(NC, RoundUp(n, NR));
        using var packedB = PooledArray.Rent((long)KC * nc);
        fixed (
            float* pa = a,
                pb = b,
                pc = c,
                pbPacked = packedB.Array
        )
        {
            var job = new Job(transA, transB, m, alpha, pa, lda, pb, ldb, pc, ldc, pbPacked);
            for (int jc = 0; jc < n; jc += NC)
            {
                int ncCur = Math.Min(NC, n - jc);
                for (int pcStart = 0; pcStart < k; pcStart += KC)
                {
                    int kcCur = Math.Min(KC, k - pcStart);
                    int blocks = (m + MC - 1) / MC;
                    if (blocks == 1)
                    {
                        // One row block uses each sliver of B once: pack it just before use, while it is in L1.
                        job.RowBlock(0, pcStart, kcCur, jc, ncCur, packSlivers: true);
                        continue;
                    }
                    job.PackB(pcStart, kcCur, jc, ncCur);
                    if (!parallel || (long)m * ncCur * kcCur < ParallelWork)
                    {
                        for (int block = 0; block < blocks; block++)
                            job.RowBlock(block, pcStart, kcCur, jc, ncCur);
                    }
                    else
                    {
                        Parallel.For(0, blocks, block => job.RowBlock(block, pcStart, kcCur, jc, ncCur));
                    }
                }
            }
        }
    }

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>
    /// The arguments of one multiply, as pointers so parallel loops can share them (the caller pins them).
    /// </summary>
    private sealed class Job(
        bool transA,
        bool transB,
        int m,
        float alpha,
        float* a,
        int lda,
        float* b,
        int ldb,
        float* c,
        int ldc,
        float* packedB
    )
    {
        /// <summary>Packs op(B)[pc.., jc..] into slivers of NR columns, k-major within each sliver.</summary>
        public void PackB(int pc, int kc, int jc, int nc)
        {
            int slivers = (nc + NR - 1) / NR;
            for (int sliver = 0; sliver < slivers; sliver++)
            {
                int j0 = jc + sliver * NR;
                PackSliver(pc, kc, j0, Math.Min(NR, jc + nc - j0), packedB + (long)sliver * kc * NR);
            }
        }

        /// <summary>Packs op(B)[pc.., j0..j0+cols) into dst (kc × NR, zero-padded columns).</summary>
        private void PackSliver(int pc, int kc, int j0, int cols, float* dst)
        {
            int p = 0;
            if (cols == NR)
            {
                // Whole slivers: B's rows are op(B)'s columns, so a transposed B is packed by 8×8 block transposes;
                // an untransposed one by vector copies of its rows.
                if (transB)
                    p = PackTransposedSliver(b + (long)j0 * ldb + pc, ldb, kc, dst);
                else
                    for (; p < kc; p++)
                        new ReadOnlySpan<float>(b + (long)(pc + p) * ldb + j0, NR).CopyTo(
                            new Span<float>(dst + (long)p * NR, NR)
                        );
            }
            for (; p < kc; p++)
            {
                float* d = dst + (long)p * NR;
                int row = pc + p;
                for (int q = 0; q < cols; q++)
                    d[q] = transB ? b[(long)(j0 + q) * ldb + row] : b[(long)row * ldb + j0 + q];
                for (int q = cols; q < NR; q++)
                    d[q] = 0;
            }
        }

        /// <summary>
        /// C[block's rows, jc..jc+nc) += α·op(A)·op(B) over k in [pc, pc+kc), from B packed by <see cref="PackB"/>, or,
        /// with <paramref name="packSlivers"/>, packing each sliver into the start of the B buffer just before use.
        /// </summary>
        public void RowBlock(int block, int pc, int kc, int jc, int nc, bool packSlivers = false)
        {
            int i0 = block * MC,
                mc = Math.Min(MC, m - i0);
            int panels = (mc + MR - 1) / MR;
            using var packedA = PooledArray.Rent((long)panels * MR * kc);
            fixed (float* pa = packedA.Array)
            {
                PackA(pa, i0, mc, pc, kc);
                float* tile = stackalloc float[MR * NR];
                int slivers = (nc + NR - 1) / NR;
                for (int sliver = 0; sliver < slivers; sliver++)
                {
                    int j0 = jc + sliver * NR,
                        cols = Math.Min(NR, jc + nc - j0);
                    float* bs = packSlivers ? packedB : packedB + (long)sliver * kc * NR;
                    if (packSlivers)
                        PackSliver(pc, kc, j0, cols, bs);
                    for (int panel = 0; panel < panels; panel++)
                    {
                        int r0 = i0 + panel * MR,
                            rows = Math.Min(MR, m - r0);
                        float* cTile = c + (long)r0 * ldc + j0;
                        if (rows == MR && cols == NR)
                        {
                            Kernel(pa + (long)panel * MR * kc, bs, kc, cTile, ldc);
                        }
                        else
                        {
                            // Edge tile: compute into a zeroed scratch tile, then add the part that exists.
                            new Span<float>(tile, MR * NR).Clear();
                            Kernel(pa + (long)panel * MR * kc, bs, kc, tile, NR);
                            for (int r = 0; r < rows; r++)
                            for (int q = 0; q < cols; q++)
                                cTile[(long)r * ldc + q] += tile[r * NR + q];
                        }
                    }
                }
            }
        }

        /// <summary>Packs α·op(A)[i0.., pc..] into panels of MR rows, k-major within each panel.</summary>
        private void PackA(float* dst, int i0, int mc, int pc, int kc)
        {
            for (int panel = 0; panel * MR < mc; panel++)
            {
                int r0 = i0 + panel * MR,
                    rows = Math.Min(MR, m - r0);
                float* d = dst + (long)panel * MR * kc;
                // A whole panel of an untransposed A: its rows are transposed 8 columns at a time.
                int p = !transA && rows == MR ? PackTransposedPanel(a + (long)r0 * lda + pc, lda, kc, alpha, d) : 0;
                for (d += (long)p * MR; p < kc; p++, d += MR)
                {
                    int col = pc + p;
                    for (int r = 0; r < rows; r++)
                        d[r] = alpha * (transA ? a[(long)col * lda + r0 + r] : a[(long)(r0 + r) * lda + col]);
                    for (int r = rows; r < MR; r++)
                        d[r] = 0;
                }
            }
        }
    }

    /// <summary>
    /// dst[p·NR + q] = src[q·ld + p] for q &lt; NR and p up to a multiple of 8 below kc, by 8×8 transposes in AVX
    /// registers; returns how many p were packed (0 without AVX), the rest being left to the caller.
    /// </summary>
    private static int PackTransposedSliver(float* src, int ld, int kc, float* dst)
    {
        if (!Avx.IsSupported || NR % 8 != 0)
            return 0;
        int p = 0;
        for (; p + 8 <= kc; p += 8)
        {
            for (int q0 = 0; q0 < NR; q0 += 8)
            {
                float* s = src + (long)q0 * ld + p;
                var r0 = Avx.LoadVector256(s);
                var r1 = Avx.LoadVector256(s + ld);
                var r2 = Avx.LoadVector256(s + 2L * ld);
                var r3 = Avx.LoadVector256(s + 3L * ld);
                var r4 = Avx.LoadVector256(s + 4L * ld);
                var r5 = Avx.LoadVector256(s + 5L * ld);
                var r6 = Avx.LoadVector256(s + 6L * ld);
                var r7 = Avx.LoadVector256(s + 7L * ld);
                Transpose8x8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
                float* d = dst + (long)p * NR + q0;
                Avx.Store(d, r0);
                Avx.Store(d + NR, r1);
                Avx.Store(d + 2 * NR, r2);
                Avx.Store(d + 3 * NR, r3);
                Avx.Store(d + 4 * NR, r4);
                Avx.Store(d + 5 * NR, r5);
                Avx.Store(d + 6 * NR, r6);
                Avx.Store(d + 7 * NR, r7);
            }
        }
        return p;
    }

    /// <summary>
    /// dst[p·MR + r] = α·src[r·ld + p] for the MR = 6 rows of a panel and p up to a multiple of 8 below kc (two zero
    /// rows fill the 8×8 transpose); returns how many p were packed (0 without AVX).
    /// </summary>
    private static int PackTransposedPanel(float* src, int ld, int kc, float alpha, float* dst)
    {
        if (!Avx.IsSupported)
            return 0;
        var scale = Vector256.Create(alpha);
        int p = 0;
        for (; p + 8 <= kc; p += 8)
        {
            float* s = src + p;
            var r0 = Avx.Multiply(Avx.LoadVector256(s), scale);
            var r1 = Avx.Multiply(Avx.LoadVector256(s + ld), scale);
            var r2 = Avx.Multiply(Avx.LoadVector256(s + 2L * ld), scale);
            var r3 = Avx.Multiply(Avx.LoadVector256(s + 3L * ld), scale);
            var r4 = Avx.Multiply(Avx.LoadVector256(s + 4L * ld), scale);
            var r5 = Avx.Multiply(Avx.LoadVector256(s + 5L * ld), scale);
            var r6 = Vector256<float>.Zero;
            var r7 = Vector256<float>.Zero;
            Transpose8x8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
            float* d = dst + (long)p * MR;
            Store6(d, r0);
            Store6(d + MR, r1);
            Store6(d + 2 * MR, r2);
            Store6(d + 3 * MR, r3);
            Store6(d + 4 * MR, r4);
            Store6(d + 5 * MR, r5);
            Store6(d + 6 * MR, r6);
            Store6(d + 7 * MR, r7);
        }
        return p;
    }

    /// <summary>The first six floats of <paramref name="v"/>: four, then two as one 64-bit store.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store6(float* d, Vector256<float> v)
    {
        Sse.Store(d, v.GetLower());
        Sse2.StoreLow((double*)(d + 4), v.GetUpper().AsDouble());
    }

    /// <summary>Transposes the 8×8 block whose rows are r0…r7: afterwards r_i holds what was column i.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(
        ref Vector256<float> r0,
        ref Vector256<float> r1,
        ref Vector256<float> r2,
        ref Vector256<float> r3,
        ref Vector256<float> r4,
        ref Vector256<float> r5,
        ref Vector256<float> r6,
        ref Vector256<float> r7
    )
    {
        // Pairs, then quads within each 128-bit lane, then the lanes.
        var a0 = Avx.UnpackLow(r0, r1);
        var a1 = Avx.UnpackHigh(r0, r1);
        var a2 = Avx.UnpackLow(r2, r3);
        var a3 = Avx.UnpackHigh(r2, r3);
        var a4 = Avx.UnpackLow(r4, r5);
        var a5 = Avx.UnpackHigh(r4, r5);
        var a6 = Avx.UnpackLow(r6, r7);
        var a7 = Avx.UnpackHigh(r6, r7);
        var b0 = Avx.Shuffle(a0, a2, 0x44);
        var b1 = Avx.Shuffle(a0, a2, 0xEE);
        var b2 = Avx.Shuffle(a1, a3, 0x44);
        var b3 = Avx.Shuffle(a1, a3, 0xEE);
        var b4 = Avx.Shuffle(a4, a6, 0x44);
        var b5 = Avx.Shuffle(a4, a6, 0xEE);
        var b6 = Avx.Shuffle(a5, a7, 0x44);
        var b7 = Avx.Shuffle(a5, a7, 0xEE);
        r0 = Avx.Permute2x128(b0, b4, 0x20);
        r1 = Avx.Permute2x128(b1, b5, 0x20);
        r2 = Avx.Permute2x128(b2, b6, 0x20);
        r3 = Avx.Permute2x128(b3, b7, 0x20);
        r4 = Avx.Permute2x128(b0, b4, 0x31);
        r5 = Avx.Permute2x128(b1, b5, 0x31);
        r6 = Avx.Permute2x128(b2, b6, 0x31);
        r7 = Avx.Permute2x128(b3, b7, 0x31);
    }

    /// <summary>C[0..MR, 0..NR] += Apanel·Bsliver over kc steps; 12 vector accumulators stay in registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel(float* ap, float* bp, int kc, float* c, int ldc)
    {
        Vector<float> c00 = default,
            c01 = default,
            c10 = default,
            c11 = default,
            c20 = default,
            c21 = default;
        Vector<float> c30 = default,
            c31 = default,
            c40 = default,
            c41 = default,
            c50 = default,
            c51 = default;
        int w = W;
        for (int p = 0; p < kc; p++, ap += MR, bp += 2 * w)
        {
            var b0 = Unsafe.ReadUnaligned<Vector<float>>(bp);
            var b1 = Unsafe.ReadUnaligned<Vector<float>>(bp + w);
            var a0 = new Vector<float>(ap[0]);
            c00 = Vector.FusedMultiplyAdd(a0, b0, c00);
            c01 = Vector.FusedMultiplyAdd(a0, b1, c01);
            var a1 = new Vector<float>(ap[1]);
            c10 = Vector.FusedMultiplyAdd(a1, b0, c10);
            c11 = Vector.FusedMultiplyAdd(a1, b1, c11);
            var a2 = new Vector<float>(ap[2]);
            c20 = Vector.FusedMultiplyAdd(a2, b0, c20);
            c21 = Vector.FusedMultiplyAdd(a2, b1, c21);
            var a3 = new Vector<float>(ap[3]);
            c30 = Vector.FusedMultiplyAdd(a3, b0, c30);
            c31 = Vector.FusedMultiplyAdd(a3, b1, c31);
            var a4 = new Vector<float>(ap[4]);
            c40 = Vector.FusedMultiplyAdd(a4, b0, c40);
            c41 = Vector.FusedMultiplyAdd(a4, b1, c41);
            var a5 = new Vector<float>(ap[5]);
            c50 = Vector.FusedMultiplyAdd(a5, b0, c50);
            c51 = Vector.FusedMultiplyAdd(a5, b1, c51);
        }
        Add(c, w, c00, c01);
        Add(c + ldc, w, c10, c11);
        Add(c + 2L * ldc, w, c20, c21);
        Add(c + 3L * ldc, w, c30, c31);
        Add(c + 4L * ldc, w, c40, c41);
        Add(c + 5L * ldc, w, c50, c51);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Add(float* row, int w, Vector<float> lo, Vector<float> hi)
    {
        Unsafe.WriteUnaligned(row, Unsafe.ReadUnaligned<Vector<float>>(row) + lo);
        Unsafe.WriteUnaligned(row + w, Unsafe.ReadUnaligned<Vector<float>>(row + w) + hi);
    }
}
