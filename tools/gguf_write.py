#!/usr/bin/python3
# gguf_write.py — writes a dense Llama / Mistral model directory of this project (config.json,
# model.safetensors or shards listed in model.safetensors.index.json; F32, F16 or BF16 tensors;
# tokenizer.json optional) as a GGUF v3 file that llama.cpp loads (architecture "llama"), so that
# llama.cpp can run the same weights side by side with moge (tools/bench_peer.sh).
#
# Usage (numpy needed; Debian's python has it):
#   /usr/bin/python3 tools/gguf_write.py MODEL_DIR OUT.gguf [--type f32|f16|q8_0] [--name NAME]
#   /usr/bin/python3 tools/gguf_write.py --check FILE.gguf
# --check re-reads a GGUF's header, metadata and tensor table and verifies that every tensor's
# offset is aligned, its size matches its type and shape, the tensors do not overlap and the file
# holds them all; it prints a one-line summary (exit 0) or the first problem (exit 1).
#
# Written from the GGUF specification (ggml's gguf.h / docs); no llama.cpp code is used.
# File layout (little-endian): "GGUF", uint32 version 3, uint64 tensor count, uint64 metadata
# count; each metadata pair is a string key (uint64 length + UTF-8 bytes), a uint32 value type and
# the value (arrays: uint32 element type, uint64 count, elements); each tensor entry is its name,
# uint32 n_dims, n_dims uint64 sizes (innermost first: a (rows, cols) matrix is [cols, rows]),
# uint32 ggml type and a uint64 offset into the data section. The data section starts at the next
# multiple of general.alignment (32) after the table; every tensor starts at a multiple of it and
# is padded to one (the last too).
#
# Tensor types: --type f32 keeps everything F32; f16 and q8_0 convert the 2-D weight matrices and
# keep the norms (1-D tensors) in F32. Q8_0 is blocks of 32 along a row: an fp16 scale
# d = max|x| / 127 then 32 int8 q = roundf(x * (1/d)) (ties away from zero), as llama.cpp's
# reference quantizer (quantize_row_q8_0_ref, also what llama-quantize uses for Q8_0) computes
# them in float32, so the bytes equal llama-quantize's from the F32 file. A matrix whose rows are
# not a multiple of 32 long stays F32 (said on stderr).
#
# Q and K rows: Hugging Face Llama rotates the halves (i, i + head_dim/2) of each head; llama.cpp's
# "llama" architecture rotates adjacent pairs (2i, 2i+1). So within every head of q_proj (query
# heads) and k_proj (key/value heads), and their biases, output row 2i is input row i and output
# row 2i+1 is input row head_dim/2 + i.
#
# Tokenizer: a tokenizer.json of a SentencePiece-style BPE (byte_fallback, "▁" for spaces, as
# models/stories260K has) becomes tokenizer.ggml.model "llama" with its tokens, scores (-id for
# ordinary pieces: SentencePiece's merge priority follows the piece ids), token types and the
# bos/eos/unk ids. Without a tokenizer.json (the random benchmark models), or with one of another
# kind (said on stderr), a synthetic llama vocabulary of vocab_size entries is written: "<unk>",
# "<s>", "</s>", the byte pieces "<0x00>".."<0xFF>" when they fit, then "t3", "t4", ... — enough
# for llama.cpp to load the model and time it; its text is then meaningless.
#
# Memory: each tensor is read, converted and written in slices of rows (about 16 MB of float32 at
# a time), so the model is never held in memory, let alone twice.
# The file is written to OUT.gguf.tmp and renamed when complete.

import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402

ALIGN = 32
QK = 32  # Q8_0 block
SLICE_BYTES = 16 << 20  # float32 bytes converted at a time

# GGUF metadata value types
U8, I8, U16, I16, U32, I32, F32V, BOOL, STR, ARR, U64, I64, F64 = range(13)
# ggml tensor types: (elements, bytes) per block
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0, GGML_Q4_K, GGML_Q6_K, GGML_BF16 = 0, 1, 2, 8, 12, 14, 30
TYPE_NAMES = {GGML_F32: "F32", GGML_F16: "F16", GGML_Q4_0: "Q4_0", GGML_Q8_0: "Q8_0", GGML_Q4_K: "Q4_K", GGML_Q6_K: "Q6_K",
              GGML_BF16: "BF16"}
BLOCKS = {GGML_F32: (1, 4), GGML_F16: (1, 2), GGML_BF16: (1, 2), GGML_Q4_0: (32, 18), GGML_Q8_0: (32, 34),
          GGML_Q4_K: (256, 144), GGML_Q6_K: (256, 210)}
OUT_TYPES = {"f32": GGML_F32, "f16": GGML_F16, "bf16": GGML_BF16, "q8_0": GGML_Q8_0, "q4_0": GGML_Q4_0, "q4_k": GGML_Q4_K,
             "q6_k": GGML_Q6_K}
# general.file_type (llama_ftype): all F32, mostly F16, Q8_0, Q4_0, BF16, Q4_K_S, Q6_K
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "q4_0": 2, "bf16": 32, "q4_k": 14, "q6_k": 18}
# tokenizer.ggml.token_type
TT_NORMAL, TT_UNKNOWN, TT_CONTROL, TT_USER_DEFINED, TT_UNUSED, TT_BYTE = 1, 2, 3, 4, 5, 6

SPIECE = "\u2581"


def fail(msg):
    sys.exit(f"gguf_write: {msg}")


# ------------------------------------------------------------------------------------------ #
# Reading the model directory                                                                #
# ------------------------------------------------------------------------------------------ #

class Source:
    """Where a tensor's data lies in a safetensors file; rows are read on demand."""

    def __init__(self, path, offset, dtype, shape):
        self.path, self.offset, self.dtype = path, offset, safetensors_np.ST_DTYPES[dtype]
        self.cols = shape[-1] if shape else 1

    def rows(self, r0, n):
        """Rows r0 .. r0+n-1 (a 1-D tensor is one row), in the storage dtype."""
        return np.fromfile(self.path, dtype=self.dtype, count=n * self.cols,
                           offset=self.offset + r0 * self.cols * self.dtype.itemsize).reshape(n, self.cols)


