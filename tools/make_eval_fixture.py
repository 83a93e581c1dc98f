#!/usr/bin/python3
# make_eval_fixture.py — the expected results of `moge eval` (tests/test_eval.c), computed in
# Python by code that does not share a line with the C runtime:
#
#   stories260K  tools/train/evaluate.py itself (its main(), the numbers it prints) on TinyStories
#                valid.txt, for several flag sets, plus the stream length, the windows chosen and
#                the predictions scored (from train.py's tokenize_file and val_windows' rule).
#                evaluate.py reads ../shared/data/tinystories/valid.txt; the script checks that
#                it is byte-identical to the committed tests/fixtures/tokenizers/tinystories-valid.txt
#                that the C test scores.
#   MoE          tests/fixtures/moe/pangu_16e4g (a random PanguProMoE checkpoint without a
#                tokenizer) on tests/fixtures/eval/tinystories-6.txt (the first six stories of
#                valid.txt, cut verbatim) with a character-level tokenizer written here
#                (tests/fixtures/eval/chars/tokenizer.json: <unk> <s> </s>, "▁", and each character
#                of the stories, no merges), windows of 32: the loss, and per MoE layer the expert
#                hits, the pairs per device (whole groups per device) and the mean and largest
#                Imbalance Score over the windows (one window = one batch), from the float64 numpy
#                forward of tools/reference_forward.py. The token stream is stored too.
#
#   /usr/bin/python3 tools/make_eval_fixture.py      (from the repository root; ~1 minute)
#
# Writes tests/fixtures/eval/expected.json, tests/fixtures/eval/tinystories-6.txt and
# tests/fixtures/eval/chars/tokenizer.json; deterministic (a re-run gives identical bytes).

import contextlib
import io
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))
import evaluate  # noqa: E402
import reference_forward  # noqa: E402
from tok512 import Tok512  # noqa: E402
from train import DATA, TOKENIZER, VALID_FILE, VAL_WINDOW, tokenize_file  # noqa: E402

VALID = "tests/fixtures/tokenizers/tinystories-valid.txt"
OUT = "tests/fixtures/eval"
SMALL = os.path.join(OUT, "tinystories-6.txt")
CHARS = os.path.join(OUT, "chars", "tokenizer.json")
MOE_MODEL = "tests/fixtures/moe/pangu_16e4g"
SPACE = "\u2581"

# evaluate.py flag sets on stories260K (the first is the README's figure)
DENSE_CASES = [["--no-eos", "--skip-boundaries", "--windows", "64"],
               ["--windows", "16"],
               ["--skip-boundaries", "--windows", "8"],
               ["--no-eos", "--windows", "3"]]
# (moge eval flags, routing override, devices) on the MoE fixture
MOE_WINDOW = 32
MOE_CASES = [(["--windows", "12"], None, 4),
             (["--windows", "12", "--routing", "topk"], "topk", 4),
             (["--windows", "20", "--routing", "topk", "--devices", "2", "--skip-boundaries"], "topk", 2)]


def window_indices(n_ids, window, n):
    """train.val_windows' choice: all (len-1)//window windows, or n spread by np.linspace."""
    total = (n_ids - 1) // window
    picks = range(total) if not n or n >= total else np.linspace(0, total - 1, n).astype(int)
    return total, [int(i) for i in picks]


def flag(args, name, default=0):
    return int(args[args.index(name) + 1]) if name in args else default


def dense_cases():
    with open(os.path.join(DATA, VALID_FILE), "rb") as a, open(VALID, "rb") as b:
        if a.read() != b.read():
            raise SystemExit(f"{VALID} differs from {os.path.join(DATA, VALID_FILE)} (what evaluate.py reads)")
    tok = Tok512(TOKENIZER)
    full = tokenize_file(tok, VALID)
    out = []
    for args in DENSE_CASES:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            evaluate.main(["models/stories260K"] + args)
        res = json.loads(buf.getvalue())
        ids = full[full != tok.eos_id] if "--no-eos" in args else full
        total, picks = window_indices(len(ids), VAL_WINDOW, flag(args, "--windows"))
        preds = 0
        for w in picks:
            y = ids[w * VAL_WINDOW + 1:(w + 1) * VAL_WINDOW + 1]
            preds += int(((y != tok.bos_id) & (y != tok.eos_id)).sum()) if "--skip-boundaries" in args else len(y)
        out.append({"args": " ".join(args), "val_loss": res["val_loss"], "tokens": int(len(ids)),
                    "windows_total": total, "window_indices": picks, "predictions": preds})
        print(f"stories260K {' '.join(args)}: {res['val_loss']:.6f} nats/token, {len(picks)} windows", file=sys.stderr)
    return out


