namespace Alloy.Bench;

/// <summary>What to do about the PyTorch column when Debian's python3-torch is missing.</summary>
public enum TorchMode
{
    Auto,
    Skip,
}

/// <summary>Finds (or installs with apt) the PyTorch that the reference column runs on.</summary>
public static class Torch
{
    /// <summary>The torch version, or null with <paramref name="note"/> saying why the column is skipped.</summary>
    public static string? Ensure(TorchMode mode, Action<string> log, out string note)
    {
        note = "";
        if (mode == TorchMode.Skip)
        {
            note = "skipped (--torch skip)";
            return null;
        }
        var version = Version();
        if (version is not null)
            return version;

        log("python3-torch is missing; installing it with apt-get (Debian's package, as the benchmark documents)");
        var environment = new Dictionary<string, string> { ["DEBIAN_FRONTEND"] = "noninteractive" };
        var install = ChildProcess.Run("apt-get", ["install", "-y", "-q", "python3-torch"], environment);
        if (!install.Succeeded)
        {
            // A fresh machine may not have read the package lists yet.
            ChildProcess.Run("apt-get", ["update", "-q"], environment);
            install = ChildProcess.Run("apt-get", ["install", "-y", "-q", "python3-torch"], environment);
        }
        version = Version();
        if (version is null)
            note = $"skipped: python3-torch is not installed and apt-get could not install it ({install.FirstError})";
        return version;
    }

    public static string Script => Path.Combine(AppContext.BaseDirectory, "torch_merge.py");

    /// <summary>
    /// Debian's interpreter, which python3-torch installs into; a python3 earlier on PATH (pyenv) would not see it.
    /// </summary>
    public static string Python => File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

    private static string? Version() =>
        ChildProcess.Output(Python, "-c", "import torch, numpy; print(torch.__version__)");
}
