#!/usr/bin/python3
# make_moe_fixtures.py — writes moge's committed Mixture-of-Experts test fixtures (deterministic:
# fixed seeds, so a re-run gives identical bytes on the same machine):
#
#   tests/fixtures/moe/NAME/            tiny random Hugging Face MoE checkpoints (config.json +
#                                       model.safetensors): Pangu Pro MoE, Mixtral, Qwen2-MoE,
#                                       Qwen3-MoE
#   tests/fixtures/moe/NAME.ref         logits, expert choices and routing weights from
#                                       tools/reference_forward.py with the checkpoint's own rule
#   tests/fixtures/moe/NAME.RULE.ref    the same with a routing override (topk, group_limited)
#   tests/fixtures/moe/refs.tsv         one line per .ref: REF MODEL_DIR MODE K N_GROUP
#                                       TOPK_GROUP RENORM (tab-separated; the rule it was made
#                                       with, so a test can ask the runtime for the same one)
#
# Usage (from the repository root): /usr/bin/python3 tools/make_moe_fixtures.py [--search]
#   --search: for a fixture whose seed fails the checks below, try the following seeds and print
#   the first that passes (then put it in SPECS by hand); without it a failing seed is an error.
#
# Checks on every fixture (so a float32 implementation must reach the same expert choices):
#   every routing margin (tools/reference_forward.py: the relative probability gap between the
#   last kept candidate and the best rejected one, per token, layer and rule) >= MIN_MARGIN;
#   every layer chooses at least half of the experts (at least K+1) over the 24 tokens;
#   every checkpoint directory is smaller than MAX_DIR_BYTES.
#
# .ref format (MoE), little-endian: 8 bytes "MOGEREF2", int32 n_tokens, int32 n_vocab,
# int32 n_moe_layers, int32 k, int32 tokens[n_tokens], float32 logits[n_tokens][n_vocab] (the
# causal sequence `tokens` starting at position 0), int32 experts[n_moe_layers][n_tokens][k]
# (chosen expert ids, ascending), float32 weights[n_moe_layers][n_tokens][k] (each listed
# expert's routing weight, same order). Computed in float64 from the weights as stored (already
# rounded to BF16/F16), then rounded to float32.
#
# Random weights: matrices N(0, 1/fan_in) (so every projection keeps the scale of its input and
# the experts matter to the logits), embeddings N(0, 1), biases N(0, 0.3^2), norm weights
# U[0.8, 1.2], router N(0, (ROUTER_GAIN^2)/hidden) (router logits of std ~2: routing varies from
# token to token), Pangu router_scale U[0.5, 1.5]; all rounded to the checkpoint dtype.

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
MIN_MARGIN = 5e-3        # 50x the 1e-4 the C tests need
MAX_DIR_BYTES = 300_000
ROUTER_GAIN = 2.0

PANGU, MIXTRAL = "PanguProMoEForCausalLM", "MixtralForCausalLM"
QWEN2, QWEN3 = "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM"

