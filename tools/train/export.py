#!/usr/bin/python3
# export.py — writes a trained checkpoint of tools/train/train.py as a Hugging Face model
# directory that moge loads: config.json, model.safetensors (F32), tokenizer.json and
# tokenizer_config.json (copied from models/stories260K: the tok512 tokenizer), training_log.csv
# (the run's loss curves), README.md (model card) and LICENSE (a notice and the full text of
# CDLA-Sharing-1.0, kept in tools/train/CDLA-Sharing-1.0.txt).
#
#   /usr/bin/python3 tools/train/export.py ~/.cache/moge/train/target models/tinystories-moge
#   /usr/bin/python3 tools/train/export.py ~/.cache/moge/train/twin   models/tinystories-topk
#   /usr/bin/python3 tools/train/export.py ~/.cache/moge/train/draft  models/tinystories-draft
#
# MoE models follow ../shared/docs/pangu-pro-moe.md: architectures ["PanguProMoEForCausalLM"],
# the listed config keys (the group count is num_experts_per_tok: one expert per group) and
# tensor names, router_scale [N]. The global top-K twin is the same architecture plus two
# extension keys, "moge_routing": "topk" and "norm_topk_prob": true (global top-K, weights
# renormalised over the K); its router_scale is exported as exact ones (it has none). Dense drafts
# are LlamaForCausalLM like models/stories260K (tied embeddings: no lm_head.weight).
#
# After writing, the directory is read back (config.json -> model.Config, safetensors -> tensors)
# into a fresh torch model whose logits must equal the checkpoint model's on a validation window.
# Weights are F32 (all three models together stay under 60 MB; BF16 would change the numbers).

import csv
import json
import os
import shutil
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import model as M  # noqa: E402
import safetensors_np  # noqa: E402
from train import REPO, val_windows  # noqa: E402

TOKENIZER_DIR = os.path.join(REPO, "models", "stories260K")


def hf_config(cfg):
    common = {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    if cfg.kind == "dense":
        return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", **common,
                "intermediate_size": cfg.intermediate_size, "rope_scaling": None,
                "attention_bias": cfg.attention_bias}
    assert cfg.num_expert_groups == cfg.num_experts_per_tok or cfg.routing == "topk", \
        "PanguProMoE has one expert per group: groups = num_experts_per_tok"
    out = {"architectures": ["PanguProMoEForCausalLM"], "model_type": "PanguProMoE", **common,
           "num_experts": cfg.num_experts,
           "num_experts_per_tok": cfg.num_experts_per_tok,
           "moe_intermediate_size": cfg.moe_intermediate_size,
           "shared_expert_intermediate_size": cfg.shared_expert_intermediate_size}
    if cfg.routing == "topk":
        out["moge_routing"] = "topk"
        out["norm_topk_prob"] = True
    return out


def config_from_hf(hf):
    """model.Config of an exported directory's config.json."""
    base = dict(vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
                num_hidden_layers=hf["num_hidden_layers"],
                num_attention_heads=hf["num_attention_heads"],
                num_key_value_heads=hf["num_key_value_heads"], rms_norm_eps=hf["rms_norm_eps"],
                rope_theta=hf["rope_theta"],
                max_position_embeddings=hf["max_position_embeddings"],
                tie_word_embeddings=hf["tie_word_embeddings"])
    if hf["architectures"] == ["LlamaForCausalLM"]:
        return M.Config(kind="dense", intermediate_size=hf["intermediate_size"],
                        attention_bias=hf.get("attention_bias", False), **base)
    return M.Config(kind="moe", routing=hf.get("moge_routing", "moge"),
                    num_experts=hf["num_experts"], num_experts_per_tok=hf["num_experts_per_tok"],
                    num_expert_groups=hf["num_experts_per_tok"],
                    moe_intermediate_size=hf["moe_intermediate_size"],
                    shared_expert_intermediate_size=hf["shared_expert_intermediate_size"],
                    attention_bias=True, **base)


def hf_tensor_names(cfg):
    """Tensor names in checkpoint order (pangu-pro-moe.md / Llama)."""
    names = ["model.embed_tokens.weight"]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        names.append(p + "input_layernorm.weight")
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            names.append(p + f"self_attn.{proj}.weight")
            if cfg.attention_bias:
                names.append(p + f"self_attn.{proj}.bias")
        names.append(p + "post_attention_layernorm.weight")
        if cfg.kind == "dense":
            names += [p + f"mlp.{w}_proj.weight" for w in ("gate", "up", "down")]
            continue
        names += [p + "mlp.gate.weight", p + "mlp.router_scale"]
        for j in range(cfg.num_experts):
            names += [p + f"mlp.experts.{j}.{w}_proj.weight" for w in ("gate", "up", "down")]
        names += [p + f"mlp.shared_expert.{w}_proj.weight" for w in ("gate", "up", "down")]
    names.append("model.norm.weight")
    if not cfg.tie_word_embeddings:
        names.append("lm_head.weight")
    return names