def open_safetensors(model_dir):
    """{name: (dtype, shape, Source)} for every tensor of the directory (one file or the shards
    of model.safetensors.index.json), nothing read yet."""
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            weight_map = json.load(f)["weight_map"]
        files = sorted(set(weight_map.values()))
    else:
        weight_map, files = None, ["model.safetensors"]
    out = {}
    for fname in files:
        path = os.path.join(model_dir, fname)
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > size - 8:
                fail(f"{path}: header length {n} past the end of the file")
            header = json.loads(f.read(n).decode("utf-8"))
        header.pop("__metadata__", None)
        base = 8 + n
        for name, info in header.items():
            if weight_map is not None and weight_map.get(name) != fname:
                continue
            dtype, shape = info["dtype"], [int(s) for s in info["shape"]]
            if dtype not in ("F32", "F16", "BF16"):
                fail(f"{path}: {name} has dtype {dtype} (F32, F16 or BF16 only)")
            st = safetensors_np.ST_DTYPES[dtype]
            begin, end = (int(v) for v in info["data_offsets"])
            count = int(np.prod(shape, dtype=np.int64))
            if end - begin != count * st.itemsize or base + end > size:
                fail(f"{path}: bad data_offsets for {name}")
            out[name] = (dtype, shape, Source(path, base + begin, dtype, shape))
    if weight_map is not None:
        missing = [n for n in weight_map if n not in out]
        if missing:
            fail(f"{model_dir}: tensors missing from their shards: {missing[:5]}")
    return out


def to_f32(dtype, raw):
    if dtype == "BF16":
        return safetensors_np.bf16_bits_to_f32(raw)
    return np.asarray(raw, dtype=np.float32)


# ------------------------------------------------------------------------------------------ #
# Hyperparameters and tensor plan                                                            #
# ------------------------------------------------------------------------------------------ #

# Hugging Face architectures and their GGUF names (llama.cpp's converter): Mistral and Mixtral are
# written as "llama" (Mixtral with expert_count); the llama family's Q/K rows are interleaved.
ARCHS = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "MixtralForCausalLM": "llama",
         "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3", "Qwen2MoeForCausalLM": "qwen2moe",
         "Qwen3MoeForCausalLM": "qwen3moe"}


class Hparams:
    def __init__(self, cfg, model_dir):
        archs = [a for a in (cfg.get("architectures") or []) if a in ARCHS]
        if not archs:
            fail(f"{model_dir}/config.json: architectures {cfg.get('architectures')}: supported are {', '.join(ARCHS)} "
                 "(Pangu Pro MoE has no GGUF naming in llama.cpp's converter)")
        self.hf_arch = archs[0]
        self.arch = ARCHS[self.hf_arch]
        if cfg.get("rope_scaling"):
            fail(f"{model_dir}/config.json: rope_scaling {cfg['rope_scaling']} is not supported (plain RoPE only)")
        if cfg.get("mlp_bias"):
            fail(f"{model_dir}/config.json: mlp_bias is not supported")
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            fail(f"{model_dir}/config.json: hidden_act {act!r} (silu only)")
        try:
            self.n_embd = int(cfg["hidden_size"])
            self.n_layer = int(cfg["num_hidden_layers"])
            self.n_head = int(cfg["num_attention_heads"])
            self.n_vocab = int(cfg["vocab_size"])
        except KeyError as e:
            fail(f"{model_dir}/config.json: no {e.args[0]}")
        self.n_ff = int(cfg.get("intermediate_size") or 0)
        self.n_head_kv = int(cfg.get("num_key_value_heads") or self.n_head)
        self.head_dim = int(cfg.get("head_dim") or self.n_embd // self.n_head)
        self.n_ctx = int(cfg.get("max_position_embeddings") or 2048)
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.rope_theta = float(cfg.get("rope_theta", 10000.0))
        self.tied = bool(cfg.get("tie_word_embeddings", False))
        self.permute = self.arch == "llama"
        self.n_expert = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 0)
        self.n_expert_used = int(cfg.get("num_experts_per_tok") or 0)
        self.mixtral = self.hf_arch == "MixtralForCausalLM"
        self.n_ff_exp = self.n_ff if self.mixtral else int(cfg.get("moe_intermediate_size") or 0)
        self.n_ff_shexp = int(cfg.get("shared_expert_intermediate_size") or 0)
        if self.hf_arch in ("LlamaForCausalLM", "MistralForCausalLM") and self.n_expert:
            fail(f"{model_dir}/config.json: a dense architecture with experts")
        if self.n_expert and self.hf_arch in ("Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM"):
            # llama.cpp renormalises the chosen experts' weights for qwen3moe and not for qwen2moe
            want = self.hf_arch == "Qwen3MoeForCausalLM"
            if bool(cfg.get("norm_topk_prob", False)) != want:
                fail(f"{model_dir}/config.json: norm_topk_prob {cfg.get('norm_topk_prob')} differs from llama.cpp's fixed rule for "
                     f"{self.arch} ({want})")
        if self.head_dim % 2:
            fail(f"{model_dir}/config.json: head_dim {self.head_dim} is odd")
        if cfg.get("sliding_window") and cfg.get("use_sliding_window", True):
            print(f"gguf_write: note: sliding_window {cfg['sliding_window']} is not written (llama.cpp's llama "
                  "architecture attends to the whole context)", file=sys.stderr)


class Tensor:
    """One GGUF tensor: where its data comes from and how it is written. srcs: one source per
    expert of a merged [experts, rows, cols] tensor, else one."""

    def __init__(self, name, hf_names, dtype, shape, srcs, heads=0, head_dim=0, kind="matrix"):
        self.name, self.hf_names, self.src_dtype, self.shape, self.srcs = name, hf_names, dtype, shape, srcs
        self.heads, self.head_dim = heads, head_dim  # > 0: permute rows within each of `heads` heads
        self.kind = kind  # "matrix", "vector" (1-D), "router", "embd"
        self.type = GGML_F32
        self.offset = 0

    @property
    def rows(self):
        return self.shape[0] if len(self.shape) == 2 else 1

    @property
    def cols(self):
        return self.shape[-1]

    def dims(self):
        if len(self.srcs) > 1:
            return [self.cols, self.rows, len(self.srcs)]
        return [self.cols] if len(self.shape) == 1 else [self.cols, self.rows]

    def nbytes(self):
        blck, size = BLOCKS[self.type]
        return len(self.srcs) * self.rows * self.cols // blck * size