# Seeds: the first seed from 3001, 3101, 3201, 3301, 3401 that passes the checks above with
# MIN_MARGIN = 5e-3 (3001..3005 and 3101 fail it: a margin under 5e-3 somewhere).
#
# The widths (hidden, moe_inter, shared_inter) of the two Pangu fixtures and qwen3_moe's
# moe_inter are smaller than first planned (96/40/64, 64/16/48, 24) so every directory stays
# under MAX_DIR_BYTES; the counts that shape routing and attention (experts, groups, k, heads,
# KV heads, layers, vocab) are as planned.
SPECS = [
    dict(name="pangu_16e4g", arch=PANGU, dtype="F32", seed=3006, hidden=48, heads=6, kv_heads=2,
         head_dim=None, experts=16, k=4, moe_inter=8, shared_inter=16, layers=2, vocab=103,
         tied=False, theta=10000.0, eps=1e-5, scale_shape="N",
         refs=[("", None),
               ("topk", dict(mode="topk", k=4, renorm=False)),
               ("group_limited", dict(mode="group_limited", k=4, n_group=4, topk_group=2,
                                      renorm=False))]),
    dict(name="pangu_64e8g_bf16", arch=PANGU, dtype="BF16", seed=3102, hidden=32, heads=4,
         kv_heads=2, head_dim=None, experts=64, k=8, moe_inter=8, shared_inter=16, layers=2,
         vocab=97, tied=False, theta=10000.0, eps=1e-5, scale_shape="1N", refs=[("", None)]),
    dict(name="mixtral_8e", arch=MIXTRAL, dtype="F16", seed=3201, hidden=48, heads=4, kv_heads=2,
         head_dim=None, experts=8, k=2, moe_inter=32, layers=2, vocab=89, tied=False,
         theta=1000000.0, eps=1e-5, refs=[("", None)]),
    dict(name="qwen2_moe", arch=QWEN2, dtype="BF16", seed=3301, hidden=64, heads=4, kv_heads=4,
         head_dim=None, experts=8, k=2, moe_inter=24, shared_inter=48, dense_inter=128, layers=2,
         vocab=91, tied=True, theta=1000000.0, eps=1e-6, norm_topk_prob=False,
         refs=[("", None)]),
    dict(name="qwen3_moe", arch=QWEN3, dtype="F32", seed=3401, hidden=48, heads=4, kv_heads=2,
         head_dim=16, experts=8, k=2, moe_inter=16, dense_inter=96, layers=2, vocab=79,
         tied=False, theta=1000000.0, eps=1e-6, norm_topk_prob=True, refs=[("", None)]),
]

TORCH_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def head_dim(spec):
    return spec["head_dim"] or spec["hidden"] // spec["heads"]


def config_for(spec):
    """config.json contents, in the style of the released configs of each architecture."""
    arch = spec["arch"]
    cfg = {"architectures": [arch]}
    common = {
        "hidden_size": spec["hidden"],
        "num_hidden_layers": spec["layers"],
        "num_attention_heads": spec["heads"],
        "num_key_value_heads": spec["kv_heads"],
        "vocab_size": spec["vocab"],
        "max_position_embeddings": 128,
        "rms_norm_eps": spec["eps"],
        "rope_theta": spec["theta"],
        "hidden_act": "silu",
        "tie_word_embeddings": spec["tied"],
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": TORCH_DTYPE[spec["dtype"]],
    }
    if arch == PANGU:
        cfg["model_type"] = "PanguProMoE"
        cfg.update(common)
        cfg.update({"num_experts": spec["experts"], "num_experts_per_tok": spec["k"],
                    "moe_intermediate_size": spec["moe_inter"],
                    "shared_expert_intermediate_size": spec["shared_inter"],
                    "bos_token_id": 1, "eos_token_id": 2})
    elif arch == MIXTRAL:
        cfg["model_type"] = "mixtral"
        cfg.update(common)
        cfg.update({"intermediate_size": spec["moe_inter"],
                    "num_local_experts": spec["experts"], "num_experts_per_tok": spec["k"],
                    "sliding_window": None, "rope_scaling": None, "attention_dropout": 0.0,
                    "output_router_logits": False, "router_aux_loss_coef": 0.02,
                    "router_jitter_noise": 0.0, "bos_token_id": 1, "eos_token_id": 2})
    else:
        cfg["model_type"] = "qwen2_moe" if arch == QWEN2 else "qwen3_moe"
        cfg.update(common)
        if spec["head_dim"]:
            cfg["head_dim"] = spec["head_dim"]
        cfg.update({"intermediate_size": spec["dense_inter"],
                    "num_experts": spec["experts"], "num_experts_per_tok": spec["k"],
                    "moe_intermediate_size": spec["moe_inter"],
                    "norm_topk_prob": spec["norm_topk_prob"],
                    "decoder_sparse_step": 1, "mlp_only_layers": [],
                    "use_sliding_window": False, "sliding_window": None,
                    "max_window_layers": spec["layers"], "rope_scaling": None,
                    "attention_dropout": 0.0, "output_router_logits": False,
                    "router_aux_loss_coef": 0.001,
                    "bos_token_id": spec["vocab"] - 2, "eos_token_id": spec["vocab"] - 1})
        if arch == QWEN2:
            cfg["shared_expert_intermediate_size"] = spec["shared_inter"]
            cfg["qkv_bias"] = True
        else:
            cfg["attention_bias"] = False
    return cfg


