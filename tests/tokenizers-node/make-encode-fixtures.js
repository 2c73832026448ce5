// Makes the expected ids of Alloy's encoding tests with Hugging Face's own tokenizers library: every text of
// tests/fixtures/tokenizers/texts.json is encoded with every tokenizer of tokenizer-files.js, without and with special
// tokens, and both id lists are decoded (the second skipping special tokens). Writes one small JSON file per tokenizer
// to tests/fixtures/tokenizers/expected/. Run it again after changing the texts or the tokenizers:
//   npm ci --prefix tests/tokenizers-node && node tests/tokenizers-node/make-encode-fixtures.js
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');
const { all } = require('./tokenizer-files');

const fixtures = path.join(__dirname, '..', 'fixtures', 'tokenizers');

(async () => {
  const texts = JSON.parse(fs.readFileSync(path.join(fixtures, 'texts.json'), 'utf8'));
  const version = JSON.parse(fs.readFileSync(path.join(__dirname, 'node_modules', 'tokenizers', 'package.json'), 'utf8')).version;
  fs.mkdirSync(path.join(fixtures, 'expected'), { recursive: true });
  for (const [name, { tokenizer: json }] of Object.entries(await all())) {
    const tokenizer = Tokenizer.fromString(JSON.stringify(json));
    const lines = [];
    for (const text of texts) {
      const ids = (await tokenizer.encode(text, null, { addSpecialTokens: false })).getIds();
      const withSpecial = (await tokenizer.encode(text, null, { addSpecialTokens: true })).getIds();
      lines.push(JSON.stringify({
        ids, withSpecial, decoded: await tokenizer.decode(ids, false), decodedSkippingSpecial: await tokenizer.decode(withSpecial, true),
      }));
    }
    const header = JSON.stringify({ tokenizer: name, library: `tokenizers ${version} (npm)`, texts: texts.length });
    fs.writeFileSync(path.join(fixtures, 'expected', `${name}.json`), `{"about": ${header},\n"encodings": [\n${lines.join(',\n')}\n]}\n`);
    process.stdout.write(`${name}: ${texts.length} texts\n`);
  }
})().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
