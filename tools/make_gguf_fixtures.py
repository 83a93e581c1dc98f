#!/usr/bin/python3
# make_gguf_fixtures.py — writes the GGUF fixtures of tests/test_gguf.c into tests/fixtures/gguf/
# with tools/gguf_write.py:
#   * the random Hugging Face fixtures of tools/make_test_fixtures.py (tests/fixtures/models,
#     tests/fixtures/moe) and models/stories260K as GGUF files of their own dtype, so a load of the
#     .gguf must give the directory's logits (and tokenizer ids) exactly;
#   * two more random models whose rows fill the quantized types' blocks (the fixtures' 48-wide
#     rows do not): llama256 (hidden 256, tied embeddings) as Q8_0, Q4_0, Q4_K and Q6_K, and
#     qwen2moe64 (hidden 64, 4 merged experts, a gated shared expert) as Q8_0 and Q4_0; each with
#     a .gguf.ref of the logits tools/reference_forward.py computes from the file's weights
#     dequantized (the HF directories of these two are made in a temporary directory only).
# Usage: /usr/bin/python3 tools/make_gguf_fixtures.py   (from the repository root; needs numpy)
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402

OUT = "tests/fixtures/gguf"
WRITER = [sys.executable, "tools/gguf_write.py"]

# (source directory, output name, type): every one the dtype its source stores
SAME = [
    ("tests/fixtures/models/llama_f32", "llama_f32", "f32"),
    ("tests/fixtures/models/mistral_f16_sharded", "mistral_f16", "f16"),
    ("tests/fixtures/models/qwen2_bf16", "qwen2_bf16", "bf16"),
    ("tests/fixtures/models/llama_bias_bf16", "llama_bias_bf16", "bf16"),
    ("tests/fixtures/moe/mixtral_8e", "mixtral_f16", "f16"),
    ("tests/fixtures/moe/qwen3_moe", "qwen3moe_f32", "f32"),
    ("models/stories260K", "stories260K_f32", "f32"),
]


def random_dir(path, cfg, seed):
    """A random Hugging Face directory of cfg (Llama or Qwen2-MoE), float32."""
    rng = np.random.default_rng(seed)
    E, V, L = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim", E // H)
    t = {}

    def mat(name, rows, cols, scale=None):
        t[name] = (rng.standard_normal((rows, cols)) * (scale or 1.0 / np.sqrt(cols))).astype(np.float32)

    def vec(name, n, base=1.0):
        t[name] = (base + 0.1 * rng.standard_normal(n)).astype(np.float32)

    mat("model.embed_tokens.weight", V, E, 1.0)
    vec("model.norm.weight", E)
    if not cfg.get("tie_word_embeddings"):
        mat("lm_head.weight", V, E)
    for i in range(L):
        p = f"model.layers.{i}."
        vec(p + "input_layernorm.weight", E)
        vec(p + "post_attention_layernorm.weight", E)
        mat(p + "self_attn.q_proj.weight", H * D, E)
        mat(p + "self_attn.k_proj.weight", KV * D, E)
        mat(p + "self_attn.v_proj.weight", KV * D, E)
        mat(p + "self_attn.o_proj.weight", E, H * D)
        if cfg["architectures"][0] == "Qwen2MoeForCausalLM":
            for b, n in (("q", H * D), ("k", KV * D), ("v", KV * D)):
                vec(p + f"self_attn.{b}_proj.bias", n, 0.0)
            N, FE, FS = cfg["num_experts"], cfg["moe_intermediate_size"], cfg["shared_expert_intermediate_size"]
            mat(p + "mlp.gate.weight", N, E, 1.0)
            for j in range(N):
                mat(p + f"mlp.experts.{j}.gate_proj.weight", FE, E)
                mat(p + f"mlp.experts.{j}.up_proj.weight", FE, E)
                mat(p + f"mlp.experts.{j}.down_proj.weight", E, FE)
            mat(p + "mlp.shared_expert.gate_proj.weight", FS, E)
            mat(p + "mlp.shared_expert.up_proj.weight", FS, E)
            mat(p + "mlp.shared_expert.down_proj.weight", E, FS)
            mat(p + "mlp.shared_expert_gate.weight", 1, E)
        else:
            F = cfg["intermediate_size"]
            mat(p + "mlp.gate_proj.weight", F, E)
            mat(p + "mlp.up_proj.weight", F, E)
            mat(p + "mlp.down_proj.weight", E, F)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    safetensors_np.write(os.path.join(path, "model.safetensors"), [(k, "F32", v) for k, v in sorted(t.items())])


LLAMA256 = {"architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 1,
            "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 32, "vocab_size": 32, "max_position_embeddings": 64,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True, "hidden_act": "silu",
            "bos_token_id": 1, "eos_token_id": 2}
QWEN2MOE64 = {"architectures": ["Qwen2MoeForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": 40, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
              "rope_theta": 1000000.0, "tie_word_embeddings": False, "hidden_act": "silu", "num_experts": 4,
              "num_experts_per_tok": 2, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 64,
              "norm_topk_prob": False, "bos_token_id": 1, "eos_token_id": 2}


def run(args):
    print("+", " ".join(args), file=sys.stderr)
    subprocess.run(args, check=True)


def main():
    os.makedirs(OUT, exist_ok=True)
    for src, name, ty in SAME:
        run(WRITER + [src, f"{OUT}/{name}.gguf", "--type", ty])
    tmp = tempfile.mkdtemp(prefix="gguf_fix_")
    try:
        random_dir(f"{tmp}/llama256", LLAMA256, 256)
        random_dir(f"{tmp}/qwen2moe64", QWEN2MOE64, 64)
        for ty in ("q8_0", "q4_0", "q4_k", "q6_k"):
            run(WRITER + [f"{tmp}/llama256", f"{OUT}/llama256_{ty}.gguf", "--type", ty, "--ref", "10", "--name", "llama256"])
        for ty in ("q8_0", "q4_0"):
            run(WRITER + [f"{tmp}/qwen2moe64", f"{OUT}/qwen2moe64_{ty}.gguf", "--type", ty, "--ref", "10", "--name", "qwen2moe64"])
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