def random_tensors(spec, seed):
    """[(name, dtype, storage array)] in file order, rounded to the spec's dtype."""
    rng = np.random.default_rng(seed)
    arch = spec["arch"]
    H, V, D, N = spec["hidden"], spec["vocab"], head_dim(spec), spec["experts"]
    I = spec["moe_inter"]
    q_dim, kv_dim = spec["heads"] * D, spec["kv_heads"] * D
    qkv_bias = arch in (PANGU, QWEN2)
    o_bias = arch == PANGU

    def linear(n_out, n_in):
        return rng.normal(0.0, 1.0 / np.sqrt(n_in), size=(n_out, n_in))

    def bias(n):
        return rng.normal(0.0, 0.3, size=n)

    def norm(n):
        return rng.uniform(0.8, 1.2, size=n)

    out = [("model.embed_tokens.weight", rng.normal(0.0, 1.0, size=(V, H)))]
    for i in range(spec["layers"]):
        p = f"model.layers.{i}."
        out.append((p + "input_layernorm.weight", norm(H)))
        for proj, n in (("q", q_dim), ("k", kv_dim), ("v", kv_dim)):
            out.append((p + f"self_attn.{proj}_proj.weight", linear(n, H)))
            if qkv_bias:
                out.append((p + f"self_attn.{proj}_proj.bias", bias(n)))
        out.append((p + "self_attn.o_proj.weight", linear(H, q_dim)))
        if o_bias:
            out.append((p + "self_attn.o_proj.bias", bias(H)))
        if arch == QWEN3:
            out.append((p + "self_attn.q_norm.weight", norm(D)))
            out.append((p + "self_attn.k_norm.weight", norm(D)))
        out.append((p + "post_attention_layernorm.weight", norm(H)))
        m = p + ("block_sparse_moe." if arch == MIXTRAL else "mlp.")
        out.append((m + "gate.weight", rng.normal(0.0, ROUTER_GAIN / np.sqrt(H), size=(N, H))))
        if arch == PANGU:
            shape = (N,) if spec["scale_shape"] == "N" else (1, N)
            out.append((m + "router_scale", rng.uniform(0.5, 1.5, size=shape)))
        for j in range(N):
            e = m + f"experts.{j}."
            if arch == MIXTRAL:
                out.append((e + "w1.weight", linear(I, H)))
                out.append((e + "w2.weight", linear(H, I)))
                out.append((e + "w3.weight", linear(I, H)))
            else:
                out.append((e + "gate_proj.weight", linear(I, H)))
                out.append((e + "up_proj.weight", linear(I, H)))
                out.append((e + "down_proj.weight", linear(H, I)))
        if arch in (PANGU, QWEN2):
            S = spec["shared_inter"]
            out.append((m + "shared_expert.gate_proj.weight", linear(S, H)))
            out.append((m + "shared_expert.up_proj.weight", linear(S, H)))
            out.append((m + "shared_expert.down_proj.weight", linear(H, S)))
        if arch == QWEN2:
            out.append((m + "shared_expert_gate.weight", linear(1, H)))
    out.append(("model.norm.weight", norm(H)))
    if not spec["tied"]:
        out.append(("lm_head.weight", linear(V, H)))
    return [(name, spec["dtype"], safetensors_np.encode(t, spec["dtype"])) for name, t in out]


def ref_tokens(spec, seed):
    return np.random.default_rng(seed + 500).integers(0, spec["vocab"], N_REF_TOKENS)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def write_model(mdir, spec, seed):
    if os.path.isdir(mdir):
        shutil.rmtree(mdir)
    os.makedirs(mdir)
    write_json(os.path.join(mdir, "config.json"), config_for(spec))
    safetensors_np.write(os.path.join(mdir, "model.safetensors"), random_tensors(spec, seed))
    return sum(os.path.getsize(os.path.join(mdir, f)) for f in os.listdir(mdir))


