#!/usr/bin/python3
# make_test_fixtures.py — writes moge's committed test fixtures (deterministic: fixed seeds, so a
# re-run gives identical bytes on the same machine):
#
#   tests/fixtures/models/NAME/        tiny random Hugging Face models (config.json + safetensors)
#   tests/fixtures/models/NAME.ref     their reference logits, from tools/reference_forward.py
#   tests/fixtures/broken/CASE/        invalid model directories the C loader must reject
#   tests/fixtures/broken/cases.tsv    CASE<TAB>STATUS<TAB>SUBSTRING[<TAB>SUBSTRING...]: loading
#                                      CASE must fail with STATUS and an error message that
#                                      contains every SUBSTRING
#   tests/fixtures/broken/valid/       the (valid) model every broken case is derived from; not
#                                      in cases.tsv — it must load, as a control
#
# Usage (from the repository root): /usr/bin/python3 tools/make_test_fixtures.py [REPO_ROOT]
#
# .ref format, little-endian: 8 bytes "MOGEREF1", int32 n_tokens, int32 n_vocab,
# int32 tokens[n_tokens], float32 logits[n_tokens][n_vocab]: the logits at every position of the
# causal sequence `tokens` (starting at position 0), computed in float64 from the weights as
# stored (already rounded to BF16/F16) and then rounded to float32.

import json
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_forward  # noqa: E402
import safetensors_np  # noqa: E402

N_REF_TOKENS = 24


# ---------------------------------------------------------------------------------------------
# Model specs and random weights
# ---------------------------------------------------------------------------------------------

MODELS = [
    dict(name="llama_f32", seed=1001, arch="LlamaForCausalLM", model_type="llama", dtype="F32",
         hidden=48, heads=6, kv_heads=2, head_dim=None, inter=80, layers=2, vocab=97,
         tied=False, theta=10000.0, eps=1e-5, qkv_bias=False, o_bias=False, shards=1),
    dict(name="qwen2_bf16", seed=1002, arch="Qwen2ForCausalLM", model_type="qwen2", dtype="BF16",
         hidden=64, heads=4, kv_heads=2, head_dim=None, inter=96, layers=2, vocab=101,
         tied=True, theta=1000000.0, eps=1e-6, qkv_bias=True, o_bias=False, shards=1),
    dict(name="mistral_f16_sharded", seed=1003, arch="MistralForCausalLM",
         model_type="mistral", dtype="F16", hidden=40, heads=4, kv_heads=1, head_dim=12,
         inter=72, layers=3, vocab=89, tied=False, theta=10000.0, eps=1e-5, qkv_bias=False,
         o_bias=False, shards=2),
    dict(name="llama_bias_bf16", seed=1004, arch="LlamaForCausalLM", model_type="llama",
         dtype="BF16", hidden=32, heads=4, kv_heads=4, head_dim=None, inter=64, layers=2,
         vocab=67, tied=True, theta=10000.0, eps=1e-5, qkv_bias=True, o_bias=True, shards=1),
]

# The model every broken case is derived from (small, so the 18 copies stay small).
BROKEN_BASE = dict(name="broken_base", seed=2001, arch="LlamaForCausalLM", model_type="llama",
                   dtype="F32", hidden=16, heads=2, kv_heads=1, head_dim=None, inter=24,
                   layers=2, vocab=32, tied=False, theta=10000.0, eps=1e-5, qkv_bias=False,
                   o_bias=False, shards=1)

TORCH_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def head_dim(spec):
    return spec["head_dim"] or spec["hidden"] // spec["heads"]


def config_for(spec):
    """config.json contents, in the style of the real configs of each architecture."""
    cfg = {
        "architectures": [spec["arch"]],
        "model_type": spec["model_type"],
        "hidden_size": spec["hidden"],
        "intermediate_size": spec["inter"],
        "num_hidden_layers": spec["layers"],
        "num_attention_heads": spec["heads"],
        "num_key_value_heads": spec["kv_heads"],
    }
    if spec["head_dim"]:
        cfg["head_dim"] = spec["head_dim"]
    cfg.update({
        "vocab_size": spec["vocab"],
        "max_position_embeddings": 128,
        "rms_norm_eps": spec["eps"],
        "rope_theta": spec["theta"],
        "rope_scaling": None,
        "tie_word_embeddings": spec["tied"],
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "use_cache": True,
        "torch_dtype": TORCH_DTYPE[spec["dtype"]],
    })
    if spec["model_type"] == "llama":
        cfg.update({"attention_bias": spec["o_bias"], "mlp_bias": False,
                    "bos_token_id": 1, "eos_token_id": 2})
    elif spec["model_type"] == "mistral":
        cfg.update({"sliding_window": None, "bos_token_id": 1, "eos_token_id": 2})
    elif spec["model_type"] == "qwen2":
        cfg.update({"use_sliding_window": False, "sliding_window": 128,
                    "max_window_layers": spec["layers"],
                    "bos_token_id": spec["vocab"] - 2, "eos_token_id": spec["vocab"] - 1})
    return cfg