def state_tensors(model):
    """{HF name: float32 numpy array}; the top-K twin's router_scale becomes ones [N]."""
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    if model.cfg.kind == "moe" and model.cfg.routing == "topk":
        for i in range(model.cfg.num_hidden_layers):
            sd[f"model.layers.{i}.mlp.router_scale"] = np.ones(model.cfg.num_experts, np.float32)
    return sd


def load_exported(out_dir):
    with open(os.path.join(out_dir, "config.json")) as f:
        cfg = config_from_hf(json.load(f))
    tensors = safetensors_np.read_dir(out_dir)
    model = M.CausalLM(cfg)
    sd = {}
    for name, (dtype, arr) in tensors.items():
        if cfg.kind == "moe" and cfg.routing == "topk" and name.endswith("router_scale"):
            assert np.all(arr == 1.0), name
            continue
        sd[name] = torch.from_numpy(safetensors_np.decode(arr, dtype).astype(np.float32))
    model.load_state_dict(sd, strict=True)
    model.eval()
    return model


def read_log(run_dir):
    path = os.path.join(run_dir, "log.csv")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def model_card(out_dir, cfg, run, total, active, final, hf, log_rows):
    a = run["args"]
    name = os.path.basename(os.path.normpath(out_dir))
    argv = ("OPENBLAS_NUM_THREADS=1 nice -n 19 /usr/bin/python3 tools/train/train.py "
            + " ".join(run["argv"][1:]))
    if cfg.kind == "dense":
        kind = ("dense Llama draft (LlamaForCausalLM: RMSNorm, rotate-half RoPE, SwiGLU, "
                "grouped-query attention, tied embeddings), distilled from the target's logits")
    elif cfg.routing == "moge":
        kind = ("Pangu-shaped Mixture of Grouped Experts (PanguProMoEForCausalLM): every layer "
                f"MoE, {cfg.num_experts} routed experts in {cfg.num_experts_per_tok} contiguous "
                "groups, the argmax of each group active (weight = softmax prob x router_scale, "
                "no renormalisation), one ungated shared expert, GQA with q/k/v/o biases")
    else:
        kind = ("the global top-K twin of tinystories-moge: the same PanguProMoEForCausalLM "
                f"shape, but routing picks the global top {cfg.num_experts_per_tok} of "
                f"{cfg.num_experts} experts with weights renormalised over the K (config "
                "extension keys `\"moge_routing\": \"topk\"` and `\"norm_topk_prob\": true`, "
                "which moge reads to pick global top-K routing; router_scale is exported as "
                "ones), trained with the conventional balance loss")
    rows = [("architecture", kind), ("parameters", f"{total:,} ({active:,} active per token)")]
    for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "intermediate_size", "num_experts", "num_experts_per_tok",
              "moe_intermediate_size", "shared_expert_intermediate_size",
              "max_position_embeddings", "rope_theta", "rms_norm_eps", "tie_word_embeddings"):
        if k in hf:
            rows.append((k, hf[k]))
    rows.append(("dtype", "float32"))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    loss = "not measured"
    if final is not None:
        loss = (f"{final['val_loss']:.4f} nats/token on all {final['val_windows']} windows of "
                "256 tokens of valid.txt")
        if final.get("val_agree") is not None:
            loss += f"; top-1 agreement with the teacher {100 * final['val_agree']:.1f} %"
        if final.get("load_max") is not None:
            loss += (f"; busiest expert's load / mean load (max over layers) "
                     f"{final['load_max']:.2f}")
    last = log_rows[-1] if log_rows else {}
    distill = ""
    if a.get("teacher"):
        distill = (f"\nDistillation: the loss is KL(teacher || draft) over all 512 tokens of "
                   f"the vocabulary at each position (+ {a['ce_weight']} x cross-entropy), the "
                   f"teacher being the tinystories-moge checkpoint run without gradients.\n")
    aux = ""
    if cfg.kind == "moe":
        aux = (f"\nBalance loss: {a['aux_coef']} x sum over layers of N * sum_i f_i * P_i "
               "(f_i: share of the token-expert pairs routed to expert i, P_i: mean of the global "
               "softmax over all N experts; 1 at perfect balance).\n")
    return f"""# {name}

One of moge's demo models, trained from scratch by moge's own trainer (`tools/train/`) on
TinyStories with the tok512 tokenizer of stories260K (vocabulary 512). See
`tools/train/README.md` in the moge repository for the three models and how they relate.

## Architecture

| | |
|---|---|
{table}

## Training

    {argv}

(Debian's python3-torch 1.13 on CPU; the same command resumes the run from its checkpoint, and
the run was resumed across sessions: the result equals an uninterrupted run's.)

- Data: TinyStories (Eldan & Li, arXiv 2305.07759), `train.txt` (10,255 stories) and
  `train-extra-truecased.txt` (4,295 stories), each story encoded as `<s> story </s>`; windows
  of {a['seq_len']} tokens, batch {a['batch']}. `valid.txt` (1,573 stories) held out.
- Optimiser: AdamW (0.9, 0.95), peak learning rate {a['lr']}, {a['warmup_steps']} warm-up
  steps, cosine decay to {a['min_lr_frac']} of the peak at {a['total_tokens']:.4g} tokens,
  weight decay {a['weight_decay']} on matrices, gradient clipping 1.0. Seed {a['seed']}.
- Trained for {last.get('step', '?')} steps, {int(last.get('tokens', 0) or 0):,} tokens,
  {float(last.get('cpu_s', 0) or 0) / 3600:.2f} CPU hours.
{aux}{distill}
- Validation loss: {loss}.
- Loss curves: `training_log.csv` (step, tokens, learning rate, train loss, aux, KL, val loss
  on 64 windows, busiest expert load, tokens/s, CPU seconds).

## Licence

The weights were trained on TinyStories and are released under the Community Data License
Agreement – Sharing, Version 1.0 (CDLA-Sharing-1.0), the dataset's licence; `LICENSE` holds the notice and the full text of the agreement.
The tokenizer files come from stories260K (karpathy/llama2.c, MIT).
"""


