#!/usr/bin/python3
# reference_forward.py — an independent, plain-numpy (float64) implementation of the Hugging Face
# Llama / Mistral / Qwen2 causal-LM forward pass, read straight from a model directory
# (config.json + model.safetensors, or shards listed in model.safetensors.index.json; F32, F16
# and BF16 weights). It is the oracle that moge's fixtures (.ref logits) are made with.
#
# Usage:
#   /usr/bin/python3 tools/reference_forward.py MODEL_DIR logits ID [ID...]
#       prints the argmax and the first logits of every position
#   /usr/bin/python3 tools/reference_forward.py MODEL_DIR greedy N [EXPECTED_TEXT_FILE]
#       greedy-decodes N tokens after BOS (token 1 at position 0), prints the ids and the text
#       (decoded with tokenizer.json's vocabulary); with EXPECTED_TEXT_FILE, reports whether the
#       text matches it exactly and exits non-zero when not. For example:
#   /usr/bin/python3 tools/reference_forward.py models/stories260K greedy 200 \
#       ../shared/data/stories260K/expected-greedy-200.txt
#
# Per layer: x += o_proj(attn(rope(q_proj(rmsnorm(x))), rope(k_proj(..)), v_proj(..)));
#            x += down_proj(silu(gate_proj(h)) * up_proj(h)), h = rmsnorm(x).
# RMSNorm: x / sqrt(mean(x^2) + eps) * w. RoPE rotates halves: inv_freq_j = theta^(-2j/head_dim),
# x' = x*cos + rotate_half(x)*sin with rotate_half([a, b]) = [-b, a]. Attention is causal with
# grouped KV heads (query head h uses KV head h // (n_heads / n_kv_heads)), scale 1/sqrt(head_dim).
# Biases are added where the checkpoint has them (Qwen2: q/k/v; Llama attention_bias: q/k/v/o).

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402

SUPPORTED = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"}


