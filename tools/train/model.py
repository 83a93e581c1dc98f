# model.py — the PyTorch models moge trains for its demo: a Pangu-shaped MoGE decoder (the
# target), its global top-K twin, and a dense Llama draft. Written from the published description
# of Pangu Pro MoE (../shared/docs/pangu-pro-moe.md, arXiv 2505.21411); it is also the numeric
# reference for the C runtime, so every detail below is what the runtime must reproduce.
#
# Decoder layer (pre-norm):  h += o_proj(attn(rope(q_proj(rms1(h))), rope(k_proj(..)), v_proj(..)))
#                            h += mlp(rms2(h))
# - RMSNorm: x * rsqrt(mean(x^2) + eps) * w, computed in float32.
# - RoPE: rotate-half (NeoX / Hugging Face Llama) over the whole head dim,
#   inv_freq[i] = theta^(-2i/hd), position p rotates pair (i, i + hd/2) by p * inv_freq[i].
# - Attention: grouped-query (each KV head serves n_heads / n_kv_heads query heads), causal,
#   softmax(q k^T / sqrt(hd)). The MoGE models have biases on q, k, v and o; the draft has none.
# - MoE mlp (routing "moge", Pangu):
#     logits = gate(x) (no bias); p = softmax(logits) over all N experts (float32);
#     experts form M contiguous groups of N/M; in each group keep the top K/M by p (K/M = 1 here:
#     the group's argmax; on equal p the lower expert id wins);
#     weight_e = p[e] * router_scale[e] (router_scale: learned [N] vector, init 1), no
#     renormalisation; out = sum_e weight_e * expert_e(x) + shared_expert(x) (ungated).
#   Routing "topk" (the conventional baseline, the twin): global top-K by p (lower id wins ties),
#     weight = softmax over the K kept logits (= p renormalised over the K), no router_scale.
#   Every expert, shared included, is SwiGLU: down(silu(gate(x)) * up(x)), no biases.
# - Auxiliary balance loss (both routings, Switch/GShard form, as in the Pangu paper with the
#   global softmax): aux = N * sum_i f_i * P_i, with f_i = (token-expert pairs sent to expert i) /
#   (T * K) and P_i = mean over tokens of p_i (the global softmax over all N). It is 1 at perfect
#   balance. For "moge" the selection that defines f is the group-wise one; for "topk" the global
#   one. Summed over layers; the trainer multiplies it by --aux-coef.
#
# Parameter names follow the Hugging Face checkpoint layout exactly (model.layers.{i}.self_attn.
# q_proj.weight, ..., mlp.gate.weight, mlp.router_scale, mlp.experts.{j}.gate_proj.weight,
# mlp.shared_expert.*, model.norm.weight, lm_head.weight), so export is a rename-free dump.

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    kind: str = "moe"            # "moe" (Pangu-shaped target/twin) or "dense" (Llama draft)
    vocab_size: int = 512
    hidden_size: int = 128
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 512
    tie_word_embeddings: bool = False
    attention_bias: bool = True  # q/k/v/o biases (Pangu); False for the Llama draft
    # MoE
    routing: str = "moge"        # "moge" (group top-1, router_scale) or "topk" (global, renorm)
    num_experts: int = 32
    num_expert_groups: int = 8
    num_experts_per_tok: int = 8
    moe_intermediate_size: int = 64
    shared_expert_intermediate_size: int = 256
    # dense
    intermediate_size: int = 172

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads

    def to_dict(self):
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