def plan_tensors(hp, st, model_dir):
    """The GGUF tensors in llama.cpp's names and order; unknown source tensors are reported."""
    used = set()

    def get(hf_name, shape, required=True):
        if hf_name not in st:
            if required:
                fail(f"{model_dir}: no tensor {hf_name}")
            return None
        dtype, got, raw = st[hf_name]
        if list(got) == [1] + list(shape) and len(shape) == 1:
            got = list(shape)  # a [1, n] vector (shared_expert_gate) is written 1-D
        if list(got) != list(shape):
            fail(f"{model_dir}: {hf_name} has shape {got}, expected {shape} from config.json")
        used.add(hf_name)
        return dtype, got, raw

    out = []

    def add(name, hf_name, shape, required=True, heads=0, kind=None):
        t = get(hf_name, shape, required)
        if t is not None:
            out.append(Tensor(name, [hf_name], t[0], list(shape), [t[2]], heads, hp.head_dim,
                              kind or ("vector" if len(shape) == 1 else "matrix")))

    def add_experts(name, hf_names, shape):
        got = [get(n, shape) for n in hf_names]
        out.append(Tensor(name, hf_names, got[0][0], list(shape), [g[2] for g in got]))

    E, V, F, D = hp.n_embd, hp.n_vocab, hp.n_ff, hp.head_dim
    Q, KV = hp.n_head * D, hp.n_head_kv * D
    perm = hp.permute
    add("token_embd.weight", "model.embed_tokens.weight", [V, E], kind="embd")
    add("output_norm.weight", "model.norm.weight", [E])
    if not hp.tied:
        if "lm_head.weight" in st:
            add("output.weight", "lm_head.weight", [V, E])
        else:
            print("gguf_write: note: no lm_head.weight: the output uses the embedding table (tied)", file=sys.stderr)
    else:
        used.add("lm_head.weight")  # a tied copy, if stored, is the embedding
    for i in range(hp.n_layer):
        p = f"model.layers.{i}."
        b = f"blk.{i}."
        add(b + "attn_norm.weight", p + "input_layernorm.weight", [E])
        add(b + "attn_q.weight", p + "self_attn.q_proj.weight", [Q, E], heads=hp.n_head if perm else 0)
        add(b + "attn_k.weight", p + "self_attn.k_proj.weight", [KV, E], heads=hp.n_head_kv if perm else 0)
        add(b + "attn_v.weight", p + "self_attn.v_proj.weight", [KV, E])
        add(b + "attn_output.weight", p + "self_attn.o_proj.weight", [E, Q])
        add(b + "attn_q.bias", p + "self_attn.q_proj.bias", [Q], False, heads=hp.n_head if perm else 0)
        add(b + "attn_k.bias", p + "self_attn.k_proj.bias", [KV], False, heads=hp.n_head_kv if perm else 0)
        add(b + "attn_v.bias", p + "self_attn.v_proj.bias", [KV], False)
        add(b + "attn_output.bias", p + "self_attn.o_proj.bias", [E], False)
        add(b + "attn_q_norm.weight", p + "self_attn.q_norm.weight", [D], False)
        add(b + "attn_k_norm.weight", p + "self_attn.k_norm.weight", [D], False)
        add(b + "ffn_norm.weight", p + "post_attention_layernorm.weight", [E])
        if not hp.n_expert:
            add(b + "ffn_gate.weight", p + "mlp.gate_proj.weight", [F, E])
            add(b + "ffn_up.weight", p + "mlp.up_proj.weight", [F, E])
            add(b + "ffn_down.weight", p + "mlp.down_proj.weight", [E, F])
            continue
        moe = "block_sparse_moe" if hp.mixtral else "mlp"
        FE, N = hp.n_ff_exp, hp.n_expert
        add(b + "ffn_gate_inp.weight", f"{p}{moe}.gate.weight", [N, E], kind="router")
        names = ("w1", "w3", "w2") if hp.mixtral else ("gate_proj", "up_proj", "down_proj")
        add_experts(b + "ffn_gate_exps.weight", [f"{p}{moe}.experts.{j}.{names[0]}.weight" for j in range(N)], [FE, E])
        add_experts(b + "ffn_up_exps.weight", [f"{p}{moe}.experts.{j}.{names[1]}.weight" for j in range(N)], [FE, E])
        add_experts(b + "ffn_down_exps.weight", [f"{p}{moe}.experts.{j}.{names[2]}.weight" for j in range(N)], [E, FE])
        if hp.n_ff_shexp:
            FS = hp.n_ff_shexp
            add(b + "ffn_gate_inp_shexp.weight", p + "mlp.shared_expert_gate.weight", [E], False)
            add(b + "ffn_gate_shexp.weight", p + "mlp.shared_expert.gate_proj.weight", [FS, E])
            add(b + "ffn_up_shexp.weight", p + "mlp.shared_expert.up_proj.weight", [FS, E])
            add(b + "ffn_down_shexp.weight", p + "mlp.shared_expert.down_proj.weight", [E, FS])
    extra = [n for n in st if n not in used and not n.endswith("rotary_emb.inv_freq")]
    if extra:
        fail(f"{model_dir}: tensors {hp.hf_arch} does not have: {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    return out


# ------------------------------------------------------------------------------------------ #
# Tokenizer                                                                                  #
# ------------------------------------------------------------------------------------------ #

def byte_piece(tok):
    return len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">") and all(c in "0123456789ABCDEFabcdef" for c in tok[3:5])


