using System.Reflection;

namespace Alloy.Methods;

/// <summary>
/// The merge methods by name. Alloy's own are found in its assembly, a plugin's in the plugin's, the same way: every
/// public, non-abstract <see cref="MergeMethod"/> with a public parameterless constructor; <see cref="Register"/> adds
/// one made in code. So a new method is its class alone: no list to edit.
/// </summary>
public static class MethodRegistry
{
    private static readonly Lock Gate = new();
    private static IReadOnlyList<MergeMethod> s_all = Discover(typeof(MergeMethod).Assembly);

    /// <summary>Alloy's own methods, by name.</summary>
    public static IReadOnlyList<MergeMethod> BuiltIn { get; } = s_all;

    /// <summary>Alloy's methods and every method registered since, by name.</summary>
    public static IReadOnlyList<MergeMethod> All => Volatile.Read(ref s_all);

    public static MergeMethod? Find(string name) => All.FirstOrDefault(m => m.Name == name);

    /// <summary>
    /// Makes <paramref name="method"/> available to recipes by its name. Registering the same class again does nothing;
    /// another class under a taken name is an <see cref="AlloyException"/>.
    /// </summary>
    public static void Register(MergeMethod method)
    {
        lock (Gate)
        {
            if (Find(method.Name) is { } existing)
            {
                if (existing.GetType() == method.GetType())
                    return;
                throw new AlloyException(
                    $"merge method '{method.Name}' of {Describe(method.GetType())} clashes with the method of that "
                        + $"name from {Describe(existing.GetType())}; rename one of them"
                );
            }
            Volatile.Write(ref s_all, [.. s_all.Append(method).OrderBy(m => m.Name, StringComparer.Ordinal)]);
        }
    }

    /// <summary>
    /// Loads a .NET assembly of merge methods (<c>alloy merge --plugin FILE.dll</c>) and registers each one.
    /// </summary>
    public static IReadOnlyList<MergeMethod> LoadPlugin(string path)
    {
        if (!File.Exists(path))
            throw new AlloyException($"plugin '{path}' does not exist");
        Assembly assembly;
        try
        {
            assembly = Assembly.LoadFrom(Path.GetFullPath(path));
        }
        catch (Exception e) when (e is BadImageFormatException or FileLoadException)
        {
            throw new AlloyException(
                $"plugin '{path}' is not a .NET assembly Alloy can load ({e.Message.Split('\n')[0].TrimEnd('.')})"
            );
        }
        var methods = Discover(assembly);
        if (methods.Count == 0)
            throw new AlloyException(
                $"plugin '{path}' has no merge methods (public classes deriving from Alloy.Methods.MergeMethod with a "
                    + $"public parameterless constructor)"
            );
        foreach (var method in methods)
            Register(method);
        return methods;
    }

    /// <summary>
    /// One instance of every public, non-abstract method class of <paramref name="assembly"/> with a public
    /// parameterless constructor, by name.
    /// </summary>
    public static IReadOnlyList<MergeMethod> Discover(Assembly assembly)
    {
        Type[] types;
        try
        {
            types = assembly.GetExportedTypes();
        }
        catch (Exception e) when (e is ReflectionTypeLoadException or FileNotFoundException or FileLoadException)
        {
            throw new AlloyException($"cannot read the types of {assembly.GetName().Name}: {e.Message.Split('\n')[0]}");
        }
        var methods = types
            .Where(t =>
                t is { IsAbstract: false, IsClass: true }
                && t.IsSubclassOf(typeof(MergeMethod))
                && t.GetConstructor(Type.EmptyTypes) is not null
            )
            .Select(Create)
            .OrderBy(m => m.Name, StringComparer.Ordinal)
            .ToList();
        if (methods.GroupBy(m => m.Name).FirstOrDefault(g => g.Count() > 1) is { } twice)
            throw new AlloyException(
                $"{assembly.GetName().Name} declares merge method '{twice.Key}' twice "
                    + $"({string.Join(", ", twice.Select(m => m.GetType().Name))})"
            );
        return methods;
    }

    private static MergeMethod Create(Type type)
    {
        try
        {
            return (MergeMethod)Activator.CreateInstance(type)!;
        }
        catch (TargetInvocationException e) when (e.InnerException is { } inner)
        {
            throw new AlloyException(
                $"merge method class {type.FullName} ({type.Assembly.GetName().Name}) failed to start: {inner.Message}"
            );
        }
    }

    private static string Describe(Type type) =>
        type.Assembly == typeof(MergeMethod).Assembly ? "Alloy" : $"{type.FullName} ({type.Assembly.GetName().Name})";
}