def rope_tables(head_dim, max_pos, theta):
    """cos, sin: [max_pos, head_dim], rotate-half layout (frequencies repeated twice)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    ang = torch.arange(max_pos, dtype=torch.float64)[:, None] * inv_freq[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().float(), ang.sin().float()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        hd, bias = cfg.head_dim, cfg.attention_bias
        self.n_heads, self.n_kv, self.hd = cfg.num_attention_heads, cfg.num_key_value_heads, hd
        self.q_proj = nn.Linear(cfg.hidden_size, self.n_heads * hd, bias=bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.n_kv * hd, bias=bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.n_kv * hd, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * hd, cfg.hidden_size, bias=bias)

    def forward(self, x, cos, sin, mask):
        # x: [B, S, H]; cos/sin: [S, hd]; mask: [S, S] additive (0 / -inf)
        B, S, _ = x.shape
        q = self.q_proj(x).view(B, S, self.n_heads, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, S, self.n_kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, S, self.n_kv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.n_heads // self.n_kv
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.hd)) + mask
        att = torch.softmax(att.float(), dim=-1).type_as(q)
        y = (att @ v).transpose(1, 2).reshape(B, S, self.n_heads * self.hd)
        return self.o_proj(y)


class SwiGLU(nn.Module):
    def __init__(self, hidden, inter):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.up_proj = nn.Linear(hidden, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def top_k_lowest_id(p, k):
    """Indices [..., k] of the k largest entries of p along the last dim, in descending order of
    p; among equal values the lower index comes first (stable sort), as the runtime does."""
    _, idx = torch.sort(p, dim=-1, descending=True, stable=True)
    return idx[..., :k]


def route(logits, cfg, router_scale):
    """Routing of T tokens. logits: [T, N] float32. Returns (experts [T, K] int64,
    weights [T, K] float32, p [T, N] the global softmax)."""
    N, M, K = cfg.num_experts, cfg.num_expert_groups, cfg.num_experts_per_tok
    p = torch.softmax(logits, dim=-1)
    if cfg.routing == "moge":
        per_group = N // M
        kg = K // M
        local = top_k_lowest_id(p.view(-1, M, per_group), kg)              # [T, M, kg]
        base = torch.arange(M, device=p.device).view(1, M, 1) * per_group
        experts = (local + base).reshape(-1, K)
        weights = p.gather(1, experts) * router_scale[experts]
    elif cfg.routing == "topk":
        experts = top_k_lowest_id(p, K)
        weights = torch.softmax(logits.gather(1, experts), dim=-1)
    else:
        raise ValueError(f"unknown routing {cfg.routing!r}")
    return experts, weights, p


class MoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        N = cfg.num_experts
        assert N % cfg.num_expert_groups == 0
        assert cfg.num_experts_per_tok % cfg.num_expert_groups == 0 or cfg.routing == "topk"
        self.gate = nn.Linear(cfg.hidden_size, N, bias=False)
        if cfg.routing == "moge":
            self.router_scale = nn.Parameter(torch.ones(N))
        else:
            self.register_buffer("router_scale", torch.ones(N), persistent=False)
        self.experts = nn.ModuleList(
            SwiGLU(cfg.hidden_size, cfg.moe_intermediate_size) for _ in range(N))
        self.shared_expert = SwiGLU(cfg.hidden_size, cfg.shared_expert_intermediate_size)
        self.last_counts = None  # [N] token-expert pairs per expert in the last forward

    def forward(self, x):
        # x: [B, S, H] -> (y [B, S, H], aux scalar)
        cfg = self.cfg
        shape = x.shape
        xt = x.reshape(-1, shape[-1])
        T, N, K = xt.shape[0], cfg.num_experts, cfg.num_experts_per_tok
        logits = self.gate(xt).float()
        experts, weights, p = route(logits, cfg, self.router_scale)
        flat_e = experts.reshape(-1)                                       # [T*K]
        counts = torch.bincount(flat_e, minlength=N)
        # Dispatch: sort the token-expert pairs by expert, run each active expert once over its
        # gathered rows, scatter-add the weighted outputs.
        order = torch.argsort(flat_e, stable=True)
        tok = order // K
        w_sorted = weights.reshape(-1)[order].type_as(xt)
        xs = xt[tok]
        # torch.split + cat (not slicing into a preallocated buffer): slicing's backward makes a
        # full-size zero gradient per expert, which cost 3x the whole step.
        chunks = torch.split(xs, counts.tolist())
        ys = torch.cat([self.experts[e](c) for e, c in enumerate(chunks) if c.shape[0]])
        out = self.shared_expert(xt).index_add(0, tok, ys * w_sorted[:, None])
        f = counts.float() / (T * K)
        aux = N * (f * p.mean(0)).sum()
        self.last_counts = counts.detach()
        return out.view(shape), aux


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.is_moe = cfg.kind == "moe"
        self.mlp = MoE(cfg) if self.is_moe else SwiGLU(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, h, cos, sin, mask):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        if self.is_moe:
            y, aux = self.mlp(self.post_attention_layernorm(h))
        else:
            y, aux = self.mlp(self.post_attention_layernorm(h)), h.new_zeros(())
        return h + y, aux


class Inner(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class CausalLM(nn.Module):
    """model.* + lm_head, named as the Hugging Face checkpoints are."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Inner(cfg)
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg.head_dim, cfg.max_position_embeddings, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        """Normal(0, 0.02) matrices, output projections (o_proj, down_proj) scaled by
        1/sqrt(2 * layers), zero biases, unit norms and router_scale."""
        std = 0.02
        out_std = std / math.sqrt(2 * self.cfg.num_hidden_layers)
        for name, prm in self.named_parameters():
            if name.endswith("router_scale") or "norm" in name:
                nn.init.ones_(prm)
            elif name.endswith(".bias"):
                nn.init.zeros_(prm)
            elif name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                nn.init.normal_(prm, 0.0, out_std)
            else:
                nn.init.normal_(prm, 0.0, std)

    def forward(self, ids):
        """ids: [B, S] int64 -> (logits [B, S, V] float32, aux: sum over MoE layers)."""
        S = ids.shape[1]
        cos, sin = self.rope_cos[:S], self.rope_sin[:S]
        mask = torch.full((S, S), float("-inf"), device=ids.device).triu(1)
        h = self.model.embed_tokens(ids)
        aux = h.new_zeros(())
        for layer in self.model.layers:
            h, a = layer(h, cos, sin, mask)
            aux = aux + a
        h = self.model.norm(h)
        if self.cfg.tie_word_embeddings:
            logits = h @ self.model.embed_tokens.weight.t()
        else:
            logits = self.lm_head(h)
        return logits.float(), aux

    def expert_counts(self):
        """[layers, N] token-expert pairs per expert in the last forward (MoE models)."""
        return torch.stack([l.mlp.last_counts for l in self.model.layers])


