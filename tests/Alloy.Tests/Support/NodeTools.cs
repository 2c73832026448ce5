using System.Diagnostics;
using System.Text.Json;
using Alloy.Tests.EndToEnd;

namespace Alloy.Tests.Support;

/// <summary>
/// Runs Hugging Face's own tokenizers library and Jinja renderer (npm packages in tests/tokenizers-node) on what
/// Alloy writes. The locked packages are installed on first use (`npm ci`), so `dotnet test` alone runs them on a fresh
/// clone. These checks never skip: a failed install fails the test with npm's message.
/// </summary>
public static class NodeTools
{
    public sealed record Encoding(int[] Ids, string[] Tokens);

    public sealed record EncodeResult(int VocabSize, Encoding[] Encodings);

    public static string Folder => Path.Combine(ExampleTests.RepositoryRoot, "tests", "tokenizers-node");

    /// <summary>
    /// Loads <paramref name="tokenizerJson"/> with the tokenizers library and encodes each text (no special tokens
    /// added).
    /// </summary>
    public static EncodeResult Encode(string tokenizerJson, params string[] texts)
    {
        var output = Run("encode.js", [tokenizerJson, .. texts]);
        using var document = JsonDocument.Parse(output);
        var root = document.RootElement;
        var encodings = root.GetProperty("encodings")
            .EnumerateArray()
            .Select(e => new Encoding(
                e.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray(),
                e.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToArray()
            ))
            .ToArray();
        return new EncodeResult(root.GetProperty("vocabSize").GetInt32(), encodings);
    }

    /// <summary>Renders a chat template with @huggingface/jinja.</summary>
    public static string RenderTemplate(string template, object context)
    {
        var folder = Path.Combine(Path.GetTempPath(), "alloy-tests", "jinja-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(folder);
        try
        {
            File.WriteAllText(Path.Combine(folder, "template.jinja"), template);
            File.WriteAllText(Path.Combine(folder, "context.json"), JsonSerializer.Serialize(context));
            return Run(
                "render-template.js",
                [Path.Combine(folder, "template.jinja"), Path.Combine(folder, "context.json")]
            );
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static readonly Lazy<string?> InstallProblem = new(Install);

    /// <summary>
    /// A folder with one sub-folder per test tokenizer (tokenizer.json and tokenizer_config.json: real GPT-2, Llama-2,
    /// Mistral, Llama-3 and Qwen vocabularies and variants), written once per test run by tokenizer-files.js from the
    /// npm packages.
    /// </summary>
    public static string TokenizerFiles => TokenizerFolder.Value;

    private static readonly Lazy<string> TokenizerFolder = new(() =>
    {
        var folder = Path.Combine(Folder, "node_modules", ".alloy-tokenizer-files");
        if (Directory.Exists(folder))
            Directory.Delete(folder, recursive: true);
        Run("tokenizer-files.js", [folder]);
        return folder;
    });

    // Every dependency of the locked package.json, so a checkout that gained a package installs again.
    private static bool Installed
    {
        get
        {
            using var package = JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder, "package.json")));
            return package
                .RootElement.GetProperty("dependencies")
                .EnumerateObject()
                .All(d => Directory.Exists(Path.Combine(Folder, "node_modules", d.Name)));
        }
    }

    /// <summary>
    /// Runs `npm ci` once per test run when the packages are missing; returns what went wrong, or null.
    /// </summary>
    private static string? Install()
    {
        if (Installed)
            return null;
        var (code, output) = Execute("npm", ["ci", "--prefix", Folder, "--no-audit", "--no-fund"]);
        return code == 0 && Installed ? null : $"`npm ci --prefix tests/tokenizers-node` failed ({code}): {output}";
    }

    private static string Run(string script, string[] arguments)
    {
        if (InstallProblem.Value is { } problem)
            Assert.Fail(problem);
        var (code, output) = Execute("node", [Path.Combine(Folder, script), .. arguments]);
        if (code != 0)
            Assert.Fail($"node {script} failed ({code}): {output}");
        return output;
    }

    /// <summary>
    /// Runs a program in <see cref="Folder"/>; returns its exit code and stdout (stderr when it fails).
    /// </summary>
    private static (int Code, string Output) Execute(string program, IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(program)
        {
            WorkingDirectory = Folder,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in arguments)
            start.ArgumentList.Add(argument);
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException($"{program} did not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, $"cannot run {program} ({e.Message}): these checks need Node.js and npm on PATH");
        }
        using (process)
        {
            var stderr = process.StandardError.ReadToEndAsync();
            var stdout = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, process.ExitCode == 0 ? stdout : stderr.Result);
        }
    }
}
