using System.Text.Encodings.Web;
using System.Text.Json;
using Alloy.Runtime.Models;

namespace Alloy.Runtime.Evaluation;

/// <summary>Everything one evaluation of a model measured, and its JSON form (what <c>alloy eval</c> prints).</summary>
public sealed record EvaluationReport
{
    /// <summary>The model as it was named (a folder).</summary>
    public required string Model { get; init; }

    public required long Parameters { get; init; }

    /// <summary>The GEMM backend's name.</summary>
    public required string Backend { get; init; }

    public required int Threads { get; init; }

    public string? TextFile { get; init; }

    public PerplexityResult? Perplexity { get; init; }

    public string? TasksFile { get; init; }

    public IReadOnlyList<TaskResult> Tasks { get; init; } = [];

    /// <summary>How the tasks' prompts were built (few-shot examples, chat template).</summary>
    public PromptOptions Prompts { get; init; } = PromptOptions.Default;

    /// <summary>The few-shot pool file, when it is not the tasks file.</summary>
    public string? FewShotFile { get; init; }

    public required TimeSpan Elapsed { get; init; }

    /// <summary>
    /// A mixture of experts' routing over the whole evaluation (perplexity and tasks): per layer, how often each expert
    /// was chosen; each task has its own in <see cref="TaskResult.Routing"/>. Null for a dense model.
    /// </summary>
    public RoutingTable? Routing { get; init; }

    /// <summary>
    /// The report as indented JSON; <paramref name="samples"/> adds every item's outcome under its task: the full
    /// prompt it was given (few-shot examples and chat template included), and its log-likelihoods and picks or the
    /// generated text.
    /// </summary>
    public string ToJson(bool samples = false)
    {
        using var buffer = new MemoryStream();
        using (
            var json = new Utf8JsonWriter(
                buffer,
                new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }
            )
        )
        {
            json.WriteStartObject();
            json.WriteString("model", Model);
            json.WriteNumber("parameters", Parameters);
            json.WriteString("backend", Backend);
            json.WriteNumber("threads", Threads);
            if (Perplexity is { } p)
            {
                json.WriteStartObject("perplexity");
                json.WriteString("file", TextFile);
                json.WriteNumber("tokens", p.Tokens);
                json.WriteNumber("scored_tokens", p.ScoredTokens);
                json.WriteNumber("context", p.Context);
                json.WriteNumber("stride", p.Stride);
                json.WriteNumber("windows", p.Windows);
                Number(json, "mean_nll", p.MeanNll);
                Number(json, "perplexity", p.Value);
                Work(json, p.ForwardTokens, p.Elapsed, p.TokensPerSecond);
                json.WriteEndObject();
            }
            if (TasksFile is not null)
            {
                json.WriteString("tasks_file", TasksFile);
                json.WriteNumber("num_fewshot", Prompts.FewShot);
                json.WriteNumber("fewshot_seed", Prompts.Seed);
                json.WriteString("fewshot_file", FewShotFile);
                json.WriteString("fewshot_delimiter", Prompts.FewShotDelimiter);
                json.WriteString("target_delimiter", Prompts.TargetDelimiter);
                json.WriteBoolean("chat_template", Prompts.ChatTemplate);
                json.WriteBoolean("fewshot_as_multiturn", Prompts.FewShotAsMultiturn);
                json.WriteStartArray("tasks");
                foreach (var task in Tasks)
                    Write(json, task, samples);
                json.WriteEndArray();
            }
            Write(json, Routing);
            json.WriteNumber("seconds", Math.Round(Elapsed.TotalSeconds, 3));
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static void Write(Utf8JsonWriter json, TaskResult task, bool samples)
    {
        json.WriteStartObject();
        json.WriteString("name", task.Name);
        json.WriteString("type", task.Type);
        json.WriteNumber("items", task.Items);
        if (task.Type == TaskFile.ChoiceType)
        {
            json.WriteNumber("accuracy", task.Accuracy);
            if (task.AccuracyNormalized is { } normalized)
                json.WriteNumber("accuracy_norm", normalized);
        }
        else
        {
            json.WriteNumber("exact_match", task.Accuracy);
            json.WriteNumber("generated_tokens", task.Generations.Sum(g => (long)g.GeneratedTokens));
        }
        Work(json, task.ForwardTokens, task.Elapsed, task.TokensPerSecond);
        Write(json, task.Routing);
        if (samples)
        {
            json.WriteStartArray("samples");
            foreach (var c in task.Choices)
            {
                Sample(json, c.Item);
                json.WriteString("context", c.Item.Context);
                json.WriteStartArray("choices");
                foreach (var choice in c.Item.Choices)
                    json.WriteStringValue(choice);
                json.WriteEndArray();
                json.WriteNumber("answer", c.Item.Answer);
                json.WriteNumber("predicted", c.Predicted);
                json.WriteNumber("predicted_norm", c.PredictedNormalized);
                json.WriteStartArray("loglikelihoods");
                foreach (var ll in c.LogLikelihoods)
                    json.WriteNumberValue(ll);
                json.WriteEndArray();
                json.WriteStartArray("choice_tokens");
                foreach (var n in c.ChoiceTokens)
                    json.WriteNumberValue(n);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            foreach (var g in task.Generations)
            {
                Sample(json, g.Item);
                json.WriteString("prompt", g.Item.Prompt);
                json.WriteString("output", g.Output);
                json.WriteBoolean("correct", g.Correct);
                json.WriteNumber("generated_tokens", g.GeneratedTokens);
                json.WriteEndObject();
            }
            json.WriteEndArray();
        }
        json.WriteEndObject();
    }

    /// <summary>"routing": [{"layer": 0, "counts": [times chosen, per expert]}, …], for a mixture.</summary>
    private static void Write(Utf8JsonWriter json, RoutingTable? routing)
    {
        if (routing is null)
            return;
        json.WriteStartArray("routing");
        for (int layer = 0; layer < routing.Layers.Count; layer++)
        {
            json.WriteStartObject();
            json.WriteNumber("layer", layer);
            json.WriteStartArray("counts");
            foreach (long count in routing.Layers[layer])
                json.WriteNumberValue(count);
            json.WriteEndArray();
            json.WriteEndObject();
        }
        json.WriteEndArray();
    }

    private static void Sample(Utf8JsonWriter json, TaskItem item)
    {
        json.WriteStartObject();
        json.WriteNumber("line", item.Line);
        if (item.Id is not null)
            json.WriteString("id", item.Id);
    }

    private static void Work(Utf8JsonWriter json, long forwardTokens, TimeSpan elapsed, double tokensPerSecond)
    {
        json.WriteNumber("forward_tokens", forwardTokens);
        json.WriteNumber("seconds", Math.Round(elapsed.TotalSeconds, 3));
        json.WriteNumber("tokens_per_second", Math.Round(tokensPerSecond, 1));
    }

    /// <summary>JSON has no infinities: a perplexity that overflows is written as null.</summary>
    private static void Number(Utf8JsonWriter json, string name, double value)
    {
        if (double.IsFinite(value))
            json.WriteNumber(name, value);
        else
            json.WriteNull(name);
    }
}
