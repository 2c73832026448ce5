using Alloy.Runtime.Evaluation;

namespace Alloy.Runtime.Tests.Evaluation;

/// <summary>The tasks file: what it accepts, and one-line errors naming the file and line of what it refuses.</summary>
public sealed class TaskFileTests
{
    [Fact]
    public void Items_are_read_with_their_task_line_and_defaults()
    {
        var items = TaskFile.Parse(
            [
                """{"type": "choice", "task": "t1", "id": 7, "context": "Q: ", "choices": ["a", "b"], "answer": 1}""",
                "",
                """{"type": "generate", "prompt": "P", "answer": "x"}""",
                """{"type": "generate", "prompt": "P2", "answer": ["x", "y"], "stop": ["\n"], "max_tokens": 3, "id": "g"}""",
                """{"type": "choice", "context": "", "choices": ["a", "b", "c"], "answer": 2}""",
            ],
            "tasks.jsonl"
        );

        var choice = Assert.IsType<ChoiceItem>(items[0]);
        Assert.Equal(("t1", 1, "7", "Q: ", 1), (choice.Task, choice.Line, choice.Id, choice.Context, choice.Answer));
        Assert.Equal(["a", "b"], choice.Choices);
        var generate = Assert.IsType<GenerationItem>(items[1]);
        Assert.Equal(
            ("generate", 3, null, "P", null),
            (generate.Task, generate.Line, generate.Id, generate.Prompt, generate.MaxTokens)
        );
        Assert.Equal(["x"], generate.Answers);
        Assert.Empty(generate.Stop);
        var second = Assert.IsType<GenerationItem>(items[2]);
        Assert.Equal(["x", "y"], second.Answers);
        Assert.Equal(["\n"], second.Stop);
        Assert.Equal(3, second.MaxTokens);
        Assert.Equal("tasks.jsonl:5", items[3].Where);
        Assert.Equal("choice", items[3].Task);
    }

    [Fact]
    public void Items_may_set_their_own_few_shot_delimiters()
    {
        var items = TaskFile.Parse(
            [
                """{"type": "choice", "context": "Q", "choices": ["a", "b"], "answer": 0, "fewshot_delimiter": "\n", "target_delimiter": ""}""",
                """{"type": "generate", "prompt": "P", "answer": "x", "target_delimiter": ": "}""",
            ],
            "tasks.jsonl"
        );
        Assert.Equal(("\n", ""), (items[0].FewShotDelimiter, items[0].TargetDelimiter));
        Assert.Equal((null, ": "), (items[1].FewShotDelimiter, items[1].TargetDelimiter));
        var e = Assert.Throws<AlloyException>(() =>
            TaskFile.Parse(
                ["""{"type": "generate", "prompt": "P", "answer": "x", "fewshot_delimiter": 2}"""],
                "tasks.jsonl"
            )
        );
        Assert.Equal("tasks.jsonl:1: \"fewshot_delimiter\" must be a string, not the number 2", e.Message);
    }

    [Fact]
    public void Limit_keeps_the_first_items_of_each_task()
    {
        var lines = Enumerable
            .Range(0, 6)
            .Select(i =>
                $$"""{"type": "generate", "task": "{{(i % 2 == 0 ? "even" : "odd")}}", "prompt": "p{{i}}", "answer": "a"}"""
            );
        var items = TaskFile.Limit(TaskFile.Parse(lines, "t.jsonl"), 2);
        Assert.Equal([1, 2, 3, 4], items.Select(i => i.Line));
    }

    [Theory]
    [InlineData("""{"type": "choice", "context": "c", "choices": ["a", "b"], "answer": 0""", "invalid JSON at line 1")]
    [InlineData("""["choice"]""", "expected a JSON object")]
    [InlineData("""{"context": "c", "choices": ["a", "b"], "answer": 0}""", "no \"type\"")]
    [InlineData("""{"type": "mcq", "context": "c"}""", "unknown type 'mcq'")]
    [InlineData("""{"type": "choice", "context": "c", "choices": ["a", "b"], "anwser": 0}""", "unknown key 'anwser'")]
    [InlineData("""{"type": "choice", "choices": ["a", "b"], "answer": 0}""", "needs \"context\"")]
    [InlineData(
        """{"type": "choice", "context": 3, "choices": ["a", "b"], "answer": 0}""",
        "\"context\" must be a string, not the number 3"
    )]
    [InlineData("""{"type": "choice", "context": "c", "choices": ["a"], "answer": 0}""", "give at least 2")]
    [InlineData("""{"type": "choice", "context": "c", "choices": "ab", "answer": 0}""", "must be a list of strings")]
    [InlineData("""{"type": "choice", "context": "c", "choices": ["a", 2], "answer": 0}""", "entry 1 is the number 2")]
    [InlineData("""{"type": "choice", "context": "c", "choices": ["a", ""], "answer": 0}""", "choice 1 is empty")]
    [InlineData(
        """{"type": "choice", "context": "c", "choices": ["a", "b"], "answer": 2}""",
        "\"answer\" is 2 but there are 2 choices"
    )]
    [InlineData(
        """{"type": "choice", "context": "c", "choices": ["a", "b"], "answer": "a"}""",
        "\"answer\" must be an integer, not a string"
    )]
    [InlineData("""{"type": "choice", "context": "c", "choices": ["a", "b"]}""", "needs \"answer\"")]
    [InlineData("""{"type": "generate", "answer": "x"}""", "needs \"prompt\"")]
    [InlineData("""{"type": "generate", "prompt": "p"}""", "needs \"answer\"")]
    [InlineData("""{"type": "generate", "prompt": "p", "answer": []}""", "empty list")]
    [InlineData("""{"type": "generate", "prompt": "p", "answer": "x", "stop": [""]}""", "empty string")]
    [InlineData("""{"type": "generate", "prompt": "p", "answer": "x", "max_tokens": 0}""", "give 1 or more")]
    [InlineData(
        """{"type": "generate", "prompt": "p", "answer": "x", "context": "c"}""",
        "unknown key 'context' for a generate item"
    )]
    [InlineData("""{"type": "generate", "task": "", "prompt": "p", "answer": "x"}""", "\"task\" is empty")]
    [InlineData(
        """{"type": "generate", "id": true, "prompt": "p", "answer": "x"}""",
        "\"id\" must be a string or an integer"
    )]
    [InlineData(
        """{"type": "generate", "task": "shared", "prompt": "p", "answer": "x"}""",
        "task 'shared' is a choice task (line 1)"
    )]
    public void A_malformed_line_is_refused_in_one_line_naming_it(string line, string expected)
    {
        string[] lines =
        [
            """{"type": "choice", "task": "shared", "context": "c", "choices": ["a", "b"], "answer": 0}""",
            "   ",
            line,
        ];
        var e = Assert.Throws<AlloyException>(() => TaskFile.Parse(lines, "data/tasks.jsonl"));
        Assert.StartsWith("data/tasks.jsonl:3: ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void An_empty_file_and_a_missing_file_are_refused()
    {
        Assert.Contains(
            "no task items",
            Assert.Throws<AlloyException>(() => TaskFile.Parse(["", " "], "empty.jsonl")).Message
        );
        Assert.Contains(
            "no such tasks file",
            Assert.Throws<AlloyException>(() => TaskFile.Read("/nonexistent/tasks.jsonl")).Message
        );
    }
}
