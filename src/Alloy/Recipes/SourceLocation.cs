namespace Alloy.Recipes;

/// <summary>
/// A position in a config file; line and column are 1-based. <see cref="Code"/> marks what a program built.
/// </summary>
public readonly record struct SourceLocation(string File, int Line, int Column)
{
    /// <summary>Where settings made through the recipe API (not read from a file) are.</summary>
    public static SourceLocation Code { get; } = new("recipe built in code", 0, 0);

    public override string ToString() => Line == 0 ? File : $"{File}:{Line}:{Column}";
}
