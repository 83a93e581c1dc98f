#!/usr/bin/python3
# reference_forward.py — an independent, plain-numpy (float64) implementation of the Hugging Face
# causal-LM forward pass of the architectures moge runs, read straight from a model directory
# (config.json + model.safetensors, or shards listed in model.safetensors.index.json; F32, F16
# and BF16 weights, used exactly as stored). It is the oracle that moge's fixtures (.ref logits,
# expert choices and routing weights) are made with.
#
#   dense: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM
#   MoE:   PanguProMoEForCausalLM, MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM
#          (every decoder layer a MoE layer)
#
# Usage:
#   /usr/bin/python3 tools/reference_forward.py MODEL_DIR logits ID [ID...] [ROUTING OPTIONS]
#       prints the argmax and the first logits of every position; for a MoE model also every
#       layer's chosen experts (ascending) with their routing weights, and the smallest routing
#       margin (see below)
#   /usr/bin/python3 tools/reference_forward.py MODEL_DIR greedy N [EXPECTED_TEXT_FILE]
#       greedy-decodes N tokens after BOS (token 1 at position 0), prints the ids and the text
#       (decoded with tokenizer.json's vocabulary); with EXPECTED_TEXT_FILE, reports whether the
#       text matches it exactly and exits non-zero when not. For example:
#   /usr/bin/python3 tools/reference_forward.py models/stories260K greedy 200 \
#       ../shared/data/stories260K/expected-greedy-200.txt
#
#   ROUTING OPTIONS (MoE models only; `--opt V` or `--opt=V`) replace the checkpoint's own rule:
#       --routing moge|topk|group_limited   --k K   --n-group G   --topk-group g   --renorm 0|1
#   e.g. `tests/fixtures/moe/pangu_16e4g logits 5 7 9 --routing group_limited --n-group 4
#   --topk-group 2`. K defaults to num_experts_per_tok, G to the model's group count (Pangu:
#   num_experts_per_tok; others 1), renorm to the model's own (below).
#
# Per layer: x += o_proj(attn(rope(q_proj(rmsnorm(x))), rope(k_proj(..)), v_proj(..)));
#            x += FFN(h), h = rmsnorm(x) (post_attention_layernorm).
# RMSNorm: x / sqrt(mean(x^2) + eps) * w. RoPE rotates halves: inv_freq_j = theta^(-2j/head_dim),
# x' = x*cos + rotate_half(x)*sin with rotate_half([a, b]) = [-b, a]. Attention is causal with
# grouped KV heads (query head h uses KV head h // (n_heads / n_kv_heads)), scale 1/sqrt(head_dim).
# Biases are added where the checkpoint has them (Qwen2, Qwen2-MoE: q/k/v; Llama attention_bias
# and Pangu: q/k/v/o). Qwen3-MoE applies RMSNorm (q_norm / k_norm, weight [head_dim], same eps)
# to every head of q and k after the projection and before RoPE.
# Dense FFN: down_proj(silu(gate_proj(h)) * up_proj(h)).
#
# MoE FFN (every expert, shared included, is SwiGLU down(silu(gate(h)) * up(h)), no biases):
#   p = softmax(router · h) over all N experts (router = mlp.gate / block_sparse_moe.gate, no
#   bias); choose experts by the routing rule; output = sum over chosen e of w_e * Expert_e(h)
#   + shared part: Pangu SharedExpert(h) (ungated), Qwen2-MoE sigmoid(shared_expert_gate · h) *
#   SharedExpert(h), Mixtral and Qwen3-MoE none.
# Routing rules (ties always go to the lower expert id, and to the lower group id):
#   moge           M = G contiguous groups of N/G experts; the top K/G by p inside each group
#                  (Pangu: G = K = num_experts_per_tok, i.e. the argmax of each group).
#   topk           the global top K by p.
#   group_limited  (DeepSeek-V2 style) group score = max of p over each of G contiguous groups;
#                  keep the topk_group best groups; the top K by p among their experts.
#   weights        w_e = p_e; if renorm, w_e /= sum of the K chosen p; then w_e *= router_scale[e]
#                  (Pangu's mlp.router_scale, [N] or [1, N]; 1 when the checkpoint has none).
#   renorm         the model's own: Pangu never, Mixtral always, Qwen2/3-MoE norm_topk_prob
#                  (default false); moge never renormalises unless --renorm 1 is given.
#   own rule       Pangu moge (G = K); Mixtral, Qwen2-MoE, Qwen3-MoE topk.
# Routing margin (how far a choice is from flipping): for every comparison the rule makes between
# the last kept candidate a and the best rejected one b (inside a group for moge, the group
# scores and then the experts for group_limited), (p_a - p_b) / p_a; a layer's margin for a
# token is the minimum. Fixtures require it well above float32 rounding.

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402