def spm_tokenizer(model_dir, cfg, n_vocab):
    """Metadata of a SentencePiece-style tokenizer.json, or None (with a note) when there is none
    or it is of another kind."""
    path = os.path.join(model_dir, "tokenizer.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        tok = json.load(f)
    model = tok.get("model") or {}
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        print(f"gguf_write: note: {path} is not a SentencePiece-style BPE with byte fallback "
              f"(type {model.get('type')!r}): writing a synthetic vocabulary instead", file=sys.stderr)
        return None
    vocab = model["vocab"]
    if len(vocab) > n_vocab or max(vocab.values()) >= n_vocab:
        fail(f"{path}: token ids reach past config.json's vocab_size {n_vocab}")
    id2tok = {i: t for t, i in vocab.items()}
    added = {a["id"]: a for a in tok.get("added_tokens", [])}
    for i, a in added.items():
        if i >= n_vocab:
            fail(f"{path}: added token id {i} is past vocab_size {n_vocab}")
        id2tok.setdefault(i, a["content"])
    unk = model.get("unk_token")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    first_merge = {}  # piece -> rank of the first merge making it: its score (SentencePiece's priority)
    for r, m in enumerate(merges):
        a, b = m.split(" ", 1)
        first_merge.setdefault(a + b, r)
    tokens, scores, types = [], [], []
    for i in range(n_vocab):
        t = id2tok.get(i)
        if t is None:
            tokens.append(f"[PAD{i}]")
            scores.append(-1e4)
            types.append(TT_UNUSED)
            continue
        tokens.append(t)
        if i in added:
            scores.append(0.0)
            types.append(TT_UNKNOWN if t == unk else TT_CONTROL if added[i].get("special") else TT_USER_DEFINED)
        elif t == unk:
            scores.append(0.0)
            types.append(TT_UNKNOWN)
        elif byte_piece(t):
            scores.append(0.0)
            types.append(TT_BYTE)
        else:
            scores.append(-float(first_merge.get(t, 1e6 + i)))
            types.append(TT_NORMAL)

    tcfg = {}
    tcfg_path = os.path.join(model_dir, "tokenizer_config.json")
    if os.path.exists(tcfg_path):
        with open(tcfg_path, encoding="utf-8") as f:
            tcfg = json.load(f)

    def special_id(cfg_key, tcfg_key, default):
        if isinstance(cfg.get(cfg_key), int):
            return cfg[cfg_key]
        s = tcfg.get(tcfg_key)
        s = s.get("content") if isinstance(s, dict) else s
        if isinstance(s, str) and s in vocab:
            return vocab[s]
        return vocab.get(default)

    # add_space_prefix: the normalizer (or the Metaspace pre-tokenizer) puts "▁" before the text
    def prepends(node):
        if not isinstance(node, dict):
            return False
        if node.get("type") == "Prepend" and node.get("prepend") == SPIECE:
            return True
        if node.get("type") == "Metaspace" and node.get("prepend_scheme", "always") in ("always", "first"):
            return node.get("add_prefix_space", True)
        return any(prepends(n) for n in node.get("normalizers", []) + node.get("pretokenizers", []))

    kv = [("tokenizer.ggml.model", STR, "llama"),
          ("tokenizer.ggml.tokens", (ARR, STR), tokens),
          ("tokenizer.ggml.scores", (ARR, F32V), scores),
          ("tokenizer.ggml.token_type", (ARR, I32), types),
          # llama.cpp makes the merges of this model from the scores; moge reads them when present
          ("tokenizer.ggml.merges", (ARR, STR), merges)]
    for key, cfg_key, tcfg_key, default in (("bos", "bos_token_id", "bos_token", "<s>"),
                                            ("eos", "eos_token_id", "eos_token", "</s>"),
                                            ("unk", None, "unk_token", unk or "<unk>")):
        v = special_id(cfg_key, tcfg_key, default) if cfg_key else vocab.get(default)
        if v is not None:
            kv.append((f"tokenizer.ggml.{'unknown' if key == 'unk' else key}_token_id", U32, int(v)))
    kv.append(("tokenizer.ggml.add_bos_token", BOOL, bool(tcfg.get("add_bos_token", True))))
    kv.append(("tokenizer.ggml.add_eos_token", BOOL, bool(tcfg.get("add_eos_token", False))))
    kv.append(("tokenizer.ggml.add_space_prefix", BOOL,
               bool(prepends(tok.get("normalizer")) or prepends(tok.get("pre_tokenizer")))))
    return kv + chat_template_kv(tcfg)


def chat_template_kv(tcfg):
    t = tcfg.get("chat_template")
    if isinstance(t, list):  # named templates: the default one
        t = next((x.get("template") for x in t if x.get("name") == "default"), None)
    return [("tokenizer.chat_template", STR, t)] if isinstance(t, str) else []


def tokenizer_kv(model_dir, cfg, n_vocab):
    return spm_tokenizer(model_dir, cfg, n_vocab) or bpe_tokenizer(model_dir, cfg, n_vocab) or synthetic_tokenizer(n_vocab, cfg)


# llama.cpp's pre-tokenizer names by the regular expression of a byte-level tokenizer.json
PRE_REGEX = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
}


def bpe_tokenizer(model_dir, cfg, n_vocab):
    """Metadata of a byte-level BPE tokenizer.json (model gpt2, its pre-tokenizer by name), or None."""
    path = os.path.join(model_dir, "tokenizer.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        tok = json.load(f)
    model, pre = tok.get("model") or {}, tok.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        return None
    parts = pre.get("pretokenizers", [pre])
    regex = next((p.get("pattern", {}).get("Regex") for p in parts if p.get("type") == "Split"), None)
    if regex is not None:
        name = PRE_REGEX.get(regex)
    elif any(p.get("type") == "ByteLevel" and p.get("use_regex", True) for p in parts):
        name = "gpt-2"
    else:
        name = None
    if name is None:
        print(f"gguf_write: note: {path}: a pre-tokenizer llama.cpp has no name for here: writing a synthetic vocabulary", file=sys.stderr)
        return None
    id2tok = {i: t for t, i in model["vocab"].items()}
    added = {a["id"]: a for a in tok.get("added_tokens", [])}
    for i, a in added.items():
        id2tok[i] = a["content"]
    if max(id2tok) >= n_vocab:
        fail(f"{path}: token ids reach past config.json's vocab_size {n_vocab}")
    tokens, types = [], []
    for i in range(n_vocab):
        t = id2tok.get(i)
        tokens.append(t if t is not None else f"[PAD{i}]")
        types.append(TT_UNUSED if t is None else (TT_CONTROL if added[i].get("special") else TT_USER_DEFINED) if i in added else TT_NORMAL)
    tcfg = {}
    tcfg_path = os.path.join(model_dir, "tokenizer_config.json")
    if os.path.exists(tcfg_path):
        with open(tcfg_path, encoding="utf-8") as f:
            tcfg = json.load(f)
    kv = [("tokenizer.ggml.model", STR, "gpt2"), ("tokenizer.ggml.pre", STR, name),
          ("tokenizer.ggml.tokens", (ARR, STR), tokens), ("tokenizer.ggml.token_type", (ARR, I32), types),
          ("tokenizer.ggml.merges", (ARR, STR), [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])])]
    for key in ("bos", "eos"):
        s = tcfg.get(f"{key}_token")
        s = s.get("content") if isinstance(s, dict) else s
        if isinstance(s, str) and s in tokens:
            kv.append((f"tokenizer.ggml.{key}_token_id", U32, tokens.index(s)))
    kv.append(("tokenizer.ggml.add_bos_token", BOOL, bool(tcfg.get("add_bos_token", False))))
    return kv + chat_template_kv(tcfg)