class Model:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        arch = cfg["architectures"][0]
        if arch not in SUPPORTED:
            raise ValueError(f"unsupported architecture {arch}")
        if cfg.get("rope_scaling") is not None:
            raise ValueError("rope_scaling is not supported")
        if cfg.get("hidden_act", "silu") != "silu":
            raise ValueError(f"unsupported hidden_act {cfg['hidden_act']}")
        self.arch = arch
        self.hidden = cfg["hidden_size"]
        self.inter = cfg["intermediate_size"]
        self.n_layers = cfg["num_hidden_layers"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg.get("num_key_value_heads", self.n_heads)
        self.head_dim = cfg.get("head_dim") or self.hidden // self.n_heads
        self.vocab = cfg["vocab_size"]
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.theta = cfg.get("rope_theta", 10000.0)
        self.tied = cfg.get("tie_word_embeddings", False)
        window = cfg.get("sliding_window")
        if arch == "Qwen2ForCausalLM" and not cfg.get("use_sliding_window", False):
            window = None
        self.window = window
        if arch == "Qwen2ForCausalLM":
            bias = {"q", "k", "v"}
        elif cfg.get("attention_bias", False):
            bias = {"q", "k", "v", "o"}
        else:
            bias = set()

        raw = safetensors_np.read_dir(model_dir)
        for name, (dtype, _) in raw.items():
            if dtype not in ("F32", "F16", "BF16"):
                raise ValueError(f"{name}: unsupported dtype {dtype}")
        self.w = {name: safetensors_np.decode(arr, dtype) for name, (dtype, arr) in raw.items()}
        used = set()

        def get(name, shape):
            if name not in self.w:
                raise ValueError(f"missing tensor {name}")
            t = self.w[name]
            if list(t.shape) != list(shape):
                raise ValueError(f"{name}: shape {list(t.shape)}, expected {list(shape)}")
            used.add(name)
            return t

        H, D, q_dim, kv_dim = self.hidden, self.head_dim, self.n_heads * self.head_dim, \
            self.n_kv * self.head_dim
        self.embed = get("model.embed_tokens.weight", (self.vocab, H))
        self.layers = []
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            L = {
                "in_norm": get(p + "input_layernorm.weight", (H,)),
                "q": get(p + "self_attn.q_proj.weight", (q_dim, H)),
                "k": get(p + "self_attn.k_proj.weight", (kv_dim, H)),
                "v": get(p + "self_attn.v_proj.weight", (kv_dim, H)),
                "o": get(p + "self_attn.o_proj.weight", (H, q_dim)),
                "post_norm": get(p + "post_attention_layernorm.weight", (H,)),
                "gate": get(p + "mlp.gate_proj.weight", (self.inter, H)),
                "up": get(p + "mlp.up_proj.weight", (self.inter, H)),
                "down": get(p + "mlp.down_proj.weight", (H, self.inter)),
            }
            sizes = {"q": q_dim, "k": kv_dim, "v": kv_dim, "o": H}
            for proj, n in sizes.items():
                if proj in bias:
                    L[proj + "_b"] = get(p + f"self_attn.{proj}_proj.bias", (n,))
                else:
                    L[proj + "_b"] = np.zeros(n)
            self.layers.append(L)
        self.norm = get("model.norm.weight", (H,))
        if self.tied:
            self.lm_head = self.embed
        else:
            self.lm_head = get("lm_head.weight", (self.vocab, H))
        extra = sorted(set(self.w) - used - {"lm_head.weight"})
        if extra:
            raise ValueError(f"unexpected tensors: {extra[:5]}")

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, positions):
        """x: (T, heads, head_dim), rotated by position (rotate-half convention)."""
        half = self.head_dim // 2
        inv_freq = self.theta ** (-np.arange(0, half, dtype=np.float64) * 2.0 / self.head_dim)
        ang = positions[:, None].astype(np.float64) * inv_freq[None, :]  # (T, half)
        cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=-1)[:, None, :]
        sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=-1)[:, None, :]
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rotated * sin

    def forward(self, tokens):
        """Logits (T, vocab) for every position of the causal sequence `tokens` (from pos 0)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        T = len(tokens)
        if self.window is not None and T > self.window:
            raise ValueError("sequences longer than sliding_window are not modelled")
        pos = np.arange(T)
        mask = np.where(pos[None, :] <= pos[:, None], 0.0, -np.inf)  # (query, key)
        group = self.n_heads // self.n_kv
        x = self.embed[tokens]
        for L in self.layers:
            h = self.rmsnorm(x, L["in_norm"])
            q = (h @ L["q"].T + L["q_b"]).reshape(T, self.n_heads, self.head_dim)
            k = (h @ L["k"].T + L["k_b"]).reshape(T, self.n_kv, self.head_dim)
            v = (h @ L["v"].T + L["v_b"]).reshape(T, self.n_kv, self.head_dim)
            q, k = self.rope(q, pos), self.rope(k, pos)
            out = np.empty((T, self.n_heads, self.head_dim))
            for hh in range(self.n_heads):
                kv = hh // group
                s = q[:, hh, :] @ k[:, kv, :].T / np.sqrt(self.head_dim) + mask
                s = np.exp(s - s.max(axis=-1, keepdims=True))
                s /= s.sum(axis=-1, keepdims=True)
                out[:, hh, :] = s @ v[:, kv, :]
            x = x + out.reshape(T, -1) @ L["o"].T + L["o_b"]
            h = self.rmsnorm(x, L["post_norm"])
            g = h @ L["gate"].T
            x = x + ((g / (1.0 + np.exp(-g))) * (h @ L["up"].T)) @ L["down"].T
        return self.rmsnorm(x, self.norm) @ self.lm_head.T


def greedy(model, n, bos=1):
    """Greedy decoding of n tokens after BOS; returns the generated ids (BOS excluded)."""
    tokens = [bos]
    for _ in range(n):
        logits = model.forward(tokens)[-1]
        tokens.append(int(np.argmax(logits)))
    return tokens[1:]


def decode(model_dir, ids):
    """SentencePiece-style decode with tokenizer.json's vocabulary: "▁" -> " ", "<0xNN>" -> the
    byte, special tokens dropped, one leading space stripped."""
    with open(os.path.join(model_dir, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    inv = {i: p for p, i in tj["model"]["vocab"].items()}
    special = {t["id"] for t in tj.get("added_tokens", []) if t.get("special")}
    out = bytearray()
    for i in ids:
        if i in special:
            continue
        piece = inv[i]
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            out.append(int(piece[3:5], 16))
        else:
            out += piece.replace("\u2581", " ").encode("utf-8")
    text = out.decode("utf-8", errors="replace")
    return text[1:] if text.startswith(" ") else text


def main(argv):
    if len(argv) < 4 or argv[2] not in ("logits", "greedy"):
        raise SystemExit("usage: reference_forward.py MODEL_DIR logits ID...\n"
                         "       reference_forward.py MODEL_DIR greedy N [EXPECTED_TEXT_FILE]")
    model_dir, mode = argv[1], argv[2]
    model = Model(model_dir)
    if mode == "logits":
        ids = [int(a) for a in argv[3:]]
        logits = model.forward(ids)
        np.set_printoptions(precision=6, suppress=True, linewidth=120)
        for t, row in enumerate(logits):
            print(f"pos {t} token {ids[t]} argmax {int(np.argmax(row))} logits[:8] {row[:8]}")
        return 0
    n = int(argv[3])
    ids = greedy(model, n)
    text = decode(model_dir, ids)
    print("ids:", " ".join(map(str, ids)))
    print("text:", repr(text))
    if len(argv) > 4:
        with open(argv[4], encoding="utf-8") as f:
            expected = f.read()
        ok = text == expected
        # the fewest generated tokens whose decoding already equals the expected text
        first = next((k for k in range(1, n + 1) if decode(model_dir, ids[:k]) == expected), None)
        print(f"{'MATCH' if ok else 'MISMATCH'}: {n} generated tokens; expected text reached "
              f"after {first} tokens" if first else f"{'MATCH' if ok else 'MISMATCH'}")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
