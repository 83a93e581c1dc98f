#!/usr/bin/python3
# convert_llama2c.py — converts a karpathy/llama2.c checkpoint (version 0 "legacy" format) and
# its tokenizer (.bin) into a Hugging Face Llama model directory:
#   config.json, model.safetensors (F32), tokenizer.json, tokenizer_config.json, LICENSE,
#   README.md
#
# Usage (numpy needed; Debian's python has it):
#   /usr/bin/python3 tools/convert_llama2c.py CHECKPOINT.bin TOKENIZER.bin OUTDIR [LICENSE_FILE]
# e.g. the committed models/stories260K/ was made with
#   /usr/bin/python3 tools/convert_llama2c.py ../shared/data/stories260K/stories260K.bin \
#       ../shared/data/stories260K/tok512.bin models/stories260K \
#       ../shared/data/stories260K/LICENSE-llama2.c
# (LICENSE_FILE defaults to LICENSE-llama2.c next to the checkpoint.)
#
# Checkpoint: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size — negative
# when the classifier is not shared — , seq_len), then fp32 tensors in PyTorch (out, in) layout:
# token embedding, attention norms, wq, wk, wv, wo, ffn norms, w1, w2, w3, final norm,
# freq_cis_real, freq_cis_imag (skipped), classifier (only when not shared).
# llama2.c rotates interleaved pairs (0,1),(2,3)... of each head; HF Llama rotates halves
# (i, i + head_dim/2), so the rows of wq and wk are permuted as HF's own converter does.
#
# Tokenizer: int32 max_token_length, then per token float score, int32 length, bytes. Pieces use
# " " where SentencePiece has "▁"; ids 1 and 2 are stored as "\n<s>\n" and "\n</s>\n".
# Merges are derived like transformers' LlamaConverter (generate_merges): every split of every
# piece into two vocab pieces, ordered by the merged piece's score, highest first.

import json
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402

SPIECE = "\u2581"  # "▁"