def synthetic_tokenizer(n_vocab, cfg=None):
    tokens, types = [], []
    for i, t in enumerate(["<unk>", "<s>", "</s>"][:n_vocab]):
        tokens.append(t)
        types.append(TT_UNKNOWN if i == 0 else TT_CONTROL)
    if n_vocab >= 3 + 256:
        for b in range(256):
            tokens.append(f"<0x{b:02X}>")
            types.append(TT_BYTE)
    while len(tokens) < n_vocab:
        tokens.append(f"t{len(tokens)}")
        types.append(TT_NORMAL)
    scores = [0.0 if ty != TT_NORMAL else -float(i) for i, ty in enumerate(types)]
    kv = [("tokenizer.ggml.model", STR, "llama"),
          ("tokenizer.ggml.tokens", (ARR, STR), tokens),
          ("tokenizer.ggml.scores", (ARR, F32V), scores),
          ("tokenizer.ggml.token_type", (ARR, I32), types),
          ("tokenizer.ggml.unknown_token_id", U32, 0)]
    if n_vocab >= 3:  # config.json's ids when it has them
        cfg = cfg or {}
        bos, eos = cfg.get("bos_token_id"), cfg.get("eos_token_id")
        eos = eos[0] if isinstance(eos, list) and eos else eos
        kv += [("tokenizer.ggml.bos_token_id", U32, bos if isinstance(bos, int) and 0 <= bos < n_vocab else 1),
               ("tokenizer.ggml.eos_token_id", U32, eos if isinstance(eos, int) and 0 <= eos < n_vocab else 2)]
    kv += [("tokenizer.ggml.add_bos_token", BOOL, True), ("tokenizer.ggml.add_eos_token", BOOL, False)]
    return kv


# ------------------------------------------------------------------------------------------ #
# Encoding                                                                                   #
# ------------------------------------------------------------------------------------------ #

SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32V: "<f", BOOL: "<?",
              U64: "<Q", I64: "<q", F64: "<d"}


def enc_str(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def enc_value(vtype, value):
    if isinstance(vtype, tuple):  # (ARR, element type)
        _, et = vtype
        out = [struct.pack("<IQ", et, len(value))]
        if et == STR:
            out += [enc_str(v) for v in value]
        else:
            out.append(np.asarray(value, dtype=np.dtype(SCALAR_FMT[et])).tobytes())
        return struct.pack("<I", ARR) + b"".join(out)
    if vtype == STR:
        return struct.pack("<I", STR) + enc_str(value)
    return struct.pack("<I", vtype) + struct.pack(SCALAR_FMT[vtype], value)


def permute_rows(x, heads, head_dim, row0):
    """Rows of x (a slice starting at row row0, a whole number of heads) from rotate-half order
    to interleaved order within each head."""
    assert row0 % head_dim == 0 and x.shape[0] % head_dim == 0
    half = head_dim // 2
    within = np.empty(head_dim, dtype=np.int64)
    within[0::2] = np.arange(half)
    within[1::2] = np.arange(half) + half
    idx = (np.arange(x.shape[0] // head_dim)[:, None] * head_dim + within[None, :]).reshape(-1)
    return x[idx]


def quantize_q8_0(x):
    """Rows of float32 x (cols a multiple of 32) as Q8_0 bytes, as quantize_row_q8_0_ref does:
    amax in float32, d = amax / 127 and id = 1 / d in float32, q = roundf(x * id)."""
    blocks = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, QK)
    amax = np.abs(blocks).max(axis=1)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    x0 = (blocks * inv[:, None]).astype(np.float32)
    # roundf: halves away from zero; |x0| + 0.5 is exact in float64
    a = np.abs(x0).astype(np.float64)
    q = (np.floor(a + 0.5) * np.sign(x0)).astype(np.int8)
    out = np.empty(blocks.shape[0], dtype=[("d", "<f2"), ("qs", "i1", (QK,))])
    out["d"] = d.astype(np.float16)
    out["qs"] = q
    return out.tobytes()


def f16(x):
    """float32 values rounded to fp16 and back (the scales the file stores)."""
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def quantize_q4_0(x):
    """Q4_0 as llama.cpp's reference quantizer: per 32 values d = m / -8 (m the value of largest
    magnitude), q = min(15, trunc(x / d + 8.5)); 16 bytes: low nibbles values 0-15, high 16-31."""
    blocks = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 32)
    idx = np.abs(blocks).argmax(axis=1)
    m = blocks[np.arange(blocks.shape[0]), idx]
    d = (m / np.float32(-8)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = np.minimum(15, np.trunc(blocks * inv[:, None] + np.float32(8.5))).astype(np.uint8)
    out = np.empty(blocks.shape[0], dtype=[("d", "<f2"), ("qs", "u1", (16,))])
    out["d"] = d.astype(np.float16)
    out["qs"] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


def quantize_q4_k(x):
    """Q4_K: super-blocks of 256 = 8 sub-blocks of 32, value = d * sc * q - dmin * mn (q 0..15, sc
    and mn 6 bits, d and dmin fp16). A plain min/max fit (not llama.cpp's search, so the bytes
    differ from llama-quantize's; the format is the same)."""
    sb = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 8, 32)
    lo = np.minimum(sb.min(axis=2), 0).astype(np.float32)
    hi = sb.max(axis=2).astype(np.float32)
    scale = ((hi - lo) / np.float32(15)).astype(np.float32)
    mins = (-lo).astype(np.float32)
    d = f16(scale.max(axis=1) / np.float32(63))
    dmin = f16(mins.max(axis=1) / np.float32(63))
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d[:, None] > 0, np.clip(np.rint(scale / d[:, None]), 0, 63), 0).astype(np.uint8)
        mn = np.where(dmin[:, None] > 0, np.clip(np.rint(mins / dmin[:, None]), 0, 63), 0).astype(np.uint8)
        d1 = (d[:, None] * sc.astype(np.float32)).astype(np.float32)
        m1 = (dmin[:, None] * mn.astype(np.float32)).astype(np.float32)
        q = np.where(d1[:, :, None] > 0, np.clip(np.rint((sb + m1[:, :, None]) / d1[:, :, None]), 0, 15), 0).astype(np.uint8)
    scales = np.zeros((sb.shape[0], 12), dtype=np.uint8)
    for j in range(4):
        scales[:, j] = (sc[:, j] & 63) | ((sc[:, j + 4] >> 4) << 6)
        scales[:, j + 4] = (mn[:, j] & 63) | ((mn[:, j + 4] >> 4) << 6)
        scales[:, j + 8] = (sc[:, j + 4] & 15) | ((mn[:, j + 4] & 15) << 4)
    qs = np.concatenate([q[:, 2 * g] | (q[:, 2 * g + 1] << 4) for g in range(4)], axis=1)
    out = np.empty(sb.shape[0], dtype=[("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", (12,)), ("qs", "u1", (128,))])
    out["d"], out["dmin"], out["scales"], out["qs"] = d.astype(np.float16), dmin.astype(np.float16), scales, qs
    return out.tobytes()


