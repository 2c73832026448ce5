using Alloy.Checkpoints;

namespace Alloy.Output;

/// <summary>Small files copied from the donor model (the base model, else the first model in the recipe).</summary>
public static class DonorFiles
{
    /// <summary>
    /// The tokenizer (controlled by --copy-tokenizer). Includes vocab.json, which mergekit forgets for GPT-2-style
    /// tokenizers.
    /// </summary>
    public static readonly string[] Tokenizer =
    [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "tokenizer.model",
        "added_tokens.json",
        "vocab.json",
        "merges.txt",
        "vocab.txt",
        "chat_template.jinja",
        "chat_template.json",
    ];

    /// <summary>Files that describe how to run the model rather than its vocabulary; always copied.</summary>
    public static readonly string[] Always =
    [
        "generation_config.json",
        "preprocessor_config.json",
        "processor_config.json",
        "video_preprocessor_config.json",
    ];

    public static IReadOnlyList<string> Copy(string donorFolder, string outputFolder, bool copyTokenizer)
    {
        var copied = new List<string>();
        foreach (var name in (copyTokenizer ? Tokenizer : []).Concat(Always))
        {
            var source = Path.Combine(donorFolder, name);
            if (!File.Exists(source))
                continue;
            InputFile.Copy(source, Path.Combine(outputFolder, name));
            copied.Add(name);
        }
        return copied;
    }
}