def read_checkpoint(path):
    """Returns (config dict, {llama2c_name: float32 array}) from a version-0 checkpoint."""
    with open(path, "rb") as f:
        blob = f.read()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack_from("<7i", blob, 0)
    shared = vocab > 0
    vocab = abs(vocab)
    head_size = dim // n_heads
    kv_dim = n_kv_heads * head_size
    shapes = [
        ("tok_embeddings", (vocab, dim)),
        ("attention_norm", (n_layers, dim)),
        ("wq", (n_layers, dim, dim)),
        ("wk", (n_layers, kv_dim, dim)),
        ("wv", (n_layers, kv_dim, dim)),
        ("wo", (n_layers, dim, dim)),
        ("ffn_norm", (n_layers, dim)),
        ("w1", (n_layers, hidden, dim)),
        ("w2", (n_layers, dim, hidden)),
        ("w3", (n_layers, hidden, dim)),
        ("norm", (dim,)),
        ("freq_cis_real", (seq_len, head_size // 2)),
        ("freq_cis_imag", (seq_len, head_size // 2)),
    ]
    if not shared:
        shapes.append(("output", (vocab, dim)))
    weights, offset = {}, 7 * 4
    for name, shape in shapes:
        count = int(np.prod(shape))
        weights[name] = np.frombuffer(blob, dtype="<f4", count=count, offset=offset).reshape(shape)
        offset += 4 * count
    if offset != len(blob):
        raise SystemExit(f"{path}: expected {offset} bytes for this header, file has {len(blob)}")
    config = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads,
                  n_kv_heads=n_kv_heads, vocab=vocab, seq_len=seq_len, shared=shared)
    return config, weights


def permute_rope(w, n_heads):
    """Reorders the rows of a q/k projection from interleaved-pair RoPE to rotate-half RoPE
    (transformers' convert_llama_weights_to_hf permute)."""
    out_dim, in_dim = w.shape
    return (w.reshape(n_heads, out_dim // n_heads // 2, 2, in_dim)
             .transpose(0, 2, 1, 3)
             .reshape(out_dim, in_dim))


def hf_tensors(cfg, w):
    """The HF-named tensors, in file order, as (name, "F32", float32 array)."""
    out = [("model.embed_tokens.weight", w["tok_embeddings"])]
    for i in range(cfg["n_layers"]):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", w["attention_norm"][i]),
            (p + "self_attn.q_proj.weight", permute_rope(w["wq"][i], cfg["n_heads"])),
            (p + "self_attn.k_proj.weight", permute_rope(w["wk"][i], cfg["n_kv_heads"])),
            (p + "self_attn.v_proj.weight", w["wv"][i]),
            (p + "self_attn.o_proj.weight", w["wo"][i]),
            (p + "post_attention_layernorm.weight", w["ffn_norm"][i]),
            (p + "mlp.gate_proj.weight", w["w1"][i]),
            (p + "mlp.up_proj.weight", w["w3"][i]),
            (p + "mlp.down_proj.weight", w["w2"][i]),
        ]
    out.append(("model.norm.weight", w["norm"]))
    if not cfg["shared"]:
        out.append(("lm_head.weight", w["output"]))
    return [(name, "F32", np.ascontiguousarray(t, dtype="<f4")) for name, t in out]


def hf_config(cfg):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg["dim"],
        "intermediate_size": cfg["hidden"],
        "num_hidden_layers": cfg["n_layers"],
        "num_attention_heads": cfg["n_heads"],
        "num_key_value_heads": cfg["n_kv_heads"],
        "vocab_size": cfg["vocab"],
        "max_position_embeddings": cfg["seq_len"],
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "tie_word_embeddings": cfg["shared"],
        "hidden_act": "silu",
        "attention_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }


def read_tokenizer(path, vocab_size):
    """Returns the list of (piece, score) in id order, pieces in SentencePiece form ("▁")."""
    with open(path, "rb") as f:
        blob = f.read()
    offset = 4  # max_token_length
    pieces = []
    for i in range(vocab_size):
        score, length = struct.unpack_from("<fi", blob, offset)
        offset += 8
        text = blob[offset:offset + length].decode("utf-8")
        offset += length
        if i == 0:
            text = "<unk>"
        elif i == 1:
            text = "<s>"
        elif i == 2:
            text = "</s>"
        else:
            text = text.replace(" ", SPIECE)
        pieces.append((text, float(score)))
    if offset != len(blob):
        raise SystemExit(f"{path}: {len(blob) - offset} bytes left after {vocab_size} tokens")
    names = [p for p, _ in pieces]
    if len(set(names)) != len(names):
        raise SystemExit(f"{path}: duplicate pieces")
    return pieces


def generate_merges(pieces):
    """transformers' generate_merges(vocab, vocab_scores): for each piece (id order) every split
    into two vocab pieces (ordered by the ids of left then right), then all of them sorted by
    (score of the merged piece, len(left), len(right)) descending; Python's sort is stable, so
    exact ties keep the piece/split order."""
    vocab = {p: i for i, (p, _) in enumerate(pieces)}
    merges = []
    for piece, score in pieces:
        local = []
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                local.append((left, right, score))
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(left, right) for left, right, _ in merges]


def added_token(i, content):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def tokenizer_json(pieces):
    """tokenizer.json in the layout Hugging Face writes for Llama/Mistral SentencePiece BPE."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added_token(0, "<unk>"), added_token(1, "<s>"), added_token(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPIECE},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPIECE},
        ]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPIECE}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "vocab": {p: i for i, (p, _) in enumerate(pieces)},
            "merges": [f"{left} {right}" for left, right in generate_merges(pieces)],
        },
    }


def tokenizer_config(max_length):
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {
            str(i): {"content": c, "lstrip": False, "normalized": False, "rstrip": False,
                     "single_word": False, "special": True}
            for i, c in enumerate(["<unk>", "<s>", "</s>"])
        },
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": True,
        "model_max_length": max_length,
        "pad_token": None,
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
    }


def model_card(cfg, name, n_params, n_merges):
    return f"""# {name}

A Hugging Face Llama-format conversion of **{name}** from
[karpathy/llama2.c](https://github.com/karpathy/llama2.c), a tiny Llama-architecture model
trained on TinyStories. It is used by moge's tests as a real (not random) model.

## Architecture

| | |
|---|---|
| architecture | LlamaForCausalLM (RMSNorm, rotate-half RoPE, SwiGLU, grouped-query attention) |
| parameters | {n_params:,} |
| hidden_size | {cfg['dim']} |
| intermediate_size | {cfg['hidden']} |
| num_hidden_layers | {cfg['n_layers']} |
| num_attention_heads | {cfg['n_heads']} |
| num_key_value_heads | {cfg['n_kv_heads']} |
| head_dim | {cfg['dim'] // cfg['n_heads']} |
| vocab_size | {cfg['vocab']} (SentencePiece BPE with byte fallback, {n_merges} merges) |
| max_position_embeddings | {cfg['seq_len']} |
| rope_theta | 10000.0 |
| rms_norm_eps | 1e-05 |
| tie_word_embeddings | {str(cfg['shared']).lower()} |
| dtype | float32 |

## Conversion

Converted from the llama2.c checkpoint and tokenizer files with

    /usr/bin/python3 tools/convert_llama2c.py stories260K.bin tok512.bin models/stories260K

The rows of every q_proj and k_proj were permuted from llama2.c's interleaved-pair RoPE to
Hugging Face's rotate-half RoPE. The tokenizer's merges were derived from the piece scores as
transformers' LlamaConverter does. Checks made on this directory:

- `tools/llama2c_tokenize.py` (a port of llama2.c's encoder) gives the expected ids and
  `tools/check_tokenizer.mjs` (the Hugging Face reference, npm `@huggingface/tokenizers`)
  reproduces them with this `tokenizer.json`: llama2.c's own test vectors and 4,000+ lines of
  TinyStories text all match.
- `tools/reference_forward.py models/stories260K greedy 200` (a numpy float64 forward pass)
  greedily generates, after BOS, the same 200 tokens as llama2.c's own test expects.

## Licence

MIT, as llama2.c (see `LICENSE`, copied from the llama2.c repository).
"""


def main(argv):
    if len(argv) not in (4, 5):
        raise SystemExit("usage: convert_llama2c.py CHECKPOINT.bin TOKENIZER.bin OUTDIR [LICENSE]")
    ckpt, tok, outdir = argv[1:4]
    license_file = argv[4] if len(argv) == 5 else os.path.join(os.path.dirname(ckpt),
                                                               "LICENSE-llama2.c")
    cfg, weights = read_checkpoint(ckpt)
    pieces = read_tokenizer(tok, cfg["vocab"])
    os.makedirs(outdir, exist_ok=True)

    tensors = hf_tensors(cfg, weights)
    safetensors_np.write(os.path.join(outdir, "model.safetensors"), tensors)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(hf_config(cfg), f, indent=2)
        f.write("\n")
    tj = tokenizer_json(pieces)
    with open(os.path.join(outdir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(outdir, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config(cfg["seq_len"]), f, indent=2)
        f.write("\n")
    shutil.copyfile(license_file, os.path.join(outdir, "LICENSE"))
    name = os.path.splitext(os.path.basename(ckpt))[0]
    n_params = sum(t.size for _, _, t in tensors)
    with open(os.path.join(outdir, "README.md"), "w") as f:
        f.write(model_card(cfg, name, n_params, len(tj["model"]["merges"])))
    print(f"wrote {outdir}: {len(tensors)} tensors, {n_params} parameters, "
          f"{len(pieces)} tokens, {len(tj['model']['merges'])} merges")


if __name__ == "__main__":
    main(sys.argv)