def quantize_q6_k(x):
    """Q6_K: super-blocks of 256 = 16 sub-blocks of 16, value = d * sc * (q - 32) (q 6 bits, sc
    int8, d fp16); ql holds the low 4 bits, qh the high 2 (llama.cpp's layout)."""
    sb = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 16, 16)
    scale = (np.abs(sb).max(axis=2) / np.float32(31)).astype(np.float32)
    d = f16(scale.max(axis=1) / np.float32(127))
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d[:, None] > 0, np.clip(np.rint(scale / d[:, None]), -128, 127), 0).astype(np.int8)
        d1 = (d[:, None] * sc.astype(np.float32)).astype(np.float32)
        q = (np.where(d1[:, :, None] != 0, np.clip(np.rint(sb / d1[:, :, None]), -32, 31), 0) + 32).astype(np.uint8)
    v = q.reshape(-1, 2, 128)  # two halves of 128 values
    ql = np.empty((v.shape[0], 2, 64), dtype=np.uint8)
    qh = np.empty((v.shape[0], 2, 32), dtype=np.uint8)
    ql[:, :, :32] = (v[:, :, 0:32] & 15) | ((v[:, :, 64:96] & 15) << 4)
    ql[:, :, 32:] = (v[:, :, 32:64] & 15) | ((v[:, :, 96:128] & 15) << 4)
    qh[:] = (v[:, :, 0:32] >> 4) | ((v[:, :, 32:64] >> 4) << 2) | ((v[:, :, 64:96] >> 4) << 4) | ((v[:, :, 96:128] >> 4) << 6)
    out = np.empty(sb.shape[0], dtype=[("ql", "u1", (128,)), ("qh", "u1", (64,)), ("scales", "i1", (16,)), ("d", "<f2")])
    out["ql"], out["qh"], out["scales"], out["d"] = ql.reshape(-1, 128), qh.reshape(-1, 64), sc, d.astype(np.float16)
    return out.tobytes()


def dequantize(ttype, data, cols):
    """The float32 values of rows of `cols` values stored as ttype (what a GGUF reader computes)."""
    if ttype == GGML_F32:
        return np.frombuffer(data, dtype="<f4").reshape(-1, cols)
    if ttype == GGML_F16:
        return np.frombuffer(data, dtype="<f2").astype(np.float32).reshape(-1, cols)
    if ttype == GGML_BF16:
        return safetensors_np.bf16_bits_to_f32(np.frombuffer(data, dtype="<u2")).reshape(-1, cols)
    if ttype == GGML_Q8_0:
        b = np.frombuffer(data, dtype=[("d", "<f2"), ("qs", "i1", (32,))])
        return (b["qs"].astype(np.float32) * b["d"].astype(np.float32)[:, None]).reshape(-1, cols)
    if ttype == GGML_Q4_0:
        b = np.frombuffer(data, dtype=[("d", "<f2"), ("qs", "u1", (16,))])
        q = np.concatenate([b["qs"] & 15, b["qs"] >> 4], axis=1).astype(np.int32) - 8
        return (q.astype(np.float32) * b["d"].astype(np.float32)[:, None]).reshape(-1, cols)
    if ttype == GGML_Q4_K:
        b = np.frombuffer(data, dtype=[("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", (12,)), ("qs", "u1", (128,))])
        s = b["scales"]
        sc = np.empty((len(b), 8), dtype=np.uint8)
        mn = np.empty((len(b), 8), dtype=np.uint8)
        for j in range(4):
            sc[:, j], mn[:, j] = s[:, j] & 63, s[:, j + 4] & 63
            sc[:, j + 4] = (s[:, j + 8] & 15) | ((s[:, j] >> 6) << 4)
            mn[:, j + 4] = (s[:, j + 8] >> 4) | ((s[:, j + 4] >> 6) << 4)
        d1 = (b["d"].astype(np.float32)[:, None] * sc.astype(np.float32)).astype(np.float32)
        m1 = (b["dmin"].astype(np.float32)[:, None] * mn.astype(np.float32)).astype(np.float32)
        qs = b["qs"].reshape(-1, 4, 32)
        q = np.stack([qs & 15, qs >> 4], axis=2).reshape(-1, 8, 32).astype(np.float32)
        return (d1[:, :, None] * q - m1[:, :, None]).astype(np.float32).reshape(-1, cols)
    if ttype == GGML_Q6_K:
        b = np.frombuffer(data, dtype=[("ql", "u1", (128,)), ("qh", "u1", (64,)), ("scales", "i1", (16,)), ("d", "<f2")])
        ql, qh = b["ql"].reshape(-1, 2, 64), b["qh"].reshape(-1, 2, 32)
        v = np.empty((len(b), 2, 128), dtype=np.int32)
        v[:, :, 0:32] = (ql[:, :, :32] & 15) | ((qh & 3) << 4)
        v[:, :, 32:64] = (ql[:, :, 32:] & 15) | (((qh >> 2) & 3) << 4)
        v[:, :, 64:96] = (ql[:, :, :32] >> 4) | (((qh >> 4) & 3) << 4)
        v[:, :, 96:128] = (ql[:, :, 32:] >> 4) | (((qh >> 6) & 3) << 4)
        q = (v.reshape(-1, 16, 16) - 32).astype(np.float32)
        d1 = (b["d"].astype(np.float32)[:, None] * b["scales"].astype(np.float32)).astype(np.float32)
        return (d1[:, :, None] * q).astype(np.float32).reshape(-1, cols)
    raise ValueError(f"type {ttype}")


def encode_slice(t, x):
    if t.type == GGML_F32:
        return np.ascontiguousarray(x, dtype="<f4").tobytes()
    if t.type == GGML_F16:
        return np.ascontiguousarray(x, dtype="<f2").tobytes()
    if t.type == GGML_BF16:
        return safetensors_np.f32_to_bf16_bits(x).astype("<u2").tobytes()
    return {GGML_Q8_0: quantize_q8_0, GGML_Q4_0: quantize_q4_0, GGML_Q4_K: quantize_q4_k, GGML_Q6_K: quantize_q6_k}[t.type](x)