def random_tensors(spec):
    """[(name, dtype, storage array)] in file order: weights ~ N(0, 0.1), biases ~ N(0, 0.1),
    norm weights uniform in [0.9, 1.1]; rounded to the spec's dtype."""
    rng = np.random.default_rng(spec["seed"])
    H, I, V, D = spec["hidden"], spec["inter"], spec["vocab"], head_dim(spec)
    q_dim, kv_dim = spec["heads"] * D, spec["kv_heads"] * D

    def normal(*shape):
        return rng.normal(0.0, 0.1, size=shape)

    def norm(n):
        return rng.uniform(0.9, 1.1, size=n)

    out = [("model.embed_tokens.weight", normal(V, H))]
    for i in range(spec["layers"]):
        p = f"model.layers.{i}."
        out.append((p + "input_layernorm.weight", norm(H)))
        out.append((p + "self_attn.q_proj.weight", normal(q_dim, H)))
        if spec["qkv_bias"]:
            out.append((p + "self_attn.q_proj.bias", normal(q_dim)))
        out.append((p + "self_attn.k_proj.weight", normal(kv_dim, H)))
        if spec["qkv_bias"]:
            out.append((p + "self_attn.k_proj.bias", normal(kv_dim)))
        out.append((p + "self_attn.v_proj.weight", normal(kv_dim, H)))
        if spec["qkv_bias"]:
            out.append((p + "self_attn.v_proj.bias", normal(kv_dim)))
        out.append((p + "self_attn.o_proj.weight", normal(H, q_dim)))
        if spec["o_bias"]:
            out.append((p + "self_attn.o_proj.bias", normal(H)))
        out.append((p + "post_attention_layernorm.weight", norm(H)))
        out.append((p + "mlp.gate_proj.weight", normal(I, H)))
        out.append((p + "mlp.up_proj.weight", normal(I, H)))
        out.append((p + "mlp.down_proj.weight", normal(H, I)))
    out.append(("model.norm.weight", norm(H)))
    if not spec["tied"]:
        out.append(("lm_head.weight", normal(V, H)))
    return [(name, spec["dtype"], safetensors_np.encode(t, spec["dtype"])) for name, t in out]


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def shard_names(n):
    return [f"model-{k:05d}-of-{n:05d}.safetensors" for k in range(1, n + 1)]


