namespace Alloy.Bench;

/// <summary>
/// The copy floor: the least work any merge of these files can do. Reads every input byte and writes as many output
/// bytes as a merge produces (one model), with plain buffered FileStreams on one thread, in the merge's access
/// pattern: a block from each input in turn, then a block of output.
/// </summary>
public static class CopyFloor
{
    /// <summary>The size of the executor's writer buffer, so both sides move data in the same block size.</summary>
    private const int BlockBytes = 4 << 20;

    /// <summary>
    /// The child side: copies the first input to <paramref name="output"/> while reading all the others.
    /// </summary>
    public static void Run(string output, IReadOnlyList<string> inputs)
    {
        var readers = inputs
            .Select(p => new FileStream(p, FileMode.Open, FileAccess.Read, FileShare.Read, BlockBytes))
            .ToList();
        try
        {
            using var writer = new FileStream(output, FileMode.Create, FileAccess.Write, FileShare.None, BlockBytes);
            var block = new byte[BlockBytes];
            bool more = true;
            while (more)
            {
                more = false;
                for (int i = readers.Count - 1; i >= 0; i--)
                {
                    int read = readers[i].ReadAtLeast(block, block.Length, throwOnEndOfStream: false);
                    if (read > 0)
                        more = true;
                    // The base is read last in each round so the block still holds its bytes for the write.
                    if (i == 0 && read > 0)
                        writer.Write(block, 0, read);
                }
            }
        }
        finally
        {
            readers.ForEach(r => r.Dispose());
        }
    }
}