def write_tensor(f, t, deq=None):
    """Converts and writes t's data in slices of whole heads / rows. deq (a dict): gets each
    source's values as the file stores them, dequantized, in Hugging Face order and name."""
    written = 0
    for hf_name, src in zip(t.hf_names, t.srcs):
        step = max(1, SLICE_BYTES // (4 * t.cols))
        if t.heads:
            step = max(t.head_dim, step // t.head_dim * t.head_dim)
        parts = []
        if len(t.shape) == 1:  # a vector: one row (a permuted bias: one "row" per element)
            x = to_f32(t.src_dtype, src.rows(0, 1))
            if t.heads:
                x = permute_rows(x.reshape(-1, 1), t.heads, t.head_dim, 0).reshape(1, -1)
            data = encode_slice(t, x)
            f.write(data)
            written += len(data)
            if deq is not None:
                y = dequantize(t.type, data, t.cols).reshape(-1)
                if t.heads:  # back to Hugging Face order
                    y = y[np.argsort(permute_rows(np.arange(t.cols).reshape(-1, 1), t.heads, t.head_dim, 0).reshape(-1))]
                deq[hf_name] = y.reshape(1, -1) if hf_name.endswith("shared_expert_gate.weight") else y
            continue
        for r0 in range(0, t.rows, step):
            x = to_f32(t.src_dtype, src.rows(r0, min(step, t.rows - r0)))
            if deq is not None:  # rows are quantized one by one: the same values in either order
                parts.append(dequantize(t.type, encode_slice(t, x), t.cols))
            if t.heads:
                x = permute_rows(x, t.heads, t.head_dim, r0)
            data = encode_slice(t, x)
            f.write(data)
            written += len(data)
        if deq is not None:
            deq[hf_name] = np.concatenate(parts, axis=0)
    assert written == t.nbytes(), (t.name, written, t.nbytes())


def pad(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def choose_type(t, out_type):
    """The type of one tensor: norms, biases and routers stay F32 (as llama.cpp writes them); a
    matrix whose rows do not fill the type's blocks falls back to Q8_0, else F32 (said on stderr)."""
    want = OUT_TYPES[out_type]
    if t.kind in ("vector", "router") or t.rows == 1:
        return GGML_F32
    for ty in (want, GGML_Q8_0, GGML_F32) if want in (GGML_Q4_K, GGML_Q6_K, GGML_Q4_0, GGML_Q8_0) else (want,):
        if t.cols % BLOCKS[ty][0] == 0:
            return ty
    return GGML_F32


def write_gguf(model_dir, out_path, out_type, name, ref_tokens=None):
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    hp = Hparams(cfg, model_dir)
    st = open_safetensors(model_dir)
    tensors = plan_tensors(hp, st, model_dir)
    fallback = {}
    for t in tensors:
        t.type = choose_type(t, out_type)
        if t.type != OUT_TYPES[out_type] and t.kind not in ("vector", "router") and t.rows > 1:
            fallback.setdefault((t.cols, TYPE_NAMES[t.type]), []).append(t.name)
    for (cols, ty), names in sorted(fallback.items()):
        print(f"gguf_write: {len(names)} matrices are {ty}, their rows of {cols} values not filling {out_type.upper()} blocks: "
              f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''}", file=sys.stderr)

    tok_kv = tokenizer_kv(model_dir, cfg, hp.n_vocab)
    arch = hp.arch
    kv = [("general.architecture", STR, arch),
          ("general.name", STR, name or os.path.basename(os.path.normpath(model_dir))),
          ("general.alignment", U32, ALIGN),
          ("general.file_type", U32, FILE_TYPES[out_type]),
          ("general.quantization_version", U32, 2),
          (f"{arch}.vocab_size", U32, hp.n_vocab),
          (f"{arch}.context_length", U32, hp.n_ctx),
          (f"{arch}.embedding_length", U32, hp.n_embd),
          (f"{arch}.block_count", U32, hp.n_layer),
          (f"{arch}.attention.head_count", U32, hp.n_head),
          (f"{arch}.attention.head_count_kv", U32, hp.n_head_kv),
          (f"{arch}.attention.key_length", U32, hp.head_dim),
          (f"{arch}.attention.value_length", U32, hp.head_dim),
          (f"{arch}.attention.layer_norm_rms_epsilon", F32V, hp.eps),
          (f"{arch}.rope.freq_base", F32V, hp.rope_theta),
          (f"{arch}.rope.dimension_count", U32, hp.head_dim)]
    if hp.n_ff:
        kv.append((f"{arch}.feed_forward_length", U32, hp.n_ff))
    if hp.n_expert:
        kv += [(f"{arch}.expert_count", U32, hp.n_expert), (f"{arch}.expert_used_count", U32, hp.n_expert_used)]
        if not hp.mixtral:
            kv.append((f"{arch}.expert_feed_forward_length", U32, hp.n_ff_exp))
        if hp.n_ff_shexp:
            kv.append((f"{arch}.expert_shared_feed_forward_length", U32, hp.n_ff_shexp))
    kv += tok_kv

    head = [b"GGUF", struct.pack("<IQQ", 3, len(tensors), len(kv))]
    for key, vtype, value in kv:
        head.append(enc_str(key) + enc_value(vtype, value))
    offset = 0
    for t in tensors:
        t.offset = offset
        dims = t.dims()
        head.append(enc_str(t.name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                    + struct.pack("<IQ", t.type, t.offset))
        offset += pad(t.nbytes())
    head = b"".join(head)

    deq = {} if ref_tokens is not None else None
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(head + b"\0" * (pad(len(head)) - len(head)))
        data0 = f.tell()
        for t in tensors:
            assert f.tell() == data0 + t.offset
            write_tensor(f, t, deq)
            f.write(b"\0" * (pad(t.nbytes()) - t.nbytes()))
    os.replace(tmp, out_path)
    counts = {}
    for t in tensors:
        counts[TYPE_NAMES[t.type]] = counts.get(TYPE_NAMES[t.type], 0) + 1
    params = sum(t.rows * t.cols * len(t.srcs) for t in tensors)
    print(f"gguf_write: wrote {out_path}: {len(tensors)} tensors ("
          + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + f"), {params / 1e6:.2f} M parameters, "
          f"{os.path.getsize(out_path) / 1e6:.2f} MB", file=sys.stderr)
    if deq is not None:
        write_dequant_ref(model_dir, deq, out_path + ".ref", ref_tokens, hp)


def write_dequant_ref(model_dir, deq, ref_path, n_tokens, hp):
    """OUT.gguf.ref: the logits tools/reference_forward.py computes from the values the file
    holds (its tensors dequantized, in a temporary Hugging Face directory) for n_tokens random
    ids; the .ref format of tests/test_reference_models.c."""
    import shutil
    import tempfile
    import reference_forward  # noqa: E402
    tmp = tempfile.mkdtemp(prefix="gguf_ref_")
    try:
        shutil.copy(os.path.join(model_dir, "config.json"), os.path.join(tmp, "config.json"))
        safetensors_np.write(os.path.join(tmp, "model.safetensors"),
                             [(k, "F32", np.ascontiguousarray(v, dtype=np.float32)) for k, v in sorted(deq.items())])
        tokens = np.random.default_rng(1234).integers(0, hp.n_vocab, n_tokens)
        logits = reference_forward.Model(tmp).forward(tokens)
    finally:
        shutil.rmtree(tmp)
    with open(ref_path, "wb") as f:
        f.write(b"MOGEREF1")
        f.write(struct.pack("<ii", len(tokens), logits.shape[1]))
        f.write(np.asarray(tokens, dtype="<i4").tobytes())
        f.write(np.asarray(logits, dtype="<f4").tobytes())
    print(f"gguf_write: wrote {ref_path}: logits of {n_tokens} tokens from the dequantized weights", file=sys.stderr)


# ------------------------------------------------------------------------------------------ #
# --check                                                                                    #
# ------------------------------------------------------------------------------------------ #

class Reader:
    def __init__(self, f, size):
        self.f, self.size = f, size

    def take(self, n):
        b = self.f.read(n)
        if len(b) != n:
            raise ValueError(f"the file ends at byte {self.size} inside the header")
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def string(self):
        (n,) = self.unpack("<Q")
        if n > self.size:
            raise ValueError(f"a string of {n} bytes at byte {self.f.tell() - 8}")
        return self.take(n).decode("utf-8")

    def value(self, vtype):
        if vtype == STR:
            return self.string()
        if vtype == ARR:
            et, n = self.unpack("<IQ")
            if n > self.size:
                raise ValueError(f"an array of {n} elements")
            return [self.value(et) for _ in range(n)]
        if vtype not in SCALAR_FMT:
            raise ValueError(f"unknown metadata value type {vtype}")
        return self.unpack(SCALAR_FMT[vtype])[0]


def read_gguf(path):
    """(metadata dict, [(name, dims, type, offset)], data section start)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        r = Reader(f, size)
        if r.take(4) != b"GGUF":
            raise ValueError("no GGUF magic")
        version, n_tensors, n_kv = r.unpack("<IQQ")
        if version not in (2, 3):
            raise ValueError(f"version {version}, not 2 or 3")
        meta = {}
        for _ in range(n_kv):
            key = r.string()
            (vtype,) = r.unpack("<I")
            meta[key] = r.value(vtype)
        infos = []
        for _ in range(n_tensors):
            name = r.string()
            (nd,) = r.unpack("<I")
            dims = list(r.unpack(f"<{nd}Q"))
            ttype, off = r.unpack("<IQ")
            infos.append((name, dims, ttype, off))
        align = meta.get("general.alignment", ALIGN)
        data0 = (f.tell() + align - 1) // align * align
    return meta, infos, data0


def tensor_bytes(dims, ttype):
    n = int(np.prod(dims, dtype=np.int64))
    if ttype not in BLOCKS:
        raise ValueError(f"tensor type {ttype} (this check knows {', '.join(TYPE_NAMES.values())})")
    blck, size = BLOCKS[ttype]
    if dims[0] % blck:
        raise ValueError(f"{TYPE_NAMES[ttype]} rows of {dims[0]} values (not a multiple of {blck})")
    return n // blck * size


def check(path):
    try:
        meta, infos, data0 = read_gguf(path)
        size = os.path.getsize(path)
        align = meta.get("general.alignment", ALIGN)
        spans = []
        for name, dims, ttype, off in infos:
            nb = tensor_bytes(dims, ttype)
            if off % align:
                raise ValueError(f"{name}: offset {off} is not a multiple of {align}")
            if data0 + off + nb > size:
                raise ValueError(f"{name}: bytes {data0 + off}..{data0 + off + nb} past the end of the file ({size})")
            spans.append((off, off + nb, name))
        spans.sort()
        for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
            if b0 < a1:
                raise ValueError(f"{an} and {bn} overlap")
        arch = meta.get("general.architecture")
        for key in ("embedding_length", "block_count", "attention.head_count"):
            if f"{arch}.{key}" not in meta:
                raise ValueError(f"no {arch}.{key}")
        n_tok = len(meta.get("tokenizer.ggml.tokens", []))
        if meta.get(f"{arch}.vocab_size", n_tok) != n_tok:
            raise ValueError(f"{n_tok} tokens but vocab_size {meta[f'{arch}.vocab_size']}")
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        print(f"gguf_write --check: {path}: {e}", file=sys.stderr)
        return 1
    types = {}
    for _, _, ttype, _ in infos:
        types[TYPE_NAMES.get(ttype, ttype)] = types.get(TYPE_NAMES.get(ttype, ttype), 0) + 1
    print(f"{path}: GGUF v3 OK: {arch}, {len(meta)} metadata keys, {len(infos)} tensors ("
          + ", ".join(f"{v} {k}" for k, v in sorted(types.items())) + f"), {n_tok} tokens, data at byte {data0}, "
          f"{size} bytes")
    return 0


def main():
    ap = argparse.ArgumentParser(description="Write a dense Llama model directory as a GGUF file for llama.cpp.")
    ap.add_argument("model_dir", nargs="?")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--type", choices=sorted(FILE_TYPES), default="f32")
    ap.add_argument("--ref", type=int, metavar="N", help="also write OUT.gguf.ref: reference logits of N random tokens "
                    "from the weights as the file stores them (dequantized)")
    ap.add_argument("--name")
    ap.add_argument("--check", metavar="FILE")
    a = ap.parse_args()
    if a.check:
        if a.model_dir:
            ap.error("--check takes no other arguments")
        return check(a.check)
    if not a.model_dir or not a.out:
        ap.error("MODEL_DIR and OUT.gguf are required")
    if not os.path.isfile(os.path.join(a.model_dir, "config.json")):
        fail(f"{a.model_dir}: no config.json")
    out_dir = os.path.dirname(a.out) or "."
    if not os.path.isdir(out_dir):
        fail(f"{a.out}: the folder {out_dir} does not exist")
    write_gguf(a.model_dir, a.out, a.type, a.name, a.ref)
    return 0


if __name__ == "__main__":
    sys.exit(main())
