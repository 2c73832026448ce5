using System.Text;
using System.Text.Json;
using Alloy.Planning;

namespace Alloy.Output;

/// <summary>The README.md written beside the merged model: what was merged, how, and the recipe itself.</summary>
public static class ModelCard
{
    public static string Render(MergePlan plan, string outputName, IReadOnlyList<InputModel> models)
    {
        var recipe = plan.Recipe;
        var hubIds = models.Where(m => m.IsHubId).Select(m => m.Reference.Path).Distinct().ToList();
        var card = new StringBuilder();
        card.Append("---\n");
        if (hubIds.Count > 0)
        {
            card.Append("base_model:\n");
            foreach (var id in hubIds)
                card.Append("- ").Append(JsonSerializer.Serialize(id)).Append('\n');
        }
        card.Append("library_name: transformers\ntags:\n- merge\n- alloy\n- mergekit\n---\n");
        card.Append("# ").Append(outputName).Append("\n\n");
        card.Append(
            "This model is a merge of pre-trained language models, made with Alloy (a mergekit-compatible merging "
                + "tool).\n\n"
        );
        card.Append("## Merge details\n\n### Method\n\n");
        var method = plan.Method.Declaration.Paper is { } url
            ? $"[{plan.Method.Declaration.Title}]({url})"
            : plan.Method.Declaration.Title;
        card.Append("Merged with the ").Append(method).Append(" method");
        // A base the method does not use (karcher, linear) is just one of the merged models.
        var baseModel = plan.Method.Declaration.BaseModel == Methods.BaseModelUse.NotUsed ? null : recipe.BaseModel;
        if (baseModel is not null)
            card.Append(", using ").Append(Describe(baseModel.ToString(), models)).Append(" as the base model");
        card.Append(".\n\n### Models merged\n\n");
        foreach (var model in models.Where(m => m.Reference != baseModel))
            card.Append("- ").Append(Describe(model.Name, models)).Append('\n');
        card.Append("\n### Configuration\n\nThe recipe used to make this model:\n\n```yaml\n");
        card.Append(recipe.ToYaml().TrimEnd()).Append("\n```\n");
        return card.ToString();
    }

    private static string Describe(string name, IReadOnlyList<InputModel> models)
    {
        var model = models.FirstOrDefault(m => m.Name == name);
        return model is { IsHubId: true }
            ? $"[{model.Reference.Path}](https://huggingface.co/{model.Reference.Path})"
            : $"`{name}`";
    }
}