def write_sharded(outdir, tensors, n_shards):
    """Splits tensors (in order) into n_shards files of about equal size (so a layer may straddle
    two shards, as real checkpoints do) plus model.safetensors.index.json."""
    names = shard_names(n_shards)
    total = sum(arr.nbytes for _, _, arr in tensors)
    parts, acc = [[] for _ in names], 0
    for t in tensors:
        k = min(n_shards - 1, acc * n_shards // total)
        parts[k].append(t)
        acc += t[2].nbytes
    weight_map = {}
    for fname, part in zip(names, parts):
        safetensors_np.write(os.path.join(outdir, fname), part)
        for name, _, _ in part:
            weight_map[name] = fname
    write_json(os.path.join(outdir, "model.safetensors.index.json"),
               {"metadata": {"total_size": total},
                "weight_map": dict(sorted(weight_map.items()))})


def write_model(outdir, spec, tensors=None):
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    write_json(os.path.join(outdir, "config.json"), config_for(spec))
    tensors = tensors if tensors is not None else random_tensors(spec)
    if spec["shards"] == 1:
        safetensors_np.write(os.path.join(outdir, "model.safetensors"), tensors)
    else:
        write_sharded(outdir, tensors, spec["shards"])
    return tensors


def write_ref(path, tokens, logits):
    tokens = np.asarray(tokens, dtype="<i4")
    logits = np.asarray(logits, dtype="<f4")
    with open(path, "wb") as f:
        f.write(b"MOGEREF1")
        f.write(struct.pack("<ii", len(tokens), logits.shape[1]))
        f.write(tokens.tobytes())
        f.write(logits.tobytes())


def make_models(root):
    outdir = os.path.join(root, "tests", "fixtures", "models")
    os.makedirs(outdir, exist_ok=True)
    for spec in MODELS:
        mdir = os.path.join(outdir, spec["name"])
        write_model(mdir, spec)
        tokens = np.random.default_rng(spec["seed"] + 500).integers(0, spec["vocab"],
                                                                   N_REF_TOKENS)
        model = reference_forward.Model(mdir)
        logits = model.forward(tokens)
        write_ref(os.path.join(outdir, spec["name"] + ".ref"), tokens, logits)
        size = sum(os.path.getsize(os.path.join(mdir, f)) for f in os.listdir(mdir))
        top = logits.argmax(axis=1)
        print(f"{spec['name']}: {size} bytes, logits std {logits.std():.3f}, "
              f"{len(set(top.tolist()))} distinct argmaxes over {N_REF_TOKENS} positions")


# ---------------------------------------------------------------------------------------------
# Broken fixtures
# ---------------------------------------------------------------------------------------------

def raw_safetensors(path, entries, header=None, length_field=None, truncate=0):
    """Writes a safetensors file from entries (name, dtype, shape, data_bytes), laid out
    contiguously in order (the offsets follow the data actually written, so a short data blob
    gives end - begin != numel * size). `header` replaces the JSON header bytes, `length_field`
    the 8-byte length, `truncate` drops that many bytes from the end of the file."""
    if header is None:
        header = layout_header(entries)
    blob = struct.pack("<Q", len(header) if length_field is None else length_field) + header
    blob += b"".join(data for _, _, _, data in entries)
    with open(path, "wb") as f:
        f.write(blob[:len(blob) - truncate])


def layout_header(entries):
    """The header bytes for entries (name, dtype, shape, data_bytes) stored contiguously."""
    offsets, pos = [], 0
    for name, dtype, shape, data in entries:
        offsets.append((name, dtype, shape, pos, pos + len(data)))
        pos += len(data)
    return safetensors_np.build_header(offsets)


def as_entries(tensors):
    return [(name, dtype, list(arr.shape), arr.tobytes()) for name, dtype, arr in tensors]


def make_broken(root):
    spec = BROKEN_BASE
    bdir = os.path.join(root, "tests", "fixtures", "broken")
    if os.path.isdir(bdir):
        shutil.rmtree(bdir)
    os.makedirs(bdir)
    base_cfg = config_for(spec)
    base = random_tensors(spec)
    base_entries = as_entries(base)
    H, I = spec["hidden"], spec["inter"]
    cases = []

    def new_case(name, status, *substrings, config=base_cfg, entries=base_entries):
        d = os.path.join(bdir, name)
        os.makedirs(d)
        if config is not None:
            write_json(os.path.join(d, "config.json"), config)
        if entries is not None:
            raw_safetensors(os.path.join(d, "model.safetensors"), entries)
        cases.append((name, status) + substrings)
        return d

    def cfg_with(**changes):
        c = dict(base_cfg)
        for k, v in changes.items():
            if v is _DROP:
                del c[k]
            else:
                c[k] = v
        return c

    # The control: the base model, valid.
    write_model(os.path.join(bdir, "valid"), spec, base)
    reference_forward.Model(os.path.join(bdir, "valid"))  # must load

    # config.json problems
    new_case("no_config", "MOGE_ERR_IO", "config.json", config=None)
    d = new_case("bad_json", "MOGE_ERR_FORMAT", "config.json", config=None)
    text = json.dumps(base_cfg, indent=2)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(text[:len(text) // 2])
    new_case("bad_key_type", "MOGE_ERR_FORMAT", "hidden_size", config=cfg_with(hidden_size="big"))
    new_case("missing_key", "MOGE_ERR_FORMAT", "num_hidden_layers",
             config=cfg_with(num_hidden_layers=_DROP))
    new_case("unknown_arch", "MOGE_ERR_UNSUPPORTED", "GPT2LMHeadModel",
             config=cfg_with(architectures=["GPT2LMHeadModel"]))
    new_case("rope_scaling", "MOGE_ERR_UNSUPPORTED", "rope_scaling", "yarn",
             config=cfg_with(rope_scaling={"type": "yarn", "factor": 4.0}))

    # tensors that do not fit the config
    new_case("no_weights", "MOGE_ERR_IO", "model.safetensors", entries=None)
    missing = "model.layers.1.mlp.up_proj.weight"
    new_case("missing_tensor", "MOGE_ERR_FORMAT", missing,
             entries=[e for e in base_entries if e[0] != missing])
    gate = "model.layers.0.mlp.gate_proj.weight"
    transposed = [(n, dt, [a.shape[1], a.shape[0]], np.ascontiguousarray(a.T).tobytes())
                  if n == gate else (n, dt, list(a.shape), a.tobytes()) for n, dt, a in base]
    new_case("wrong_shape", "MOGE_ERR_SHAPE", gate, f"[{I}, {H}]", f"[{H}, {I}]",
             entries=transposed)
    as_i32 = [(n, "I32", shape, np.ones(shape, dtype="<i4").tobytes())
              if n == "model.norm.weight" else (n, dt, shape, data)
              for n, dt, shape, data in base_entries]
    new_case("wrong_dtype", "MOGE_ERR_UNSUPPORTED", "model.norm.weight", "I32", entries=as_i32)

    # malformed safetensors files
    good_header = layout_header(base_entries)
    full_size = 8 + len(good_header) + sum(len(b) for _, _, _, b in base_entries)
    d = new_case("header_past_end", "MOGE_ERR_FORMAT", "model.safetensors", entries=None)
    raw_safetensors(os.path.join(d, "model.safetensors"), base_entries,
                    length_field=full_size + 1000)
    d = new_case("truncated_file", "MOGE_ERR_FORMAT", "model.safetensors", entries=None)
    raw_safetensors(os.path.join(d, "model.safetensors"), base_entries, truncate=full_size - 5)
    d = new_case("bad_header_json", "MOGE_ERR_FORMAT", "model.safetensors", entries=None)
    garbage = b"this is not JSON {\"dtype\": F32"
    raw_safetensors(os.path.join(d, "model.safetensors"), base_entries,
                    header=garbage + b" " * (len(good_header) - len(garbage)))
    # the last tensor in the file runs past its end: the file lost its last 8 bytes
    last = base_entries[-1][0]
    d = new_case("offsets_past_end", "MOGE_ERR_FORMAT", last, entries=None)
    raw_safetensors(os.path.join(d, "model.safetensors"), base_entries, truncate=8)
    # one tensor in the middle of the file holds 4 bytes less than its shape needs (the offsets
    # stay contiguous and cover the whole file, so only the size is wrong)
    short = "model.layers.1.input_layernorm.weight"
    new_case("offsets_size_mismatch", "MOGE_ERR_FORMAT", short,
             entries=[(n, dt, s, b[:-4] if n == short else b) for n, dt, s, b in base_entries])

    # sharded checkpoints
    def sharded_case(name, status, *substrings, drop_shard=None, index_change=None,
                     drop_tensor=None):
        d = new_case(name, status, *substrings, entries=None)
        write_sharded(d, [t for t in base if t[0] != drop_tensor], 2)
        index_path = os.path.join(d, "model.safetensors.index.json")
        with open(index_path) as f:
            index = json.load(f)
        if drop_tensor:  # the index still maps it, to the first shard
            index["weight_map"][drop_tensor] = shard_names(2)[0]
            index["weight_map"] = dict(sorted(index["weight_map"].items()))
        if index_change:
            index_change(index)
        write_json(index_path, index)
        if drop_shard:
            os.remove(os.path.join(d, drop_shard))

    # hostile numbers (issue 18): JSON numbers outside the integer type they become, checked as
    # doubles before any cast; the last tensor's data_offsets of 1e300 and of 2^64
    def offsets_case(name, begin, end):
        text = good_header.decode()
        key = '"%s"' % last
        at = text.index(key)
        lo = text.index('"data_offsets":[', at) + len('"data_offsets":[')
        hi = text.index("]", lo)
        text = text[:lo] + f"{begin}, {end}" + text[hi:]
        header = text.rstrip().encode()
        header += b" " * (-len(header) % 8)
        d = new_case(name, "MOGE_ERR_FORMAT", last, "data_offsets", entries=None)
        raw_safetensors(os.path.join(d, "model.safetensors"), base_entries, header=header)

    offsets_case("offsets_1e300", json.loads(good_header)[last]["data_offsets"][0], "1e300")
    offsets_case("offsets_2pow64", str(2**64), str(2**64 + 1))
    new_case("bos_1e10", "MOGE_ERR_FORMAT", "bos_token_id", config=cfg_with(bos_token_id=1e10))
    new_case("sliding_window_neg", "MOGE_ERR_FORMAT", "sliding_window", config=cfg_with(sliding_window=-1e30))
    # misleading errors (issue 18, defect 8): each names the field at fault
    new_case("sliding_window_minus5", "MOGE_ERR_FORMAT", "sliding_window", "found -5",
             config=cfg_with(sliding_window=-5))
    new_case("sliding_window_0", "MOGE_ERR_FORMAT", "sliding_window", "found 0", config=cfg_with(sliding_window=0))
    new_case("layers_1e7", "MOGE_ERR_FORMAT", "model.layers.2.input_layernorm.weight",
             config=cfg_with(num_hidden_layers=10**7))
    new_case("layers_1e9", "MOGE_ERR_FORMAT", "model.layers.2.input_layernorm.weight",
             config=cfg_with(num_hidden_layers=10**9))
    new_case("heads_exceed_hidden", "MOGE_ERR_FORMAT", "num_attention_heads (32)", "hidden_size (16)", "head_dim",
             config=cfg_with(num_attention_heads=32, num_key_value_heads=32))
    new_case("eps_1e300", "MOGE_ERR_FORMAT", "rms_norm_eps", "1e+300", config=cfg_with(rms_norm_eps=1e300))

    sharded_case("missing_shard", "MOGE_ERR_IO", shard_names(2)[1], drop_shard=shard_names(2)[1])
    sharded_case("bad_index", "MOGE_ERR_FORMAT", "weight_map",
                 index_change=lambda index: index.pop("weight_map"))
    lost = "model.layers.0.self_attn.v_proj.weight"
    sharded_case("shard_missing_tensor", "MOGE_ERR_FORMAT", lost, drop_tensor=lost)

    # silently accepted weights (issue 18, defect 7): a name twice, overlapping data
    def listed_header(rows):
        """Header bytes from (name, dtype, shape, begin, end) rows kept as listed: a name may
        repeat (a dict could not hold it; cJSON keeps both members)."""
        members = ['"__metadata__":{"format":"pt"}'] + [
            json.dumps(name) + ":" + json.dumps({"dtype": dt, "shape": shape, "data_offsets": [b, e]},
                                                separators=(",", ":"))
            for name, dt, shape, b, e in rows]
        text = ("{" + ",".join(members) + "}").encode()
        return text + b" " * (-len(text) % 8)

    def contiguous_rows(entries):
        rows, pos = [], 0
        for name, dt, shape, data in entries:
            rows.append((name, dt, shape, pos, pos + len(data)))
            pos += len(data)
        return rows

    # model.norm.weight twice, the second copy after all the data (so nothing overlaps)
    norm = "model.norm.weight"
    twice = base_entries + [e for e in base_entries if e[0] == norm]
    d = new_case("duplicate_name", "MOGE_ERR_FORMAT", "model.safetensors", norm, "twice", entries=None)
    raw_safetensors(os.path.join(d, "model.safetensors"), twice, header=listed_header(contiguous_rows(twice)))
    # one tensor starts 4 bytes into the one before it (its size stays right; 4 bytes after it
    # are left unused)
    rows = contiguous_rows(base_entries)
    k = [r[0] for r in rows].index(short)
    rows[k] = rows[k][:3] + (rows[k][3] - 4, rows[k][4] - 4)
    d = new_case("offsets_overlap", "MOGE_ERR_FORMAT", "model.safetensors", rows[k - 1][0], short, "overlap",
                 entries=None)
    raw_safetensors(os.path.join(d, "model.safetensors"), base_entries, header=listed_header(rows))
    # every tensor at offset 0 (the data as long as the largest): the first two collide first
    rows = [(n, dt, shape, 0, len(data)) for n, dt, shape, data in base_entries]
    d = new_case("offsets_all_zero", "MOGE_ERR_FORMAT", "model.safetensors", rows[0][0], rows[1][0], "overlap",
                 entries=None)
    raw_safetensors(os.path.join(d, "model.safetensors"), base_entries, header=listed_header(rows))
    # a tensor in both shards; the index names the shard opened first (the one of the index's
    # first entry), whose copy a loader keeping the first would use without a word
    both = "model.layers.0.self_attn.v_proj.weight"
    d = new_case("shard_duplicate", "MOGE_ERR_FORMAT", both, "two shards", shard_names(2)[0], shard_names(2)[1],
                 entries=None)
    half = len(base) // 2
    parts = [base[:half], base[half:] + [t for t in base[:half] if t[0] == both]]
    assert any(t[0] == both for t in base[:half])
    for fname, part in zip(shard_names(2), parts):
        safetensors_np.write(os.path.join(d, fname), part)
    weight_map = {}
    for fname, part in zip(shard_names(2), parts):
        for name, _, _ in part:
            weight_map.setdefault(name, fname)
    first = min(weight_map)
    assert first != both
    weight_map[both] = weight_map[first]
    write_json(os.path.join(d, "model.safetensors.index.json"),
               {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))})

    with open(os.path.join(bdir, "cases.tsv"), "w") as f:
        for case in cases:
            f.write("\t".join(case) + "\n")
    print(f"broken: {len(cases)} cases")


class _Drop:
    pass


_DROP = _Drop()


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "..")
    make_models(root)
    make_broken(root)


if __name__ == "__main__":
    main(sys.argv)
