using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text;

namespace Alloy.Tensors;

/// <summary>
/// A counter-based random stream: the draw for element <c>i</c> is a pure function of (seed, tensor name, model index,
/// i), so a tensor gives the same numbers whether it is processed whole or in chunks, on any number of threads.
/// </summary>
/// <remarks>
/// Generator: SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014) used in
/// counter form. <see cref="Bits"/>(i) is exactly the i-th output of SplitMix64 seeded with the stream key: the Weyl
/// sequence <c>key + (i + 1)·γ</c> (γ = 2^64/φ, odd) passed through its finalizer (two xor-shift-multiply rounds,
/// constants from Stafford's "Mix13"). Each output is a bijection of its counter, so there are no repeats within a
/// stream, and it passes BigCrush. Keys are themselves SplitMix64-mixed from the seed, a 64-bit FNV-1a hash of the
/// UTF-8 tensor name, and the model index, so distinct inputs scatter over the whole key space. These definitions are
/// part of Alloy's output format: changing them changes every random merge.
/// </remarks>
public readonly struct RandomStream
{
    /// <summary>The golden gamma: 2^64 divided by the golden ratio, rounded to odd.</summary>
    internal const ulong Gamma = 0x9E37_79B9_7F4A_7C15;
    private const ulong MixMultiplier1 = 0xBF58_476D_1CE4_E5B9;
    private const ulong MixMultiplier2 = 0x94D0_49BB_1331_11EB;
    private const float UniformScale = 1f / (1 << 24);
    private const double UnitScale53 = 1.0 / (1L << 53);

    private readonly ulong _key;

    // Box–Muller needs two independent draws per element; the second comes from a sibling stream.
    private readonly ulong _normalKey;

    private RandomStream(ulong key)
    {
        _key = key;
        _normalKey = Mix(key ^ 0x6A09_E667_F3BC_C909); // fractional bits of √2: any fixed constant works
    }

    /// <summary>The stream for one model's draws into one output tensor.</summary>
    public static RandomStream For(ulong seed, string tensorName, int modelIndex)
    {
        ArgumentNullException.ThrowIfNull(tensorName);
        // Each step is a bijection of the value it adds, so streams that differ only in model index (or only in name
        // hash, or only in seed) always get different keys.
        ulong key = Mix(seed + Gamma);
        key = Mix(key + HashName(tensorName));
        key = Mix(key + (ulong)(long)modelIndex);
        return new RandomStream(key);
    }

    /// <summary>64 random bits for element <paramref name="index"/>.</summary>
    public ulong Bits(long index) => Mix(_key + ((ulong)index + 1) * Gamma);

    /// <summary>A float in [0, 1) with 24-bit resolution: every value is a multiple of 2^-24.</summary>
    public float Uniform(long index) => (Bits(index) >> 40) * UniformScale;

    /// <summary>A standard normal draw (Box–Muller over two independent 53-bit uniforms).</summary>
    /// <remarks>Uses Math.Log/Math.Cos, which are deterministic on one platform but may differ in the last bit across
    /// C runtimes.</remarks>
    public double Normal(long index)
    {
        ulong counter = ((ulong)index + 1) * Gamma;
        double radiusUniform = ((Mix(_key + counter) >> 11) + 1) * UnitScale53; // (0, 1]: the log stays finite
        double angleUniform = (Mix(_normalKey + counter) >> 11) * UnitScale53; // [0, 1)
        return Math.Sqrt(-2.0 * Math.Log(radiusUniform)) * Math.Cos(2.0 * Math.PI * angleUniform);
    }

    /// <summary>
    /// A permutation of [0, <paramref name="count"/>): Fisher–Yates from the last position down, the swap at position
    /// i drawn from <see cref="Uniform"/>(i), so a seeded data order is reproducible anywhere.
    /// </summary>
    public int[] Permutation(int count)
    {
        var order = new int[count];
        for (int i = 0; i < count; i++)
            order[i] = i;
        for (int i = count - 1; i > 0; i--)
        {
            int j = (int)(Uniform(i) * (i + 1));
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    /// <summary><c>destination[i] = Uniform(startIndex + i)</c>, vectorized.</summary>
    public void FillUniform(long startIndex, Span<float> destination)
    {
        int done = 0;
        if (Vector512.IsHardwareAccelerated)
            done = FillUniform512(startIndex, destination);
        else if (Vector256.IsHardwareAccelerated)
            done = FillUniform256(startIndex, destination);
        FillUniformScalar(startIndex + done, destination[done..]);
    }

    internal void FillUniformScalar(long startIndex, Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++)
            destination[i] = Uniform(startIndex + i);
    }

    /// <summary>Fills the longest prefix that is a multiple of 16; returns its length.</summary>
    internal int FillUniform512(long startIndex, Span<float> destination)
    {
        const int lanes = 16; // two vectors of 8 counters narrow into one vector of 16 floats
        int end = destination.Length - destination.Length % lanes;
        if (end == 0)
            return 0;
        ref float dst = ref MemoryMarshal.GetReference(destination);
        // Walk the Weyl sequence directly: lane j of `lower` holds key + (start + i + j + 1)·γ (mod 2^64).
        var lanesGamma = Vector512.Create(0UL, 1, 2, 3, 4, 5, 6, 7) * Gamma;
        var lower = Vector512.Create(_key + ((ulong)startIndex + 1) * Gamma) + lanesGamma;
        var halfStep = Vector512.Create(unchecked(8 * Gamma));
        var step = Vector512.Create(unchecked(16 * Gamma));
        var scale = Vector512.Create(UniformScale);
        for (int i = 0; i < end; i += lanes)
        {
            var a = Mix(lower) >> 40;
            var b = Mix(lower + halfStep) >> 40;
            // The 24-bit values are exact in float, so this matches Uniform bit for bit.
            var floats = Vector512.ConvertToSingle(Vector512.Narrow(a, b).AsInt32()) * scale;
            floats.StoreUnsafe(ref dst, (nuint)i);
            lower += step;
        }
        return end;
    }

    /// <summary>Fills the longest prefix that is a multiple of 8; returns its length.</summary>
    internal int FillUniform256(long startIndex, Span<float> destination)
    {
        const int lanes = 8;
        int end = destination.Length - destination.Length % lanes;
        if (end == 0)
            return 0;
        ref float dst = ref MemoryMarshal.GetReference(destination);
        var lanesGamma = Vector256.Create(0UL, 1, 2, 3) * Gamma;
        var lower = Vector256.Create(_key + ((ulong)startIndex + 1) * Gamma) + lanesGamma;
        var halfStep = Vector256.Create(unchecked(4 * Gamma));
        var step = Vector256.Create(unchecked(8 * Gamma));
        var scale = Vector256.Create(UniformScale);
        for (int i = 0; i < end; i += lanes)
        {
            var a = Mix(lower) >> 40;
            var b = Mix(lower + halfStep) >> 40;
            var floats = Vector256.ConvertToSingle(Vector256.Narrow(a, b).AsInt32()) * scale;
            floats.StoreUnsafe(ref dst, (nuint)i);
            lower += step;
        }
        return end;
    }

    /// <summary>The SplitMix64 finalizer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * MixMultiplier1;
        z = (z ^ (z >> 27)) * MixMultiplier2;
        return z ^ (z >> 31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ulong> Mix(Vector512<ulong> z)
    {
        z = (z ^ (z >> 30)) * MixMultiplier1;
        z = (z ^ (z >> 27)) * MixMultiplier2;
        return z ^ (z >> 31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ulong> Mix(Vector256<ulong> z)
    {
        z = (z ^ (z >> 30)) * MixMultiplier1;
        z = (z ^ (z >> 27)) * MixMultiplier2;
        return z ^ (z >> 31);
    }

    /// <summary>
    /// 64-bit FNV-1a over the UTF-8 bytes: stable across processes and platforms, unlike string.GetHashCode.
    /// </summary>
    internal static ulong HashName(string name)
    {
        const ulong offsetBasis = 0xCBF2_9CE4_8422_2325;
        const ulong prime = 0x0000_0100_0000_01B3;
        ulong hash = offsetBasis;
        foreach (byte b in Encoding.UTF8.GetBytes(name))
            hash = (hash ^ b) * prime;
        return hash;
    }
}
