#!/usr/bin/python3
"""make_fixtures.py — the trainer's PyTorch forward on fixed inputs, for the C runtime's tests.

For each exported model directory (tools/train/export.py) it writes tests/fixtures/demo/NAME.ref:
the logits of a fixed token sequence (TOKENS tokens of a validation story) and, for MoE models,
every layer's chosen experts and routing weights, computed by tools/train/model.py — the code the
model was trained with — in float64 from the weights as stored (F32). tests/test_demo_models.c
loads the same directory with the C runtime and requires logits within 1e-4 (normalised), the
same expert choices and routing weights within 1e-4.

The sequence is the first window of TOKENS tokens (of <s> story, starting at offsets 0, 5, 10 or
15 of each validation story in valid.txt order) whose routing is unambiguous at float32
precision: every routing margin (the relative gap between the probability of the last expert
kept and the best one rejected, per token, layer and group) at least MIN_MARGIN. Windows that fail
are skipped (the script says which). Several offsets per story, because a window's first token
has the same hidden state wherever it starts a window: with <s> first, or "Once" as most stories
begin, one near-tie at position 0 would rule out every story.

Format (the MoE fixtures' MOGEREF2, tools/make_moe_fixtures.py), little-endian: b"MOGEREF2",
int32 n_tokens, n_vocab, n_moe_layers, k, int32 tokens[n], float32 logits[n][V],
int32 experts[L][n][k] (ascending), float32 weights[L][n][k]; dense models have L = k = 0.

Usage (repository root):
    /usr/bin/python3 tools/train/make_fixtures.py models/tinystories-moge models/tinystories-topk \
        models/tinystories-draft
"""
import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model as M  # noqa: E402
from export import load_exported  # noqa: E402
from tok512 import Tok512  # noqa: E402
from train import DATA, TOKENIZER, VALID_FILE, read_stories  # noqa: E402

sys.path.insert(0, os.path.dirname(HERE))
from make_moe_fixtures import write_moeref  # noqa: E402  (the MOGEREF2 writer)

TOKENS = 48
OFFSETS = (0, 5, 10, 15)
MIN_MARGIN = 2e-5  # 20x the ~1e-6 relative error of a float32 forward
OUT_DIR = "tests/fixtures/demo"


def run(model, ids):
    """float64 forward; returns (logits [n, V], experts [L, n, k], weights [L, n, k], margin)."""
    routed = []
    orig = M.route

    def recording_route(logits, cfg, router_scale):
        experts, weights, p = orig(logits, cfg, router_scale)
        routed.append((experts.clone(), weights.clone(), p.clone(), cfg))
        return experts, weights, p

    M.route = recording_route
    try:
        with torch.no_grad():
            logits, _ = model(torch.tensor([ids], dtype=torch.int64))
    finally:
        M.route = orig
    margin = float("inf")
    for experts, _, p, cfg in routed:
        if cfg.routing == "moge":
            g = p.view(p.shape[0], cfg.num_expert_groups, -1)
            top2 = torch.topk(g, 2, dim=-1).values
            m = (top2[..., 0] - top2[..., 1]) / top2[..., 0]
        else:
            top = torch.topk(p, cfg.num_experts_per_tok + 1, dim=-1).values
            m = (top[:, -2] - top[:, -1]) / top[:, -2]
        margin = min(margin, float(m.min()))
    if not routed:
        return logits[0].numpy(), np.zeros((0, len(ids), 0)), np.zeros((0, len(ids), 0)), margin
    ex = np.stack([np.sort(e.numpy(), axis=1) for e, _, _, _ in routed])
    order = [np.argsort(e.numpy(), axis=1, kind="stable") for e, _, _, _ in routed]
    w = np.stack([np.take_along_axis(wt.numpy(), o, axis=1) for (_, wt, _, _), o in zip(routed, order)])
    return logits[0].numpy(), ex, w, margin


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("models", nargs="+", help="exported model directories")
    ap.add_argument("--out-dir", default=OUT_DIR)
    args = ap.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    tok = Tok512(TOKENIZER)
    for mdir in args.models:
        model = load_exported(mdir).double()
        name = os.path.basename(os.path.normpath(mdir))
        found = None
        for k, story in enumerate(read_stories(os.path.join(DATA, VALID_FILE))):
            stream = tok.encode(story, bos=True, eos=False)
            for off in OFFSETS:
                ids = stream[off:off + TOKENS]
                if len(ids) < TOKENS:
                    break
                logits, experts, weights, margin = run(model, ids)
                if margin >= MIN_MARGIN:
                    found = (k, off, ids, logits, experts, weights, margin)
                    break
                print(f"{name}: story {k} at {off} skipped (routing margin {margin:.2e} < {MIN_MARGIN})")
            if found:
                break
        if not found:
            raise SystemExit(f"{name}: no validation window with routing margins >= {MIN_MARGIN}")
        k, off, ids, logits, experts, weights, margin = found
        path = os.path.join(args.out_dir, name + ".ref")
        write_moeref(path, ids, logits, experts, weights)
        print(f"{path}: story {k} from token {off}, {len(ids)} tokens, {experts.shape[0]} MoE layers, "
              f"smallest routing margin {margin:.2e}")


if __name__ == "__main__":
    main(sys.argv[1:])