class CharTok:
    """The character-level tokenizer of chars/tokenizer.json: text normalised as tok512's
    ("▁" prepended, spaces -> "▁"), one id per character."""

    def __init__(self, chars):
        self.vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, SPACE: 3}
        for c in chars:
            self.vocab.setdefault(c, len(self.vocab))
        self.bos_id, self.eos_id = 1, 2

    def encode(self, text, bos=False, eos=False):
        norm = SPACE + text.replace(" ", SPACE)
        return ([self.bos_id] if bos else []) + [self.vocab[c] for c in norm] + ([self.eos_id] if eos else [])

    def tokenizer_json(self):
        added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True} for c, i in list(self.vocab.items())[:3]]
        return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
                "normalizer": {"type": "Sequence", "normalizers": [
                    {"type": "Prepend", "prepend": SPACE},
                    {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]},
                "pre_tokenizer": None, "post_processor": None,
                "decoder": {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
                "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                          "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                          "vocab": self.vocab, "merges": []}}


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def moe_cases():
    with open(VALID, encoding="utf-8", newline="") as f:
        text = f.read()
    sep = "\n<|endoftext|>\n"
    write(SMALL, sep.join(text.split(sep)[:6]) + sep)
    with open(SMALL, encoding="utf-8") as f:
        bodies = [b.strip() for b in f.read().split(sep)]
    tok = CharTok(sorted(set("".join(bodies)) - {" "}))
    write(CHARS, json.dumps(tok.tokenizer_json(), ensure_ascii=False, indent=1) + "\n")
    ids = tokenize_file(tok, SMALL)
    model = reference_forward.Model(MOE_MODEL)
    assert max(ids) < model.vocab
    N = model.n_experts
    out = []
    for args, mode, D in MOE_CASES:
        routing = model.routing(mode=mode)
        total, picks = window_indices(len(ids), MOE_WINDOW, flag(args, "--windows"))
        nll, preds, margin = 0.0, 0, 1.0
        L = model.n_layers
        hits = np.zeros((L, N), np.int64)
        pairs = np.zeros((L, D), np.int64)
        imb = np.zeros((L, len(picks)))
        for j, w in enumerate(picks):
            x = ids[w * MOE_WINDOW:(w + 1) * MOE_WINDOW].astype(np.int64)
            y = ids[w * MOE_WINDOW + 1:(w + 1) * MOE_WINDOW + 1].astype(np.int64)
            logits, routed = model.forward_routed(x, routing)
            lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
            keep = (y != tok.bos_id) & (y != tok.eos_id) if "--skip-boundaries" in args else np.ones(len(y), bool)
            nll += float((lse - logits[np.arange(len(y)), y])[keep].sum())
            preds += int(keep.sum())
            for li, (e, _, m) in enumerate(routed):
                h = np.bincount(e.reshape(-1), minlength=N)
                dev = h.reshape(D, N // D).sum(1)
                hits[li] += h
                pairs[li] += dev
                imb[li, j] = (dev.max() - dev.min()) / len(x)
                margin = min(margin, float(m.min()))
        if margin < 1e-4:
            raise SystemExit(f"MoE case {args}: routing margin {margin:.2e}: float32 may choose other experts")
        layers = [{"layer": li, "imbalance": float(imb[li].mean()), "imbalance_max": float(imb[li].max()),
                   "expert_hits": hits[li].tolist(), "pairs_per_device": pairs[li].tolist()} for li in range(L)]
        out.append({"args": " ".join(args + ["--window", str(MOE_WINDOW)]), "n_devices": D, "val_loss": nll / preds,
                    "tokens": int(len(ids)), "windows_total": total, "window_indices": picks,
                    "predictions": preds, "min_routing_margin": margin, "layers": layers})
        print(f"{MOE_MODEL} {' '.join(args)}: {nll / preds:.6f} nats/token, IS mean "
              f"{[round(x['imbalance'], 4) for x in layers]}, margin {margin:.2e}", file=sys.stderr)
    return out, ids


def main():
    os.chdir(ROOT)
    dense = dense_cases()
    moe, ids = moe_cases()
    doc = {"about": "made by tools/make_eval_fixture.py; see tests/fixtures/eval/README.md",
           "stories260K": {"model": "models/stories260K", "file": VALID, "cases": dense},
           "moe": {"model": MOE_MODEL, "file": SMALL, "tokenizer": os.path.dirname(CHARS), "window": MOE_WINDOW,
                   "stream": [int(i) for i in ids], "cases": moe}}
    write(os.path.join(OUT, "expected.json"), json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
