#!/usr/bin/python3
"""Writes the seed inputs of the fuzz targets (tests/fuzz/fuzz_*.c) from the committed fixtures
into tests/fuzz/corpus/<target>/seed-*: small files, so that libFuzzer's mutations stay fast.

  safetensors     model.safetensors files of tests/fixtures/broken (valid and broken)
  st_index        the sharded fixtures: index.json, FUZZ_SEP, shard 1, FUZZ_SEP, shard 2
  config          every config.json of the fixtures
  tokenizer_load  the models' tokenizer.json, and Mistral's and Qwen3's cut to their first 300
                  vocabulary entries (and the merges among them), each with and without its
                  tokenizer_config.json after FUZZ_SEP
  encode / detok  texts from the hard-case files (one per tokenizer and add_special choice),
                  and the ids of a few of them
  chat            one conversation per family
  quant_file      config.json, FUZZ_SEP, model.safetensors: tests/fixtures/broken/valid as given
                  and as `moge quantize` writes it (q8 / q4, panel and row-major layouts;
                  needs build/moge)
  gguf            the smallest GGUF fixtures of tests/test_gguf.c (a quantized MoE, a bf16 llama) and
                  the first 6000 bytes of stories260K's (header, metadata and the first tensors)
  gguf_model      whole GGUF fixtures under 110 KB (a q4_0 MoE, a bf16 llama with biases, an f16
                  Mistral), each with its llama-type tokenizer, and the MoE with Qwen3's tokenizer cut as
                  for tokenizer_load in its place (gpt2: byte-level BPE with merges)

Run from the repository root: /usr/bin/python3 tools/fuzz_seeds.py (numpy, for tools/gguf_write.py)
"""
import glob
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_write import ALIGN, ARR, I32, STR, U32, Reader, enc_str, enc_value  # noqa: E402

SEP = b"\n#moge-fuzz-file#\n"  # FUZZ_SEP of tests/fuzz/fuzz_util.h
OUT = "tests/fuzz/corpus"