def write_moeref(path, tokens, logits, experts, weights):
    """A MOGEREF2 file (format above): experts and weights (layers, T, k), (0, T, 0) for a dense
    model. Written to a temporary name and renamed."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"MOGEREF2")
        f.write(struct.pack("<iiii", len(tokens), logits.shape[1], experts.shape[0], experts.shape[2]))
        f.write(np.asarray(tokens, dtype="<i4").tobytes())
        f.write(np.asarray(logits, dtype="<f4").tobytes())
        f.write(np.asarray(experts, dtype="<i4").tobytes())
        f.write(np.asarray(weights, dtype="<f4").tobytes())
    os.replace(tmp, path)


def write_ref(path, tokens, logits, routed):
    write_moeref(path, tokens, logits, np.stack([r[0] for r in routed]), np.stack([r[1] for r in routed]))


def evaluate(mdir, spec, seed):
    """Runs every rule of the spec. Returns ([(suffix, routing, logits, routed)], problems)."""
    model = reference_forward.Model(mdir)
    tokens = ref_tokens(spec, seed)
    results, problems = [], []
    for suffix, override in spec["refs"]:
        routing = model.routing(**override) if override else model.routing()
        logits, routed = model.forward_routed(tokens, routing)
        for li, (ids, _, margins) in enumerate(routed):
            worst = float(margins.min())
            if worst < MIN_MARGIN:
                t = int(margins.argmin())
                problems.append(f"{routing}: layer {li} token {t} margin {worst:.2e}")
            distinct = len(np.unique(ids))
            if distinct < max(routing.k + 1, spec["experts"] // 2):
                problems.append(f"{routing}: layer {li} uses only {distinct} experts")
        results.append((suffix, routing, tokens, logits, routed))
    return results, problems


def make(root, search=False):
    outdir = os.path.join(root, "tests", "fixtures", "moe")
    os.makedirs(outdir, exist_ok=True)
    manifest = []
    for spec in SPECS:
        mdir = os.path.join(outdir, spec["name"])
        seed = spec["seed"]
        while True:
            size = write_model(mdir, spec, seed)
            results, problems = evaluate(mdir, spec, seed)
            if size >= MAX_DIR_BYTES:
                raise SystemExit(f"{spec['name']}: {size} bytes, over {MAX_DIR_BYTES}")
            if not problems:
                break
            if not search:
                raise SystemExit(f"{spec['name']} seed {seed} fails:\n  " + "\n  ".join(problems)
                                 + "\n(run with --search to find a seed that passes)")
            print(f"{spec['name']}: seed {seed} fails ({problems[0]})")
            seed += 1
        if seed != spec["seed"]:
            print(f"{spec['name']}: seed {seed} passes; put it in SPECS")
        for suffix, routing, tokens, logits, routed in results:
            ref = spec["name"] + (f".{suffix}" if suffix else "") + ".ref"
            write_ref(os.path.join(outdir, ref), tokens, logits, routed)
            manifest.append((ref, spec["name"], routing.mode, routing.k, routing.n_group,
                             routing.topk_group, int(routing.renorm)))
            worst = min(float(m.min()) for _, _, m in routed)
            distinct = [len(np.unique(ids)) for ids, _, _ in routed]
            print(f"{ref}: dir {size} bytes, seed {seed}, routing {routing}, min margin "
                  f"{worst:.3e}, distinct experts per layer {distinct}, logits std "
                  f"{logits.std():.3f}")
    with open(os.path.join(outdir, "refs.tsv"), "w") as f:
        for row in manifest:
            f.write("\t".join(str(c) for c in row) + "\n")


def main(argv):
    search = "--search" in argv[1:]
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    make(root, search)


if __name__ == "__main__":
    main(sys.argv)
