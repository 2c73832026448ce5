namespace Alloy.Tensors;

/// <summary>Element types of stored tensors, named as safetensors names them.</summary>
public enum DType
{
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    F8_E4M3,
    F8_E5M2,
}

public static class DTypes
{
    public static int Size(this DType dtype) =>
        dtype switch
        {
            DType.F64 or DType.I64 => 8,
            DType.F32 or DType.I32 => 4,
            DType.F16 or DType.BF16 or DType.I16 => 2,
            DType.I8 or DType.U8 or DType.Bool or DType.F8_E4M3 or DType.F8_E5M2 => 1,
            _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
        };

    /// <summary>Floating-point types take part in merge math; integer and boolean tensors are passed through.</summary>
    public static bool IsFloat(this DType dtype) =>
        dtype is DType.F64 or DType.F32 or DType.F16 or DType.BF16 or DType.F8_E4M3 or DType.F8_E5M2;

    /// <summary>The name used in safetensors headers (e.g. "BF16", "BOOL").</summary>
    public static string SafetensorsName(this DType dtype) => dtype == DType.Bool ? "BOOL" : dtype.ToString();

    public static bool TryParseSafetensors(string name, out DType dtype)
    {
        switch (name)
        {
            case "F64":
                dtype = DType.F64;
                return true;
            case "F32":
                dtype = DType.F32;
                return true;
            case "F16":
                dtype = DType.F16;
                return true;
            case "BF16":
                dtype = DType.BF16;
                return true;
            case "I64":
                dtype = DType.I64;
                return true;
            case "I32":
                dtype = DType.I32;
                return true;
            case "I16":
                dtype = DType.I16;
                return true;
            case "I8":
                dtype = DType.I8;
                return true;
            case "U8":
                dtype = DType.U8;
                return true;
            case "BOOL":
                dtype = DType.Bool;
                return true;
            case "F8_E4M3":
                dtype = DType.F8_E4M3;
                return true;
            case "F8_E5M2":
                dtype = DType.F8_E5M2;
                return true;
            default:
                dtype = default;
                return false;
        }
    }

    /// <summary>The PyTorch name (as written to config.json's torch_dtype).</summary>
    public static string TorchName(this DType dtype) =>
        dtype switch
        {
            DType.F64 => "float64",
            DType.F32 => "float32",
            DType.F16 => "float16",
            DType.BF16 => "bfloat16",
            DType.I64 => "int64",
            DType.I32 => "int32",
            DType.I16 => "int16",
            DType.I8 => "int8",
            DType.U8 => "uint8",
            DType.Bool => "bool",
            DType.F8_E4M3 => "float8_e4m3fn",
            DType.F8_E5M2 => "float8_e5m2",
            _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
        };

    /// <summary>Parses a PyTorch dtype name as written in config.json ("bfloat16", "torch.float16", …).</summary>
    public static bool TryParseTorch(string name, out DType dtype)
    {
        var bare = name.StartsWith("torch.", StringComparison.Ordinal) ? name["torch.".Length..] : name;
        foreach (var candidate in Enum.GetValues<DType>())
        {
            if (candidate.TorchName() == bare)
            {
                dtype = candidate;
                return true;
            }
        }
        (bool ok, dtype) = bare switch
        {
            "float" => (true, DType.F32),
            "half" => (true, DType.F16),
            "double" => (true, DType.F64),
            "long" => (true, DType.I64),
            "float8_e4m3" => (true, DType.F8_E4M3),
            _ => (false, default(DType)),
        };
        return ok;
    }
}