def gguf_with_kv(data, new_kv):
    """data (a GGUF file) with the metadata pairs of new_kv (key: (type, value), encoded by
    gguf_write.enc_value) replaced or added; the tensor table and data keep their bytes, the data
    section its alignment (general.alignment is not among the keys changed)."""
    f = io.BytesIO(data)
    r = Reader(f, len(data))
    r.take(8)  # magic, version
    n_tensors, n_kv = r.unpack("<QQ")
    kv, align = [], ALIGN
    for _ in range(n_kv):
        start = f.tell()
        key = r.string()
        value = r.value(r.unpack("<I")[0])
        if key == "general.alignment":
            align = value
        if key not in new_kv:
            kv.append(data[start:f.tell()])
    infos = f.tell()
    for _ in range(n_tensors):  # name, dims, type, offset
        r.string()
        r.unpack(f"<{r.unpack('<I')[0]}Q")
        r.unpack("<IQ")
    end = f.tell()
    kv += [enc_str(k) + enc_value(t, v) for k, (t, v) in new_kv.items()]
    out = data[:16] + struct.pack("<Q", len(kv)) + b"".join(kv) + data[infos:end]
    out += b"\0" * (-len(out) % align)
    return out + data[(end + align - 1) // align * align:]


def gguf_gpt2_tokenizer(tokenizer_json, eos):
    """tokenizer.ggml.* pairs of a byte-level BPE tokenizer (tokenizer.json bytes, cut small), eos
    the id the model's vocabulary holds."""
    d = json.loads(tokenizer_json)
    vocab = dict(d["model"]["vocab"])
    special = set()
    for t in d["added_tokens"]:
        vocab[t["content"]] = t["id"]
        if t.get("special"):
            special.add(t["id"])
    tokens = [None] * (max(vocab.values()) + 1)
    for piece, i in vocab.items():
        tokens[i] = piece
    tokens = [t if t is not None else "[PAD%d]" % i for i, t in enumerate(tokens)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in d["model"]["merges"]]
    return {
        "tokenizer.ggml.model": (STR, "gpt2"),
        "tokenizer.ggml.pre": (STR, "qwen2"),
        "tokenizer.ggml.tokens": ((ARR, STR), tokens),
        "tokenizer.ggml.token_type": ((ARR, I32), [3 if i in special else 1 for i in range(len(tokens))]),
        "tokenizer.ggml.merges": ((ARR, STR), merges),
        "tokenizer.ggml.eos_token_id": (U32, eos),
    }


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def read(p):
    with open(p, "rb") as f:
        return f.read()


def small_tokenizer(path, keep=300):
    d = json.load(open(path, encoding="utf-8"))
    m = d["model"]
    vocab = {k: v for k, v in m["vocab"].items() if v < keep}
    merges = []
    for mg in m["merges"]:
        a, b = mg if isinstance(mg, list) else mg.split(" ", 1)
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(mg)
    m["vocab"], m["merges"] = vocab, merges
    d["added_tokens"] = [t for t in d["added_tokens"]][:8]
    for i, t in enumerate(d["added_tokens"]):
        t["id"] = keep + i if t["id"] >= keep else t["id"]
    return json.dumps(d, ensure_ascii=False).encode()


def safetensors(header, data):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def tiny_safetensors():
    """Small hand-made files with each dtype, the metadata keys, and the layouts the loader refuses."""
    t = lambda dt, shape, a, b: {"dtype": dt, "shape": shape, "data_offsets": [a, b]}
    yield "dtypes", {"a": t("F32", [2, 2], 0, 16), "b": t("F16", [2, 2], 16, 24), "c": t("BF16", [4], 24, 32),
                     "d": t("I32", [1], 32, 36), "e": t("U8", [4], 36, 40), "f": t("F64", [], 40, 48),
                     "__metadata__": {"format": "pt"}}, bytes(range(48))
    yield "quant", {"w": t("U8", [2, 36], 0, 72), "__metadata__": {"moge.quant": "q8", "moge.layout": "panel16"}}, bytes(72)
    yield "dims8", {"x": t("F32", [1, 1, 1, 1, 1, 1, 1, 2], 0, 8)}, bytes(8)
    yield "empty", {}, b""
    yield "zero-size", {"z": t("F32", [0, 4], 0, 0)}, b""
    yield "two-tensors", {"a": t("F32", [1], 0, 4), "b": t("F32", [1], 4, 8)}, bytes(8)
    yield "overlap", {"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, bytes(12)
    yield "past-end", {"a": t("F32", [4], 0, 16)}, bytes(8)


def main():
    if os.path.isdir(OUT):
        for p in glob.glob(os.path.join(OUT, "*", "seed-*")):
            os.remove(p)
    broken = sorted(glob.glob("tests/fixtures/broken/*/"))
    for d in broken:
        name = os.path.basename(d.rstrip("/"))
        st = os.path.join(d, "model.safetensors")
        if os.path.isfile(st) and name in ("valid", "offsets_overlap"):
            put("safetensors", name, read(st))
        idx = os.path.join(d, "model.safetensors.index.json")
        if os.path.isfile(idx) and name in ("shard_duplicate", "missing_shard"):
            parts = [read(idx)]
            for s in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
                p = os.path.join(d, s)
                if os.path.isfile(p):
                    parts.append(read(p))
            put("st_index", name, SEP.join(parts))
    for name, header, data in tiny_safetensors():
        put("safetensors", name, safetensors(header, data))
    for p in sorted(glob.glob("tests/fixtures/**/config.json", recursive=True)):
        put("config", p.split("/")[-2], read(p))

    toks = {"stories260K": ("models/stories260K/tokenizer.json", read("models/stories260K/tokenizer.json")),
            "mistral": ("tests/fixtures/tokenizers/mistral/tokenizer.json",
                        small_tokenizer("tests/fixtures/tokenizers/mistral/tokenizer.json")),
            "qwen3": ("tests/fixtures/tokenizers/qwen3/tokenizer.json",
                      small_tokenizer("tests/fixtures/tokenizers/qwen3/tokenizer.json"))}
    for name, (path, data) in toks.items():
        put("tokenizer_load", name, data)
        cfg = os.path.join(os.path.dirname(path), "tokenizer_config.json")
        if os.path.isfile(cfg):
            put("tokenizer_load", name + "-config", data + SEP + read(cfg))

    # encode / detok: byte 0 picks the tokenizer of fuzz_committed.h (0 stories260K, 1 mistral, 2 qwen3)
    for i, name in enumerate(("stories260K", "mistral", "qwen3")):
        lines = open("tests/fixtures/tokenizers/hard-cases/%s.jsonl" % name, encoding="utf-8").read().splitlines()
        picked = [json.loads(l) for l in lines[:: max(1, len(lines) // 12)]][:12]
        for k, c in enumerate(picked):
            text = c["text"].encode("utf-8", "surrogatepass")[:512]
            put("encode", "%s-%d" % (name, k), bytes([i | (4 if c.get("add_special") else 0)]) + text)
            ids = c["ids"][:128]
            put("detok", "%s-%d" % (name, k), bytes([i]) + b"".join(struct.pack("<I", v + 4)[:3] for v in ids))

    conv = [("system", "Be brief."), ("user", "Hello!"), ("assistant", "Hi."), ("user", "東京?")]
    body = b"\0".join(x.encode() for rc in conv for x in rc)
    for fam, bos_eos in ((2, b""), (3, b"<|begin_of_text|>\0"), (4, b"<s>\0</s>\0"), (5, b"<s>\0"), (6, b"")):
        flags = 1 | (2 if bos_eos else 0) | (4 if bos_eos.count(b"\0") == 2 else 0)
        put("chat", "family-%d" % fam, bytes([fam, flags]) + bos_eos + body)
    put("chat", "template-chatml", b"\x02\x01{% for m in messages %}<|im_start|>{{ m.role }}<|im_end|>{% endfor %}")

    valid = "tests/fixtures/broken/valid"
    put("quant_file", "f32", read(valid + "/config.json") + SEP + read(valid + "/model.safetensors"))
    tmp = tempfile.mkdtemp()
    try:
        for q in ("q8", "q4"):
            for layout in ("panel", "row-major"):
                out = os.path.join(tmp, q + layout)
                args = ["build/moge", "quantize", "-m", valid, "-o", out, "--quant", q]
                if layout == "row-major":
                    args.append("--row-major")
                subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
                put("quant_file", "%s-%s" % (q, layout), read(out + "/config.json") + SEP + read(out + "/model.safetensors"))
    finally:
        shutil.rmtree(tmp)

    g = "tests/fixtures/gguf/"
    put("gguf", "qwen2moe64_q4_0", read(g + "qwen2moe64_q4_0.gguf"))
    put("gguf", "llama_bias_bf16", read(g + "llama_bias_bf16.gguf"))
    put("gguf", "stories260K_head", read(g + "stories260K_f32.gguf")[:6000])
    for name in ("qwen2moe64_q4_0", "llama_bias_bf16", "mistral_f16"):
        put("gguf_model", name, read(g + name + ".gguf"))
    qwen3 = small_tokenizer("tests/fixtures/tokenizers/qwen3/tokenizer.json")
    put("gguf_model", "qwen2moe64_q4_0-gpt2", gguf_with_kv(read(g + "qwen2moe64_q4_0.gguf"), gguf_gpt2_tokenizer(qwen3, 2)))


if __name__ == "__main__":
    main()
