#!/usr/bin/python3
# evaluate.py — scores Hugging Face model directories (exported demo models, or stories260K) on
# TinyStories valid.txt the way train.py validates: consecutive 257-token windows (stride 256),
# 256 next-token predictions each, nats/token. With --draft, also the teacher-forced agreement of
# the draft with the target: the share of positions where the target's argmax is among the
# draft's top 1, 2, 4 (a proxy for speculative acceptance).
#
#   /usr/bin/python3 tools/train/evaluate.py models/tinystories-moge [--draft models/stories260K]
#       [--windows N] [--no-eos] [--skip-boundaries] [--routing topk]
#
# --no-eos builds the valid stream as <s> story (llama2.c's format, what stories260K was trained
# on) instead of <s> story </s>. --windows N scores N windows spread over the set (default all).
# --skip-boundaries leaves out the predictions whose target is <s> or </s>, so models trained with
# and without </s> are scored on the same story tokens (compare ours with stories260K as
# `evaluate.py models/tinystories-moge --skip-boundaries` vs `evaluate.py models/stories260K
# --no-eos --skip-boundaries`: stories260K never predicts </s>, which costs it ~0.15 nats/token on
# the <s> story </s> stream).
# --routing topk evaluates a PanguProMoE directory with global top-K routing, renormalised (the
# twin's rule; export.py's reader already takes it from "moge_routing").

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import export  # noqa: E402
from tok512 import Tok512  # noqa: E402
from train import DATA, TOKENIZER, VALID_FILE, tokenize_file, val_windows  # noqa: E402


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--draft")
    ap.add_argument("--windows", type=int, default=0)
    ap.add_argument("--no-eos", action="store_true")
    ap.add_argument("--skip-boundaries", action="store_true")
    ap.add_argument("--routing", choices=["moge", "topk"])
    args = ap.parse_args(argv)

    tok = Tok512(TOKENIZER)
    ids = tokenize_file(tok, os.path.join(DATA, VALID_FILE))
    if args.no_eos:
        ids = ids[ids != tok.eos_id]
    windows = val_windows(ids, args.windows or None)
    target = export.load_exported(args.model)
    if args.routing:
        target.cfg.routing = args.routing
    draft = export.load_exported(args.draft) if args.draft else None

    nll, n, hits, dnll = 0.0, 0, {1: 0, 2: 0, 4: 0}, 0.0
    with torch.no_grad():
        for i in range(0, len(windows), 8):
            w = windows[i:i + 8]
            x, y = w[:, :-1], w[:, 1:].reshape(-1)
            keep = torch.ones_like(y, dtype=torch.bool)
            if args.skip_boundaries:
                keep = (y != tok.bos_id) & (y != tok.eos_id)
            y = y[keep]
            lt = target(x)[0].reshape(-1, 512)[keep]
            nll += F.cross_entropy(lt, y, reduction="sum").item()
            n += y.numel()
            if draft is not None:
                ld = draft(x)[0].reshape(-1, 512)[keep]
                dnll += F.cross_entropy(ld, y, reduction="sum").item()
                top = ld.topk(4, dim=-1).indices
                want = lt.argmax(-1, keepdim=True)
                for k in hits:
                    hits[k] += (top[:, :k] == want).any(-1).sum().item()
    out = {"model": args.model, "windows": len(windows), "eos": not args.no_eos,
           "skip_boundaries": args.skip_boundaries, "val_loss": nll / n}
    if draft is not None:
        out["draft"] = args.draft
        out["draft_val_loss"] = dnll / n
        out.update({f"agree_top{k}": hits[k] / n for k in hits})
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
