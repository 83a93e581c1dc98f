#!/usr/bin/python3
"""results.py — measures the exported demo models with the moge runtime and writes the numbers
the demo-model issue asks for into their model cards (and prints them for the issue note).

For models/tinystories-moge (target), -topk (twin), -draft and models/stories260K, with
build/moge (run `make` first):
  - validation loss on valid.txt (`moge eval`, the windows train.py validates on): every model
    on its own stream format (<s> story </s>; stories260K, trained on <s> story, with --no-eos),
    all windows, and also with --skip-boundaries (story tokens only: the fair comparison with
    stories260K);
  - expert load of the target and the twin on the same windows, one expert group per device
    (8 devices): per layer the Imbalance Score (mean and max over the 256-token windows) and each
    expert's share of the token-expert pairs;
  - speculation (`moge bench`, greedy, 8 validation prompts, 128 tokens): τ and tokens/s of tree
    and chain drafting with tinystories-draft and with stories260K as the draft, with the
    default tree and chain (--no-adaptive) and with the adaptive budget;
  - text: ten greedy and ten sampled (T = 0.8, seeds 1..10) continuations by the target of the
    first sentence of validation stories 1, 11, 21, ...
Each model card (README.md) gets a "Measured by the moge runtime" section between the markers
<!-- results --> and <!-- /results --> (replaced when it exists). results.json keeps the raw numbers.

Usage (repository root): /usr/bin/python3 tools/train/results.py [--windows N] [--quick]
  --windows N: score N windows spread over valid.txt instead of all 2,332 (faster, for trying)
  --quick: 2 continuations of each kind, a 1-repeat bench (for trying the script)
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from train import DATA, VALID_FILE, read_stories  # noqa: E402

MOGE = os.path.join(ROOT, "build", "moge")
MODELS = {"target": "models/tinystories-moge", "twin": "models/tinystories-topk",
          "draft": "models/tinystories-draft", "stories260K": "models/stories260K"}
BEGIN, END = "<!-- results -->", "<!-- /results -->"


def run(args, **kw):
    p = subprocess.run([MOGE] + args, cwd=ROOT, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise SystemExit(f"moge {' '.join(args)}: exit {p.returncode}\n{p.stderr[-2000:]}")
    return p


def with_json(args):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "out.json")
        run(args + ["--json", path])
        with open(path) as f:
            return json.load(f)


def stories():
    return read_stories(os.path.join(DATA, VALID_FILE))


def first_sentence(text):
    m = re.match(r"(.+?[.!?])(\s|$)", text.replace("\n", " "))
    return m.group(1) if m else text[:80]


def evaluate(name, windows):
    valid = os.path.join(DATA, VALID_FILE)
    base = ["eval", "-m", MODELS[name], "-f", valid] + (["--windows", str(windows)] if windows else [])
    if name == "stories260K":
        base.append("--no-eos")
    full = with_json(base)
    story = with_json(base + ["--skip-boundaries"])
    return {"val_loss": full["val_loss"], "val_loss_story_tokens": story["val_loss"],
            "windows": full["windows"], "moe": full.get("moe")}


def bench(draft, quick):
    """Fixed trees and chains (--no-adaptive: what the drafter achieves, τ) and the default
    adaptive budget (which shrinks the tree while speculation measures slower than plain)."""
    prompts = [first_sentence(s) for s, _ in zip(stories(), range(8))]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(prompts) + "\n")
        path = f.name
    out = {}
    try:
        for label, extra in (("fixed", ["--no-adaptive"]), ("adaptive", [])):
            d = with_json(["bench", "-m", MODELS["target"], "-d", MODELS[draft], "--prompts", path, "-n", "128",
                           "--repeats", "1" if quick else "3", "--modes", "none,chain,tree"] + extra)
            for m in d["modes"]:
                if m["mode"] == "none" and label == "adaptive":
                    continue
                name = m["mode"] if m["mode"] == "none" else f"{m['mode']} ({label})"
                out[name] = {k: m[k] for k in ("tokens_per_s", "speedup", "tau", "identical")}
    finally:
        os.unlink(path)
    return out


def samples(quick):
    picks = [s for i, s in enumerate(stories()) if i % 10 == 1][: 2 if quick else 10]
    out = []
    for i, s in enumerate(picks):
        prompt = first_sentence(s)
        greedy = run(["run", "-m", MODELS["target"], "-d", MODELS["draft"], "-p", prompt, "-n", "100",
                      "--temp", "0"]).stdout.strip()
        sampled = run(["run", "-m", MODELS["target"], "-d", MODELS["draft"], "-p", prompt, "-n", "100",
                       "--temp", "0.8", "--seed", str(i + 1)]).stdout.strip()
        out.append({"prompt": prompt, "greedy": greedy, "sampled": sampled})
    return out


def load_table(moe):
    rows = ["| layer | IS mean | IS max | expert shares (% of pairs, expert 0..N-1) |", "|---:|---:|---:|---|"]
    for l in moe["layers"]:
        hits = l["expert_hits"]
        tot = sum(hits) or 1
        shares = " ".join(f"{100 * h / tot:.1f}" for h in hits)
        rows.append(f"| {l['layer']} | {l['imbalance']:.3f} | {l['imbalance_max']:.3f} | {shares} |")
    return "\n".join(rows)


def section(name, r):
    ev = r["eval"]
    lines = [BEGIN, "", "## Measured by the moge runtime", "",
             "Written by `tools/train/results.py` (the C runtime, not the trainer).", "",
             "| model | val loss (nats/token) | story tokens only |", "|---|---:|---:|"]
    for m in MODELS:
        e = ev[m]
        lines.append(f"| {m} (`{MODELS[m]}`) | {e['val_loss']:.4f} | {e['val_loss_story_tokens']:.4f} |")
    w = ev["target"]["windows"]
    lines += ["", f"On {w} windows of 256 tokens of TinyStories valid.txt, each model on its own stream "
              "format (stories260K was trained without `</s>`); \"story tokens only\" leaves out the "
              "predictions of `<s>` and `</s>`.", ""]
    if name in ("target", "twin"):
        lines += [f"### Expert load ({ev[name]['moe']['routing']} routing, {ev[name]['moe']['n_devices']} devices, "
                  "one expert group each)", "", load_table(ev[name]["moe"]), "",
                  "Imbalance Score per 256-token window: (max − min pairs per device) / tokens."]
        other = "twin" if name == "target" else "target"
        mean = lambda m: sum(l["imbalance"] for l in ev[m]["moe"]["layers"]) / len(ev[m]["moe"]["layers"])
        lines += ["", f"Mean over layers: {mean(name):.3f} here, {mean(other):.3f} for the {other}.", ""]
    if name in ("target", "draft"):
        lines += ["### Speculation (target = tinystories-moge, greedy, 8 validation prompts, 128 tokens)", "",
                  "| draft | mode | tokens/s | speedup | τ | identical text |", "|---|---|---:|---:|---:|---|"]
        for d, modes in r["bench"].items():
            for mode, v in modes.items():
                lines.append(f"| {d} | {mode} | {v['tokens_per_s']:.0f} | {v['speedup']:.2f} | {v['tau']:.2f} | "
                             f"{'yes' if v['identical'] else 'no'} |")
        lines.append("")
    if name == "target":
        lines += ["### Continuations of validation prompts (100 tokens)", ""]
        for i, s in enumerate(r["samples"]):
            ind = lambda t: t.replace("\n", "\n     ")  # keep the story's line breaks inside the list item
            lines += [f"{i + 1}. **{s['prompt']}**", "", f"   - greedy: {ind(s['greedy'])}",
                      f"   - sampled (T = 0.8, seed {i + 1}): {ind(s['sampled'])}", ""]
    lines.append(END)
    return "\n".join(lines)


def write_card(model_dir, text):
    path = os.path.join(ROOT, model_dir, "README.md")
    with open(path, encoding="utf-8") as f:
        card = f.read()
    if BEGIN in card:
        card = card[:card.index(BEGIN)] + text + card[card.index(END) + len(END):]
    else:
        card = card.rstrip("\n") + "\n\n" + text + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(card)
    os.replace(tmp, path)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--windows", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    for m in MODELS.values():
        if not os.path.exists(os.path.join(ROOT, m, "config.json")):
            raise SystemExit(f"{m}: missing (export the models first: tools/train/README.md)")
    r = {"eval": {m: evaluate(m, args.windows) for m in MODELS}}
    print(json.dumps({m: {k: v for k, v in e.items() if k != "moe"} for m, e in r["eval"].items()}, indent=1))
    r["bench"] = {"tinystories-draft": bench("draft", args.quick), "stories260K": bench("stories260K", args.quick)}
    print(json.dumps(r["bench"], indent=1))
    r["samples"] = samples(args.quick)
    with open(os.path.join(ROOT, "tools", "train", "results.json"), "w") as f:
        json.dump(r, f, indent=1)
    for name in ("target", "twin", "draft"):
        write_card(MODELS[name], section(name, r))
    print("model cards updated:", ", ".join(MODELS[n] for n in ("target", "twin", "draft")))


if __name__ == "__main__":
    main(sys.argv[1:])
