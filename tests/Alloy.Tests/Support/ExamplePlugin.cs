namespace Alloy.Tests.Support;

/// <summary>The plugin assembly of tests/Alloy.Plugins.Example (trimmed_mean, and the pause fixture).</summary>
public static class ExamplePlugin
{
    /// <summary>
    /// tests/Alloy.Plugins.Example's assembly, built beside this one (a build dependency, never loaded by reference).
    /// </summary>
    public static string Path
    {
        get
        {
            // bin/<configuration>/net10.0 of this project → the same folders of the plugin project.
            var here = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(System.IO.Path.DirectorySeparatorChar));
            var (framework, configuration) = (here.Name, here.Parent!.Name);
            var tests = here.Parent!.Parent!.Parent!.Parent!.FullName;
            return System.IO.Path.Combine(
                tests,
                "Alloy.Plugins.Example",
                "bin",
                configuration,
                framework,
                "Alloy.Plugins.Example.dll"
            );
        }
    }
}