DENSE = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"}
MOE = {"PanguProMoEForCausalLM", "MixtralForCausalLM", "Qwen2MoeForCausalLM",
       "Qwen3MoeForCausalLM"}
SUPPORTED = DENSE | MOE
ROUTING_MODES = ("moge", "topk", "group_limited")


class Routing:
    """A routing rule: mode (moge, topk, group_limited), k experts per token, n_group contiguous
    groups, topk_group groups kept (group_limited), renorm (divide the chosen p by their sum)."""

    def __init__(self, mode, k, n_group=1, topk_group=1, renorm=False):
        if mode not in ROUTING_MODES:
            raise ValueError(f"unknown routing mode {mode!r}")
        self.mode, self.k, self.n_group = mode, int(k), int(n_group)
        self.topk_group, self.renorm = int(topk_group), bool(renorm)

    def check(self, n_experts):
        N, K, G = n_experts, self.k, self.n_group
        if not 1 <= K <= N:
            raise ValueError(f"k = {K} outside 1..{N}")
        if self.mode in ("moge", "group_limited") and (G < 1 or N % G):
            raise ValueError(f"{N} experts do not split into {G} groups")
        if self.mode == "moge" and K % G:
            raise ValueError(f"moge: k = {K} is not a multiple of the {G} groups")
        if self.mode == "group_limited":
            if not 1 <= self.topk_group <= G:
                raise ValueError(f"group_limited: topk_group {self.topk_group} outside 1..{G}")
            if K > self.topk_group * (N // G):
                raise ValueError(f"group_limited: k = {K} exceeds the experts of the kept groups")

    def __repr__(self):
        extra = {"moge": f" groups={self.n_group}",
                 "group_limited": f" n_group={self.n_group} topk_group={self.topk_group}",
                 "topk": ""}[self.mode]
        return f"{self.mode} k={self.k}{extra} renorm={int(self.renorm)}"


def _rel_gap(a, b):
    return (a - b) / a


def route(p, scale, r):
    """One token's routing. p: (N,) probabilities, scale: (N,) router_scale, r: Routing.
    Returns (expert ids ascending, their weights, margin)."""
    N, K = len(p), r.k
    margin = np.inf
    if r.mode == "topk":
        order = np.argsort(-p, kind="stable")
        chosen = order[:K]
        if K < N:
            margin = _rel_gap(p[order[K - 1]], p[order[K]])
    elif r.mode == "moge":
        size, per = N // r.n_group, K // r.n_group
        chosen = []
        for g in range(r.n_group):
            sub = p[g * size:(g + 1) * size]
            order = np.argsort(-sub, kind="stable")
            chosen.extend(g * size + order[:per])
            if per < size:
                margin = min(margin, _rel_gap(sub[order[per - 1]], sub[order[per]]))
        chosen = np.array(chosen)
    else:  # group_limited
        G, g_keep, size = r.n_group, r.topk_group, N // r.n_group
        scores = p.reshape(G, size).max(axis=1)
        gorder = np.argsort(-scores, kind="stable")
        if g_keep < G:
            margin = _rel_gap(scores[gorder[g_keep - 1]], scores[gorder[g_keep]])
        cand = np.concatenate([np.arange(g * size, (g + 1) * size)
                               for g in np.sort(gorder[:g_keep])])
        order = cand[np.argsort(-p[cand], kind="stable")]
        chosen = order[:K]
        if K < len(cand):
            margin = min(margin, _rel_gap(p[order[K - 1]], p[order[K]]))
    chosen = np.sort(np.asarray(chosen, dtype=np.int64))
    w = p[chosen]
    if r.renorm:
        w = w / w.sum()
    return chosen, w * scale[chosen], margin


def silu(g):
    return g / (1.0 + np.exp(-g))


def swiglu(h, e):
    """e: dict with gate, up, down (HF Linear weights, [out, in])."""
    return (silu(h @ e["gate"].T) * (h @ e["up"].T)) @ e["down"].T


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
        self.moe = arch in MOE
        self.hidden = cfg["hidden_size"]
        self.n_layers = cfg["num_hidden_layers"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg.get("num_key_value_heads", self.n_heads)
        self.head_dim = cfg.get("head_dim") or self.hidden // self.n_heads
        self.vocab = cfg["vocab_size"]
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.theta = cfg.get("rope_theta", 10000.0)
        self.tied = cfg.get("tie_word_embeddings", False)
        window = cfg.get("sliding_window")
        if arch in ("Qwen2ForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM") and \
                not cfg.get("use_sliding_window", False):
            window = None
        if arch == "PanguProMoEForCausalLM":
            window = None
        self.window = window
        if arch == "Qwen2ForCausalLM":
            bias = {"q", "k", "v"}
        elif arch == "Qwen2MoeForCausalLM":
            bias = {"q", "k", "v"} if cfg.get("qkv_bias", True) else set()
        elif arch == "PanguProMoEForCausalLM":
            bias = {"q", "k", "v", "o"}
        elif cfg.get("attention_bias", False):
            bias = {"q", "k", "v", "o"}
        else:
            bias = set()
        qk_norm = arch == "Qwen3MoeForCausalLM"
        if self.moe:
            self._moe_config(cfg)
        else:
            self.inter = cfg["intermediate_size"]

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

        self._get = get
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
            }
            if qk_norm:
                L["q_norm"] = get(p + "self_attn.q_norm.weight", (D,))
                L["k_norm"] = get(p + "self_attn.k_norm.weight", (D,))
            if self.moe:
                L["moe"] = self._moe_layer(p)
            else:
                L["gate"] = get(p + "mlp.gate_proj.weight", (self.inter, H))
                L["up"] = get(p + "mlp.up_proj.weight", (self.inter, H))
                L["down"] = get(p + "mlp.down_proj.weight", (H, self.inter))
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

    # --- MoE configuration ---------------------------------------------------------------------

    def _moe_config(self, cfg):
        arch = self.arch
        self.n_experts_per_tok = cfg["num_experts_per_tok"]
        self.shared_inter = 0
        self.shared_gated = False
        if arch == "MixtralForCausalLM":
            self.n_experts = cfg["num_local_experts"]
            self.moe_inter = cfg["intermediate_size"]
        else:
            self.n_experts = cfg["num_experts"]
            self.moe_inter = cfg["moe_intermediate_size"]
        if arch in ("Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM"):
            step = cfg.get("decoder_sparse_step", 1)
            dense = [i for i in range(self.n_layers)
                     if i in cfg.get("mlp_only_layers", []) or (i + 1) % step != 0]
            if dense:
                raise ValueError(f"dense (non-MoE) layers {dense} are not modelled")
        if arch == "PanguProMoEForCausalLM":
            self.shared_inter = cfg["shared_expert_intermediate_size"]
            self.own_routing = Routing("moge", self.n_experts_per_tok,
                                       n_group=self.n_experts_per_tok)
            self.model_renorm = False
        elif arch == "MixtralForCausalLM":
            self.own_routing = Routing("topk", self.n_experts_per_tok, renorm=True)
            self.model_renorm = True
        else:
            self.model_renorm = bool(cfg.get("norm_topk_prob", False))
            self.own_routing = Routing("topk", self.n_experts_per_tok, renorm=self.model_renorm)
            if arch == "Qwen2MoeForCausalLM":
                self.shared_inter = cfg["shared_expert_intermediate_size"]
                self.shared_gated = True
        self.own_routing.check(self.n_experts)

    def _moe_layer(self, p):
        get, H, N, I = self._get, self.hidden, self.n_experts, self.moe_inter
        if self.arch == "MixtralForCausalLM":
            m = p + "block_sparse_moe."
            M = {"router": get(m + "gate.weight", (N, H)), "experts": [
                {"gate": get(m + f"experts.{j}.w1.weight", (I, H)),
                 "down": get(m + f"experts.{j}.w2.weight", (H, I)),
                 "up": get(m + f"experts.{j}.w3.weight", (I, H))} for j in range(N)]}
        else:
            m = p + "mlp."
            M = {"router": get(m + "gate.weight", (N, H)), "experts": [
                {"gate": get(m + f"experts.{j}.gate_proj.weight", (I, H)),
                 "up": get(m + f"experts.{j}.up_proj.weight", (I, H)),
                 "down": get(m + f"experts.{j}.down_proj.weight", (H, I))} for j in range(N)]}
        M["scale"] = np.ones(N)
        if self.arch == "PanguProMoEForCausalLM" and m + "router_scale" in self.w:
            shape = list(self.w[m + "router_scale"].shape)
            if shape not in ([N], [1, N]):
                raise ValueError(f"{m}router_scale: shape {shape}, expected [{N}] or [1, {N}]")
            M["scale"] = get(m + "router_scale", shape).reshape(N)
        if self.shared_inter:
            S = self.shared_inter
            M["shared"] = {"gate": get(m + "shared_expert.gate_proj.weight", (S, H)),
                           "up": get(m + "shared_expert.up_proj.weight", (S, H)),
                           "down": get(m + "shared_expert.down_proj.weight", (H, S))}
            if self.shared_gated:
                M["shared_gate"] = get(m + "shared_expert_gate.weight", (1, H))
        return M

    def routing(self, mode=None, k=None, n_group=None, topk_group=None, renorm=None):
        """The checkpoint's own rule, or an override; unset fields take the model's values."""
        own = self.own_routing
        mode = mode or own.mode
        k = k if k is not None else own.k
        if n_group is None:  # the model's groups (Pangu: K) where the rule has groups
            n_group = own.n_group if own.mode == "moge" and mode != "topk" else 1
        topk_group = topk_group if topk_group is not None else 1
        if renorm is None:
            renorm = False if mode == "moge" else self.model_renorm
        r = Routing(mode, k, n_group, topk_group, renorm)
        r.check(self.n_experts)
        return r

    # --- forward -------------------------------------------------------------------------------

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

    def moe_ffn(self, M, h, r):
        """MoE FFN of one layer over rows h (T, hidden). Returns (output, ids (T, k),
        weights (T, k), margins (T,))."""
        T = h.shape[0]
        z = h @ M["router"].T
        p = np.exp(z - z.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        ids = np.empty((T, r.k), dtype=np.int64)
        ws = np.empty((T, r.k))
        margins = np.empty(T)
        for t in range(T):
            ids[t], ws[t], margins[t] = route(p[t], M["scale"], r)
        out = np.zeros_like(h)
        for e in np.unique(ids):
            rows, slot = np.nonzero(ids == e)
            out[rows] += ws[rows, slot][:, None] * swiglu(h[rows], M["experts"][e])
        if "shared" in M:
            s = swiglu(h, M["shared"])
            if "shared_gate" in M:
                s = s / (1.0 + np.exp(-(h @ M["shared_gate"].T)))
            out += s
        return out, ids, ws, margins

    def forward(self, tokens):
        """Logits (T, vocab) for every position of the causal sequence `tokens` (from pos 0),
        with the checkpoint's own routing."""
        return self.forward_routed(tokens)[0]

    def forward_routed(self, tokens, routing=None):
        """(logits (T, vocab), per-layer routing) for the causal sequence `tokens` (from pos 0).
        routing: a Routing (MoE models; None: the checkpoint's own). The per-layer routing is a
        list, one (ids (T, k) ascending, weights (T, k), margins (T,)) per MoE layer; empty for
        a dense model."""
        tokens = np.asarray(tokens, dtype=np.int64)
        T = len(tokens)
        if self.window is not None and T > self.window:
            raise ValueError("sequences longer than sliding_window are not modelled")
        if self.moe:
            routing = routing if routing is not None else self.routing()
            routing.check(self.n_experts)
        elif routing is not None:
            raise ValueError("routing overrides apply to MoE models only")
        pos = np.arange(T)
        mask = np.where(pos[None, :] <= pos[:, None], 0.0, -np.inf)  # (query, key)
        group = self.n_heads // self.n_kv
        x = self.embed[tokens]
        routed = []
        for L in self.layers:
            h = self.rmsnorm(x, L["in_norm"])
            q = (h @ L["q"].T + L["q_b"]).reshape(T, self.n_heads, self.head_dim)
            k = (h @ L["k"].T + L["k_b"]).reshape(T, self.n_kv, self.head_dim)
            v = (h @ L["v"].T + L["v_b"]).reshape(T, self.n_kv, self.head_dim)
            if "q_norm" in L:
                q, k = self.rmsnorm(q, L["q_norm"]), self.rmsnorm(k, L["k_norm"])
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
            if self.moe:
                y, ids, ws, margins = self.moe_ffn(L["moe"], h, routing)
                x = x + y
                routed.append((ids, ws, margins))
            else:
                g = h @ L["gate"].T
                x = x + ((g / (1.0 + np.exp(-g))) * (h @ L["up"].T)) @ L["down"].T
        return self.rmsnorm(x, self.norm) @ self.lm_head.T, routed


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


ROUTING_OPTIONS = {"--routing": "mode", "--k": "k", "--n-group": "n_group",
                   "--topk-group": "topk_group", "--renorm": "renorm"}


def split_options(args):
    """Separates `--opt V` / `--opt=V` routing options from positional arguments."""
    pos, opts, i = [], {}, 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            name, eq, val = a.partition("=")
            if name not in ROUTING_OPTIONS:
                raise SystemExit(f"unknown option {name}")
            if not eq:
                i += 1
                if i >= len(args):
                    raise SystemExit(f"{name} needs a value")
                val = args[i]
            key = ROUTING_OPTIONS[name]
            if key == "mode":
                opts[key] = val
            elif key == "renorm":
                if val not in ("0", "1"):
                    raise SystemExit("--renorm takes 0 or 1")
                opts[key] = val == "1"
            else:
                opts[key] = int(val)
        else:
            pos.append(a)
        i += 1
    return pos, opts


USAGE = ("usage: reference_forward.py MODEL_DIR logits ID... [--routing moge|topk|group_limited]"
         " [--k K] [--n-group G] [--topk-group g] [--renorm 0|1]\n"
         "       reference_forward.py MODEL_DIR greedy N [EXPECTED_TEXT_FILE]")


def main(argv):
    args, opts = split_options(argv[1:])
    if len(args) < 3 or args[1] not in ("logits", "greedy"):
        raise SystemExit(USAGE)
    model_dir, mode = args[0], args[1]
    model = Model(model_dir)
    if opts and (not model.moe or mode != "logits"):
        raise SystemExit("routing options apply to `logits` of a MoE model only")
    if mode == "logits":
        ids = [int(a) for a in args[2:]]
        routing = model.routing(**opts) if model.moe else None
        logits, routed = model.forward_routed(ids, routing)
        np.set_printoptions(precision=6, suppress=True, linewidth=120)
        if routing is not None:
            print(f"routing: {routing}")
        for t, row in enumerate(logits):
            print(f"pos {t} token {ids[t]} argmax {int(np.argmax(row))} logits[:8] {row[:8]}")
            for li, (e, w, _) in enumerate(routed):
                pairs = " ".join(f"{int(a)}:{b:.6f}" for a, b in zip(e[t], w[t]))
                print(f"    layer {li} experts {pairs}")
        if routed:
            worst = min(float(m.min()) for _, _, m in routed)
            print(f"min routing margin {worst:.3e}")
        return 0
    n = int(args[2])
    ids = greedy(model, n)
    print("ids:", " ".join(map(str, ids)))
    if not os.path.exists(os.path.join(model_dir, "tokenizer.json")):
        print("text: (no tokenizer.json)")
        return 0
    text = decode(model_dir, ids)
    print("text:", repr(text))
    if len(args) > 3:
        with open(args[3], encoding="utf-8") as f:
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
