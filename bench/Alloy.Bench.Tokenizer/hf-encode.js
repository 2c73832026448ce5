// Encodes the documents of a JSON file (a list of strings) with Hugging Face's tokenizers (the package
// tests/tokenizers-node installs) and prints, as JSON, the ids' count, a hash of them and the best of N encode times
// (load time excluded). Run it with TOKENIZERS_PARALLELISM=false for one thread.
// Usage: node hf-encode.js TOKENIZER_JSON DOCUMENTS_JSON REPEAT
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, '..', '..', 'tests', 'tokenizers-node', 'node_modules', 'tokenizers'));

(async () => {
  const [file, textFile, repeat] = process.argv.slice(2);
  const tokenizer = Tokenizer.fromFile(file);
  const documents = JSON.parse(fs.readFileSync(textFile, 'utf8'));
  let best = Infinity;
  let ids = [];
  for (let r = 0; r < Number(repeat); r++) {
    const start = process.hrtime.bigint();
    const encodings = await tokenizer.encodeBatch(documents, { addSpecialTokens: false });
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
    ids = encodings.flatMap((e) => e.getIds());
  }
  let hash = 0;
  for (const id of ids) hash = (Math.imul(hash, 31) + id) | 0;
  process.stdout.write(JSON.stringify({ count: ids.length, hash, seconds: best }));
})().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
