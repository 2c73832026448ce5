using Alloy.Tests.EndToEnd;

namespace Alloy.Tests.Repository;

/// <summary>The house style (.editorconfig) that a formatter cannot enforce alone.</summary>
public sealed class HouseStyleTests
{
    private const int Width = 120;

    /// <summary>
    /// Every line of C# in src/, tests/, bench/ and fuzz/ fits in 120 columns, except what cannot be broken without
    /// changing it: the content of raw string literals (data written as it is read), verbatim strings (regular
    /// expressions) and addresses.
    /// </summary>
    [Fact]
    public void No_line_of_CSharp_is_longer_than_120_columns()
    {
        var root = ExampleTests.RepositoryRoot;
        var files = new[] { "src", "tests", "bench", "fuzz" }
            .SelectMany(folder =>
                Directory.EnumerateFiles(Path.Combine(root, folder), "*.cs", SearchOption.AllDirectories)
            )
            .Where(file =>
                !file.Split(Path.DirectorySeparatorChar).Any(part => part is "obj" or "bin" or "node_modules")
            );
        var long_ = new List<string>();
        foreach (var file in files)
        {
            bool inRaw = false;
            int number = 0;
            foreach (var line in File.ReadLines(file))
            {
                number++;
                int quotes = CountRawQuotes(line);
                bool exempt =
                    inRaw
                    || quotes > 0
                    || line.TrimStart().StartsWith("@\"", StringComparison.Ordinal)
                    || line.Contains("https://", StringComparison.Ordinal)
                    || line.Contains("http://", StringComparison.Ordinal);
                if (quotes % 2 == 1)
                    inRaw = !inRaw;
                if (!exempt && line.Length > Width)
                    long_.Add($"{Path.GetRelativePath(root, file)}:{number}: {line.Length} columns");
            }
        }
        Assert.True(long_.Count == 0, $"{long_.Count} lines over {Width} columns:\n" + string.Join("\n", long_));
    }

    private static int CountRawQuotes(string line)
    {
        int count = 0;
        for (
            int at = line.IndexOf("\"\"\"", StringComparison.Ordinal);
            at >= 0;
            at = line.IndexOf("\"\"\"", at + 3, StringComparison.Ordinal)
        )
            count++;
        return count;
    }
}
