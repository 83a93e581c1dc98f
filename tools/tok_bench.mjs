// tok_bench.mjs — encode throughput of the Hugging Face JavaScript tokenizer (npm package
// @huggingface/tokenizers), the reference tests/bench_tokenizer.c compares moge against.
// It never downloads anything: the package must already be installed.
//
// Setup (outside the repository):  mkdir -p /tmp/hftok && cd /tmp/hftok && npm init -y &&
//                                  npm install --ignore-scripts @huggingface/tokenizers
// Usage:
//   node tools/tok_bench.mjs LIB TOKENIZER_JSON TEXT_FILE RUNS [IDS_OUT]
// LIB is the package's dist/tokenizers.mjs; TOKENIZER_JSON the tokenizer.json (a
// tokenizer_config.json beside it is used when present). The whole text is encoded in one call
// (no special tokens), RUNS times; the median is reported. IDS_OUT, when given, receives the ids
// of the last run as little-endian int32. Prints one line:
//   load_s=F median_s=F mb_s=F tokens=N
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [libPath, tokJson, textFile, runsArg, idsOut] = process.argv.slice(2);
if (!libPath || !tokJson || !textFile) {
  console.error("usage: node tools/tok_bench.mjs LIB TOKENIZER_JSON TEXT_FILE RUNS [IDS_OUT]");
  process.exit(2);
}
const runs = Math.max(1, Number(runsArg ?? 3) | 0);
const lib = await import(pathToFileURL(path.resolve(libPath)).href);
const Tokenizer = lib.Tokenizer ?? lib.default?.Tokenizer;

const bytes = fs.readFileSync(textFile);
const text = bytes.toString("utf8");

let t0 = performance.now();
const tj = JSON.parse(fs.readFileSync(tokJson, "utf8"));
const cfgPath = path.join(path.dirname(tokJson), "tokenizer_config.json");
const cfg = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, "utf8")) : {};
const tok = new Tokenizer(tj, cfg);
const loadS = (performance.now() - t0) / 1000;

const times = [];
let ids = null;
for (let r = 0; r < runs; r++) {
  t0 = performance.now();
  ids = tok.encode(text, { add_special_tokens: false }).ids;
  times.push((performance.now() - t0) / 1000);
}
times.sort((a, b) => a - b);
const med = times[(times.length - 1) >> 1];
if (idsOut) {
  const a = Int32Array.from(ids, Number);
  fs.writeFileSync(idsOut, Buffer.from(a.buffer, a.byteOffset, a.byteLength));
}
console.log(
  `load_s=${loadS.toFixed(4)} median_s=${med.toFixed(4)} mb_s=${(bytes.length / 1e6 / med).toFixed(3)} tokens=${ids.length}`,
);
