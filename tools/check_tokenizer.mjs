// check_tokenizer.mjs — checks a Hugging Face tokenizer.json against expected ids, using the
// Hugging Face reference implementation in JavaScript (npm package @huggingface/tokenizers).
// Prints one line per mismatch and a summary; exits non-zero on any mismatch.
//
// Setup (outside the repository):  mkdir -p /tmp/hftok && cd /tmp/hftok && npm init -y &&
//                                  npm install --ignore-scripts @huggingface/tokenizers
// Usage:
//   HF_TOKENIZERS=/tmp/hftok/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs \
//     node tools/check_tokenizer.mjs MODEL_DIR FILE...
// FILE is either
//   *.tsv   — lines "prompt<TAB>ids separated by spaces", ids with special tokens (BOS) added;
//             text in the prompt column may use \n, \t and \\ escapes
//   *.jsonl — lines {"text": ..., "ids": [...]}, ids without special tokens.
// Every case is also decoded back and compared with its text (reported, not counted as a
// failure, since SentencePiece decoding is not always an exact inverse).

import fs from "node:fs";
import path from "node:path";

const lib = await import(process.env.HF_TOKENIZERS ?? "@huggingface/tokenizers");
const Tokenizer = lib.Tokenizer ?? lib.default?.Tokenizer;

const [dir, ...files] = process.argv.slice(2);
if (!dir || files.length === 0) {
  console.error("usage: node tools/check_tokenizer.mjs MODEL_DIR FILE.tsv|FILE.jsonl...");
  process.exit(2);
}
const read = (name) => JSON.parse(fs.readFileSync(path.join(dir, name), "utf8"));
const tok = new Tokenizer(read("tokenizer.json"), read("tokenizer_config.json"));

const unescape = (s) => s.replace(/\\(.)/g, (_, c) => ({ n: "\n", t: "\t", "\\": "\\" })[c] ?? c);

let total = 0, bad = 0, roundtripDiffs = 0;
for (const file of files) {
  const lines = fs.readFileSync(file, "utf8").split("\n").filter((l) => l.length > 0);
  for (const line of lines) {
    let text, want, special;
    if (file.endsWith(".jsonl")) {
      const c = JSON.parse(line);
      [text, want, special] = [c.text, c.ids, false];
    } else {
      const tab = line.lastIndexOf("\t");
      text = unescape(line.slice(0, tab));
      want = line.slice(tab + 1).trim().split(/\s+/).filter((s) => s.length).map(Number);
      special = true;
    }
    const got = tok.encode(text, { add_special_tokens: special }).ids.map(Number);
    total++;
    if (got.join(" ") !== want.join(" ")) {
      bad++;
      if (bad <= 20) {
        console.log(`MISMATCH ${JSON.stringify(text).slice(0, 120)}\n  want ${want.join(" ")}\n  got  ${got.join(" ")}`);
      }
    }
    const back = got.length ? tok.decode(got, { skip_special_tokens: true }) : "";
    if (back !== text) roundtripDiffs++;
  }
}
console.log(`${total - bad}/${total} cases match (${roundtripDiffs} decode round-trips differ)`);
process.exit(bad ? 1 : 0);