def count_params(model):
    """(total, active per token) parameter counts; active counts K of N routed experts and
    leaves out the embedding table (a lookup), keeps lm_head (tied or not)."""
    cfg = model.cfg
    total = sum(p.numel() for p in model.parameters())
    active = total - model.model.embed_tokens.weight.numel()
    if cfg.tie_word_embeddings:
        active += model.model.embed_tokens.weight.numel()
    if cfg.kind == "moe":
        per_expert = 3 * cfg.hidden_size * cfg.moe_intermediate_size
        idle = cfg.num_experts - cfg.num_experts_per_tok
        active -= cfg.num_hidden_layers * idle * per_expert
    return total, active


# Presets: the sizes documented in tools/train/README.md. "tiny-*" are for smoke tests.
PRESETS = {
    "target": dict(kind="moe", routing="moge"),
    "twin": dict(kind="moe", routing="topk"),
    "draft": dict(kind="dense", hidden_size=64, num_hidden_layers=5, num_attention_heads=8,
                  num_key_value_heads=4, intermediate_size=172, tie_word_embeddings=True,
                  attention_bias=False),
    "tiny-target": dict(kind="moe", routing="moge", hidden_size=32, num_hidden_layers=2,
                        num_experts=8, num_expert_groups=4, num_experts_per_tok=4,
                        moe_intermediate_size=16, shared_expert_intermediate_size=64),
    "tiny-twin": dict(kind="moe", routing="topk", hidden_size=32, num_hidden_layers=2,
                      num_experts=8, num_expert_groups=4, num_experts_per_tok=4,
                      moe_intermediate_size=16, shared_expert_intermediate_size=64),
    "tiny-draft": dict(kind="dense", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=64, tie_word_embeddings=True,
                       attention_bias=False),
}
