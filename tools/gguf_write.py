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
# ggml tensor types
GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8
TYPE_NAMES = {GGML_F32: "F32", GGML_F16: "F16", GGML_Q8_0: "Q8_0"}
# general.file_type (llama_ftype): all F32, mostly F16, mostly Q8_0
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7}
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

class Hparams:
    def __init__(self, cfg, model_dir):
        archs = cfg.get("architectures") or []
        mtype = cfg.get("model_type")
        if not (set(archs) & {"LlamaForCausalLM", "MistralForCausalLM"} or mtype in ("llama", "mistral")):
            fail(f"{model_dir}/config.json: architectures {archs} / model_type {mtype!r}: "
                 "only dense Llama / Mistral models (LlamaForCausalLM, MistralForCausalLM)")
        for key in ("num_experts", "num_local_experts", "n_routed_experts"):
            if cfg.get(key):
                fail(f"{model_dir}/config.json: {key} = {cfg[key]}: mixture-of-experts models are not supported")
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
            self.n_ff = int(cfg["intermediate_size"])
            self.n_vocab = int(cfg["vocab_size"])
        except KeyError as e:
            fail(f"{model_dir}/config.json: no {e.args[0]}")
        self.n_head_kv = int(cfg.get("num_key_value_heads") or self.n_head)
        self.head_dim = int(cfg.get("head_dim") or self.n_embd // self.n_head)
        self.n_ctx = int(cfg.get("max_position_embeddings") or 2048)
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.rope_theta = float(cfg.get("rope_theta", 10000.0))
        self.tied = bool(cfg.get("tie_word_embeddings", False))
        if self.head_dim % 2:
            fail(f"{model_dir}/config.json: head_dim {self.head_dim} is odd")
        if cfg.get("sliding_window"):
            print(f"gguf_write: note: sliding_window {cfg['sliding_window']} is not written (llama.cpp's llama "
                  "architecture attends to the whole context)", file=sys.stderr)


class Tensor:
    """One GGUF tensor: where its data comes from and how it is written."""

    def __init__(self, name, src, dtype, shape, raw, heads=0, head_dim=0):
        self.name, self.src, self.src_dtype, self.shape, self.raw = name, src, dtype, shape, raw
        self.heads, self.head_dim = heads, head_dim  # > 0: permute rows within each of `heads` heads
        self.type = GGML_F32
        self.offset = 0

    @property
    def rows(self):
        return self.shape[0] if len(self.shape) == 2 else 1

    @property
    def cols(self):
        return self.shape[-1]

    def nbytes(self):
        n = self.rows * self.cols
        if self.type == GGML_F32:
            return n * 4
        if self.type == GGML_F16:
            return n * 2
        return n // QK * (2 + QK)


def plan_tensors(hp, st, model_dir):
    """The GGUF tensors in llama.cpp's names and order; unknown source tensors are reported."""
    used = set()

    def get(hf_name, shape, required=True):
        if hf_name not in st:
            if required:
                fail(f"{model_dir}: no tensor {hf_name}")
            return None
        dtype, got, raw = st[hf_name]
        if list(got) != list(shape):
            fail(f"{model_dir}: {hf_name} has shape {got}, expected {shape} from config.json")
        used.add(hf_name)
        return dtype, got, raw

    out = []

    def add(name, hf_name, shape, required=True, heads=0):
        t = get(hf_name, shape, required)
        if t is not None:
            out.append(Tensor(name, hf_name, t[0], t[1], t[2], heads, hp.head_dim))

    E, V, F, D = hp.n_embd, hp.n_vocab, hp.n_ff, hp.head_dim
    Q, KV = hp.n_head * D, hp.n_head_kv * D
    add("token_embd.weight", "model.embed_tokens.weight", [V, E])
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
        add(b + "attn_q.weight", p + "self_attn.q_proj.weight", [Q, E], heads=hp.n_head)
        add(b + "attn_k.weight", p + "self_attn.k_proj.weight", [KV, E], heads=hp.n_head_kv)
        add(b + "attn_v.weight", p + "self_attn.v_proj.weight", [KV, E])
        add(b + "attn_output.weight", p + "self_attn.o_proj.weight", [E, Q])
        add(b + "attn_q.bias", p + "self_attn.q_proj.bias", [Q], False, heads=hp.n_head)
        add(b + "attn_k.bias", p + "self_attn.k_proj.bias", [KV], False, heads=hp.n_head_kv)
        add(b + "attn_v.bias", p + "self_attn.v_proj.bias", [KV], False)
        add(b + "attn_output.bias", p + "self_attn.o_proj.bias", [E], False)
        add(b + "ffn_norm.weight", p + "post_attention_layernorm.weight", [E])
        add(b + "ffn_gate.weight", p + "mlp.gate_proj.weight", [F, E])
        add(b + "ffn_up.weight", p + "mlp.up_proj.weight", [F, E])
        add(b + "ffn_down.weight", p + "mlp.down_proj.weight", [E, F])
    extra = [n for n in st if n not in used and not n.endswith("rotary_emb.inv_freq")]
    if extra:
        fail(f"{model_dir}: tensors a dense Llama does not have: {extra[:5]}{' ...' if len(extra) > 5 else ''}")
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
            scores.append(-float(i))
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
          ("tokenizer.ggml.token_type", (ARR, I32), types)]
    for key, cfg_key, tcfg_key, default in (("bos", "bos_token_id", "bos_token", "<s>"),
                                            ("eos", "eos_token_id", "eos_token", "</s>"),
                                            ("unk", None, "unk_token", unk or "<unk>")):
        v = special_id(cfg_key, tcfg_key, default) if cfg_key else vocab.get(default)
        if v is not None:
            kv.append((f"tokenizer.ggml.{key}_token_id", U32, int(v)))
    kv.append(("tokenizer.ggml.add_bos_token", BOOL, bool(tcfg.get("add_bos_token", True))))
    kv.append(("tokenizer.ggml.add_eos_token", BOOL, bool(tcfg.get("add_eos_token", False))))
    kv.append(("tokenizer.ggml.add_space_prefix", BOOL,
               bool(prepends(tok.get("normalizer")) or prepends(tok.get("pre_tokenizer")))))
    return kv


