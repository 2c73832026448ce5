using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Alloy.Tensors;

/// <summary>
/// Bulk bfloat16 ⇄ float32 conversion. The vector widths are exposed (internally) so tests can check each one against
/// the scalar definition; <see cref="Widen"/> and <see cref="Narrow"/> pick the widest the hardware accelerates.
/// </summary>
internal static class BFloat16Kernels
{
    public static void Widen(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        int done = 0;
        if (Vector512.IsHardwareAccelerated)
            done = Widen512(source, destination);
        else if (Vector256.IsHardwareAccelerated)
            done = Widen256(source, destination);
        WidenScalar(source[done..], destination[done..]);
    }

    public static void Narrow(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        CheckLengths(source.Length, destination.Length);
        int done = 0;
        if (Vector512.IsHardwareAccelerated)
            done = Narrow512(source, destination);
        else if (Vector256.IsHardwareAccelerated)
            done = Narrow256(source, destination);
        NarrowScalar(source[done..], destination[done..]);
    }

    public static void WidenScalar(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        for (int i = 0; i < source.Length; i++)
            destination[i] = BitConverter.UInt32BitsToSingle((uint)source[i] << 16);
    }

    public static void NarrowScalar(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        CheckLengths(source.Length, destination.Length);
        for (int i = 0; i < source.Length; i++)
            destination[i] = BFloat16.Narrow(BitConverter.SingleToUInt32Bits(source[i]));
    }

    /// <summary>Converts the longest prefix that is a multiple of 32 elements; returns its length.</summary>
    public static int Widen512(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        ref ushort src = ref MemoryMarshal.GetReference(source);
        ref uint dst = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(destination));
        int end = source.Length - source.Length % Vector512<ushort>.Count;
        for (int i = 0; i < end; i += Vector512<ushort>.Count)
        {
            var (lower, upper) = Vector512.Widen(Vector512.LoadUnsafe(ref src, (nuint)i));
            (lower << 16).StoreUnsafe(ref dst, (nuint)i);
            (upper << 16).StoreUnsafe(ref dst, (nuint)(i + Vector512<uint>.Count));
        }
        return end;
    }

    /// <summary>Converts the longest prefix that is a multiple of 16 elements; returns its length.</summary>
    public static int Widen256(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        ref ushort src = ref MemoryMarshal.GetReference(source);
        ref uint dst = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(destination));
        int end = source.Length - source.Length % Vector256<ushort>.Count;
        for (int i = 0; i < end; i += Vector256<ushort>.Count)
        {
            var (lower, upper) = Vector256.Widen(Vector256.LoadUnsafe(ref src, (nuint)i));
            (lower << 16).StoreUnsafe(ref dst, (nuint)i);
            (upper << 16).StoreUnsafe(ref dst, (nuint)(i + Vector256<uint>.Count));
        }
        return end;
    }

    /// <summary>Converts the longest prefix that is a multiple of 32 elements; returns its length.</summary>
    public static int Narrow512(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        CheckLengths(source.Length, destination.Length);
        ref uint src = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(source));
        ref ushort dst = ref MemoryMarshal.GetReference(destination);
        int end = source.Length - source.Length % Vector512<ushort>.Count;
        for (int i = 0; i < end; i += Vector512<ushort>.Count)
        {
            var lower = Round(Vector512.LoadUnsafe(ref src, (nuint)i));
            var upper = Round(Vector512.LoadUnsafe(ref src, (nuint)(i + Vector512<uint>.Count)));
            Vector512.Narrow(lower, upper).StoreUnsafe(ref dst, (nuint)i);
        }
        return end;

        // Same arithmetic as BFloat16.Narrow, lane-wise; the result sits in the low 16 bits for Narrow to keep.
        // The NaN test compares signed: the sign is masked off, and AVX2 has no unsigned compare.
        static Vector512<uint> Round(Vector512<uint> bits)
        {
            var rounded = (bits + Vector512.Create(0x7FFFu) + ((bits >> 16) & Vector512<uint>.One)) >> 16;
            var nan = Vector512
                .GreaterThan((bits & Vector512.Create(0x7FFF_FFFFu)).AsInt32(), Vector512.Create(0x7F80_0000))
                .AsUInt32();
            return Vector512.ConditionalSelect(nan, Vector512.Create((uint)BFloat16.CanonicalNaN), rounded);
        }
    }

    /// <summary>Converts the longest prefix that is a multiple of 16 elements; returns its length.</summary>
    public static int Narrow256(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        CheckLengths(source.Length, destination.Length);
        ref uint src = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(source));
        ref ushort dst = ref MemoryMarshal.GetReference(destination);
        int end = source.Length - source.Length % Vector256<ushort>.Count;
        for (int i = 0; i < end; i += Vector256<ushort>.Count)
        {
            var lower = Round(Vector256.LoadUnsafe(ref src, (nuint)i));
            var upper = Round(Vector256.LoadUnsafe(ref src, (nuint)(i + Vector256<uint>.Count)));
            Vector256.Narrow(lower, upper).StoreUnsafe(ref dst, (nuint)i);
        }
        return end;

        static Vector256<uint> Round(Vector256<uint> bits)
        {
            var rounded = (bits + Vector256.Create(0x7FFFu) + ((bits >> 16) & Vector256<uint>.One)) >> 16;
            var nan = Vector256
                .GreaterThan((bits & Vector256.Create(0x7FFF_FFFFu)).AsInt32(), Vector256.Create(0x7F80_0000))
                .AsUInt32();
            return Vector256.ConditionalSelect(nan, Vector256.Create((uint)BFloat16.CanonicalNaN), rounded);
        }
    }

    private static void CheckLengths(int source, int destination)
    {
        if (source != destination)
        {
            throw new ArgumentException($"Source has {source} elements but destination has {destination}.");
        }
    }
}