CDLA_NOTE = """The weights in this directory were trained on the TinyStories dataset (Ronen Eldan and
Yuanzhi Li, "TinyStories: How Small Can Language Models Be and Still Speak Coherent English?",
arXiv 2305.07759, https://huggingface.co/datasets/roneneldan/TinyStories), which is licensed under
the Community Data License Agreement – Sharing, Version 1.0 (CDLA-Sharing-1.0). They are
distributed under the same licence:

    https://cdla.dev/sharing-1-0/

The full text of the agreement follows.

----------------------------------------------------------------------------------------------

"""


def main(argv):
    if len(argv) != 2:
        raise SystemExit("usage: export.py RUN_DIR OUT_DIR")
    run_dir, out_dir = argv
    ck = torch.load(os.path.join(run_dir, "ckpt.pt"), map_location="cpu")
    cfg = M.Config(**ck["config"])
    model = M.CausalLM(cfg)
    model.load_state_dict(ck["model"])
    model.eval()
    with open(os.path.join(run_dir, "args.json")) as f:
        run = json.load(f)
    final = None
    if os.path.exists(os.path.join(run_dir, "final.json")):
        with open(os.path.join(run_dir, "final.json")) as f:
            final = json.load(f)

    os.makedirs(out_dir, exist_ok=True)
    hf = hf_config(cfg)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf, f, indent=2)
        f.write("\n")
    sd = state_tensors(model)
    names = hf_tensor_names(cfg)
    assert sorted(names) == sorted(sd), set(names) ^ set(sd)
    safetensors_np.write(os.path.join(out_dir, "model.safetensors"),
                         [(n, "F32", safetensors_np.encode(sd[n], "F32")) for n in names])
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(TOKENIZER_DIR, f), os.path.join(out_dir, f))
    shutil.copyfile(os.path.join(run_dir, "log.csv"), os.path.join(out_dir, "training_log.csv"))
    total, active = M.count_params(model)
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(model_card(out_dir, cfg, run, total, active, final, hf, read_log(run_dir)))
    with open(os.path.join(out_dir, "LICENSE"), "w", encoding="utf-8") as f:
        with open(os.path.join(HERE, "CDLA-Sharing-1.0.txt"), encoding="utf-8") as lic:
            f.write(CDLA_NOTE + lic.read())

    # Read back and compare with the checkpoint model.
    back = load_exported(out_dir)
    valid_ids = np.load(os.path.join(run_dir, "valid_ids.npy"))
    w = val_windows(valid_ids, 2)
    with torch.no_grad():
        want, _ = model(w[:, :-1])
        got, _ = back(w[:, :-1])
    err = (want - got).abs().max().item()
    if err != 0.0:
        raise SystemExit(f"{out_dir}: read-back logits differ from the checkpoint by {err}")
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print(f"{out_dir}: {total:,} params, {size / 1e6:.1f} MB, read-back logits identical")


if __name__ == "__main__":
    main(sys.argv[1:])