def synthetic_tokenizer(n_vocab):
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
          ("tokenizer.ggml.unk_token_id", U32, 0)]
    if n_vocab >= 3:
        kv += [("tokenizer.ggml.bos_token_id", U32, 1), ("tokenizer.ggml.eos_token_id", U32, 2)]
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


def encode_slice(t, x):
    if t.type == GGML_F32:
        return np.ascontiguousarray(x, dtype="<f4").tobytes()
    if t.type == GGML_F16:
        return np.ascontiguousarray(x, dtype="<f2").tobytes()
    return quantize_q8_0(x)


def write_tensor(f, t):
    """Converts and writes t's data in slices of whole heads / rows."""
    step = max(1, SLICE_BYTES // (4 * t.cols))
    if t.heads:
        if len(t.shape) == 1:  # a bias: one "row" per element
            x = to_f32(t.src_dtype, t.raw.rows(0, 1)).reshape(-1, 1)
            f.write(encode_slice(t, permute_rows(x, t.heads, t.head_dim, 0).reshape(1, -1)))
            return
        step = max(t.head_dim, step // t.head_dim * t.head_dim)
    written = 0
    for r0 in range(0, t.rows, step):
        x = to_f32(t.src_dtype, t.raw.rows(r0, min(step, t.rows - r0)))
        if t.heads:
            x = permute_rows(x, t.heads, t.head_dim, r0)
        data = encode_slice(t, x)
        f.write(data)
        written += len(data)
    assert written == t.nbytes(), (t.name, written, t.nbytes())


def pad(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def write_gguf(model_dir, out_path, out_type, name):
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    hp = Hparams(cfg, model_dir)
    st = open_safetensors(model_dir)
    tensors = plan_tensors(hp, st, model_dir)
    kept = []
    for t in tensors:
        if len(t.shape) != 2 or out_type == "f32":
            continue
        if out_type == "f16":
            t.type = GGML_F16
        elif t.cols % QK == 0:
            t.type = GGML_Q8_0
        else:
            kept.append(t)
    for cols in sorted({t.cols for t in kept}):
        names = [t.name for t in kept if t.cols == cols]
        print(f"gguf_write: {len(names)} matrices stay F32, their rows of {cols} values not being a multiple of {QK} "
              f"(Q8_0 blocks): {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}", file=sys.stderr)

    tok_kv = spm_tokenizer(model_dir, cfg, hp.n_vocab) or synthetic_tokenizer(hp.n_vocab)
    arch = "llama"
    kv = [("general.architecture", STR, arch),
          ("general.name", STR, name or os.path.basename(os.path.normpath(model_dir))),
          ("general.alignment", U32, ALIGN),
          ("general.file_type", U32, FILE_TYPES[out_type]),
          ("general.quantization_version", U32, 2),
          (f"{arch}.vocab_size", U32, hp.n_vocab),
          (f"{arch}.context_length", U32, hp.n_ctx),
          (f"{arch}.embedding_length", U32, hp.n_embd),
          (f"{arch}.block_count", U32, hp.n_layer),
          (f"{arch}.feed_forward_length", U32, hp.n_ff),
          (f"{arch}.attention.head_count", U32, hp.n_head),
          (f"{arch}.attention.head_count_kv", U32, hp.n_head_kv),
          (f"{arch}.attention.key_length", U32, hp.head_dim),
          (f"{arch}.attention.value_length", U32, hp.head_dim),
          (f"{arch}.attention.layer_norm_rms_epsilon", F32V, hp.eps),
          (f"{arch}.rope.freq_base", F32V, hp.rope_theta),
          (f"{arch}.rope.dimension_count", U32, hp.head_dim)] + tok_kv

    head = [b"GGUF", struct.pack("<IQQ", 3, len(tensors), len(kv))]
    for key, vtype, value in kv:
        head.append(enc_str(key) + enc_value(vtype, value))
    offset = 0
    for t in tensors:
        t.offset = offset
        dims = [t.cols] if len(t.shape) == 1 else [t.cols, t.rows]
        head.append(enc_str(t.name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                    + struct.pack("<IQ", t.type, t.offset))
        offset += pad(t.nbytes())
    head = b"".join(head)

    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(head + b"\0" * (pad(len(head)) - len(head)))
        data0 = f.tell()
        for t in tensors:
            assert f.tell() == data0 + t.offset
            write_tensor(f, t)
            f.write(b"\0" * (pad(t.nbytes()) - t.nbytes()))
    os.replace(tmp, out_path)
    counts = {}
    for t in tensors:
        counts[TYPE_NAMES[t.type]] = counts.get(TYPE_NAMES[t.type], 0) + 1
    params = sum(t.rows * t.cols for t in tensors)
    print(f"gguf_write: wrote {out_path}: {len(tensors)} tensors ("
          + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + f"), {params / 1e6:.1f} M parameters, "
          f"{os.path.getsize(out_path) / 1e6:.1f} MB", file=sys.stderr)


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
        if version != 3:
            raise ValueError(f"version {version}, not 3")
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
    if ttype == GGML_F32:
        return n * 4
    if ttype == GGML_F16:
        return n * 2
    if ttype == GGML_Q8_0:
        if dims[0] % QK:
            raise ValueError(f"Q8_0 rows of {dims[0]} values (not a multiple of {QK})")
        return n // QK * (2 + QK)
    raise ValueError(f"tensor type {ttype} (this check knows F32, F16 and Q8_0)")


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
    write_gguf(a.model_dir, a.out, a.type, a.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
