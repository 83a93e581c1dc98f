#!/usr/bin/python3
# train.py — trains moge's demo models on TinyStories with Debian's python3-torch (CPU):
# the Pangu-shaped MoGE target, its global top-K twin, and the dense Llama draft distilled from
# the target's logits. See tools/train/README.md for the sizes and the commands of each run.
#
#   /usr/bin/python3 tools/train/train.py --name target --preset target
#   /usr/bin/python3 tools/train/train.py --name twin   --preset twin
#   /usr/bin/python3 tools/train/train.py --name draft  --preset draft \
#       --teacher ~/.cache/moge/train/target/ckpt.pt
#
# Run directory: --run-dir, else $MOGE_TRAIN_DIR/NAME, else ~/.cache/moge/train/NAME (outside the
# repository: the work tree may be re-laid between sessions). It holds
#   ckpt.pt        resumable checkpoint (model, optimiser, step, tokens, CPU seconds, args),
#                  written atomically (temp file + rename) every --ckpt-every-min minutes and at
#                  exit; a run is resumed from it by default (--no-resume starts over)
#   log.csv        step, tokens, lr, train loss (CE), aux (mean balance loss per MoE layer, 1 =
#                  balanced), KL (distillation), val loss, busiest expert load, tokens/s, CPU s
#   expert_load.json   per layer token-expert counts over the validation windows (MoE models)
#   *_ids.npy      the token-id cache of the training and validation text
#
# Data: ../shared/data/tinystories/train.txt then train-extra-truecased.txt (training),
# valid.txt (validation, never trained on). Stories are separated by lines `<|endoftext|>`; each
# story is encoded with the tok512 tokenizer (models/stories260K/tokenizer.json) as
# <s> story </s>, and the stories are concatenated into one stream. A training batch is
# --batch windows of --seq-len + 1 tokens at offsets drawn from numpy's default_rng([seed, step]),
# so a resumed run sees exactly the batches an uninterrupted one would.
# Validation: the valid stream cut into consecutive windows of 257 tokens (stride 256), each
# scoring 256 next-token predictions; the periodic check uses --val-windows of them spread
# evenly, the final one (and --eval-only) all of them. Reported in nats/token.
#
# Optimiser: AdamW (betas 0.9/0.95, weight decay on matrices only), linear warm-up then cosine
# decay to --min-lr-frac of the peak at --total-tokens, gradient clipping at 1.0. The run stops
# at --total-tokens, or when the CPU seconds of all its sessions reach --max-cpu-hours, or after
# --stop-after-min minutes of this session (checkpointing first in every case).
# Loss: cross-entropy + --aux-coef * sum over MoE layers of the balance loss (model.py), or for
# a distilled model (--teacher) KL(teacher || student) averaged over tokens (+ --ce-weight * CE).

import argparse
import csv
import json
import math
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model as M  # noqa: E402
from tok512 import Tok512  # noqa: E402

REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "tinystories"))
TOKENIZER = os.path.join(REPO, "models", "stories260K", "tokenizer.json")
TRAIN_FILES = ["train.txt", "train-extra-truecased.txt"]
VALID_FILE = "valid.txt"
VAL_WINDOW = 256
LOG_FIELDS = ["step", "tokens", "lr", "train_loss", "aux", "kl", "val_loss", "val_agree",
              "load_max", "tokens_per_s", "cpu_s", "wall_s"]
# Arguments a resumed run takes from its checkpoint (changing them mid-run would change the run).
FIXED_ARGS = ["preset", "batch", "seq_len", "lr", "min_lr_frac", "warmup_steps", "total_tokens",
              "weight_decay", "aux_coef", "ce_weight", "seed", "teacher", "data_dir"]


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1] if __doc__ else None)
    ap.add_argument("--name", required=True, help="run name (run directory name)")
    ap.add_argument("--preset", help="model size, a key of model.PRESETS (default: --name)")
    ap.add_argument("--run-dir", help="default $MOGE_TRAIN_DIR/NAME or ~/.cache/moge/train/NAME")
    ap.add_argument("--data-dir", default=DATA)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--total-tokens", type=float, default=7.5e6)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--aux-coef", type=float, default=0.01)
    ap.add_argument("--teacher", help="checkpoint (ckpt.pt) of the teacher: distillation mode")
    ap.add_argument("--teacher-follow-min", type=float, default=0.0,
                    help="distillation: every this many minutes reload the teacher if its "
                         "checkpoint changed (distil beside a teacher that is still training); "
                         "0: load it once")
    ap.add_argument("--init-from", help="a fresh run starts from this checkpoint's weights (same preset) "
                    "instead of random ones, e.g. a short extra distillation of a finished draft")
    ap.add_argument("--ce-weight", type=float, default=0.0,
                    help="distillation: weight of the ground-truth CE added to the KL")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--max-cpu-hours", type=float, default=4.0)
    ap.add_argument("--stop-after-min", type=float, default=0.0, help="0: no session limit")
    ap.add_argument("--stop-at-step", type=int, default=0, help="0: none (for resume tests)")
    ap.add_argument("--ckpt-every-min", type=float, default=5.0)
    ap.add_argument("--val-every-min", type=float, default=15.0)
    ap.add_argument("--val-windows", type=int, default=64)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--eval-only", action="store_true",
                    help="load the checkpoint, score all validation windows, print, exit")
    args = ap.parse_args(argv)
    if args.preset is None:
        args.preset = args.name
    if args.run_dir is None:
        root = os.environ.get("MOGE_TRAIN_DIR") or os.path.expanduser("~/.cache/moge/train")
        args.run_dir = os.path.join(root, args.name)
    if args.teacher:
        args.teacher = os.path.abspath(os.path.expanduser(args.teacher))
    return args


# ---------------------------------------------------------------------------------------------
# Data

def read_stories(path):
    """The stories of a TinyStories file (separated by lines "<|endoftext|>"), each stripped;
    empty ones left out."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    story = []
    for line in text.split("\n"):
        if line == "<|endoftext|>":
            body = "\n".join(story).strip()
            if body:
                yield body
            story = []
        else:
            story.append(line)
    body = "\n".join(story).strip()
    if body:
        yield body


def tokenize_file(tok, path):
    """Token ids of a TinyStories file: <s> story </s> per story, concatenated (uint16)."""
    out = []
    for body in read_stories(path):
        out.extend(tok.encode(body, bos=True, eos=True))
    return np.asarray(out, dtype=np.uint16)


def load_ids(run_dir, data_dir, name, files):
    """Cached token ids of `files` (concatenated) in run_dir/NAME_ids.npy."""
    path = os.path.join(run_dir, f"{name}_ids.npy")
    if os.path.exists(path):
        return np.load(path)
    tok = Tok512(TOKENIZER)
    ids = np.concatenate([tokenize_file(tok, os.path.join(data_dir, f)) for f in files])
    tmp = path + ".tmp.npy"
    np.save(tmp, ids)
    os.replace(tmp, path)
    return ids


def train_batch(ids, seed, step, batch, seq_len):
    """[batch, seq_len + 1] int64 windows, a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(ids) - seq_len - 1, size=batch)
    win = np.stack([ids[s:s + seq_len + 1] for s in starts]).astype(np.int64)
    return torch.from_numpy(win)


def val_windows(ids, n=None):
    """[W, 257] validation windows (stride 256); n spread evenly if given."""
    total = (len(ids) - 1) // VAL_WINDOW
    picks = range(total) if not n or n >= total else np.linspace(0, total - 1, n).astype(int)
    return torch.from_numpy(np.stack(
        [ids[i * VAL_WINDOW:i * VAL_WINDOW + VAL_WINDOW + 1] for i in picks]).astype(np.int64))


# ---------------------------------------------------------------------------------------------
# Model, optimiser, schedule

def build_model(preset, seed):
    torch.manual_seed(seed)
    cfg = M.Config(**M.PRESETS[preset])
    return M.CausalLM(cfg)


def load_teacher(path):
    ck = torch.load(path, map_location="cpu")
    teacher = M.CausalLM(M.Config(**ck["config"]))
    teacher.load_state_dict(ck["model"])
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, ck


def make_optimizer(model, args):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=args.lr, betas=(0.9, 0.95), eps=1e-8)


def lr_at(step, args, total_steps):
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    frac = min(1.0, (step - args.warmup_steps) / max(1, total_steps - args.warmup_steps))
    lo = args.lr * args.min_lr_frac
    return lo + 0.5 * (args.lr - lo) * (1.0 + math.cos(math.pi * frac))


def kl_loss(student_logits, teacher_logits):
    """Mean over tokens of KL(teacher || student), nats."""
    lt = F.log_softmax(teacher_logits, dim=-1)
    ls = F.log_softmax(student_logits, dim=-1)
    return (lt.exp() * (lt - ls)).sum(-1).mean()


@torch.no_grad()
def evaluate(model, windows, teacher=None, chunk=8):
    """(val loss nats/token, top-1 agreement with teacher or None, per-layer expert counts)."""
    model.eval()
    total, n, agree = 0.0, 0, 0
    counts = None
    for i in range(0, len(windows), chunk):
        w = windows[i:i + chunk]
        logits, _ = model(w[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                                 reduction="sum").item()
        n += w[:, 1:].numel()
        if model.cfg.kind == "moe":
            c = model.expert_counts()
            counts = c if counts is None else counts + c
        if teacher is not None:
            tl, _ = teacher(w[:, :-1])
            agree += (tl.argmax(-1) == logits.argmax(-1)).sum().item()
    model.train()
    return total / n, (agree / n if teacher is not None else None), counts


# ---------------------------------------------------------------------------------------------
# Checkpoints and the log

def save_checkpoint(path, state):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def trim_log(path, max_step):
    """Drops log rows written after the checkpoint being resumed (step > max_step)."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= max_step]
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


class Log:
    def __init__(self, path):
        new = not os.path.exists(path)
        self.f = open(path, "a", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=LOG_FIELDS)
        if new:
            self.w.writeheader()

    def row(self, **kw):
        self.w.writerow({k: ("" if kw.get(k) is None else
                             (f"{kw[k]:.6g}" if isinstance(kw[k], float) else kw[k]))
                         for k in LOG_FIELDS})
        self.f.flush()


def load_stats(counts):
    """(busiest expert's load / mean load, max over layers; the per-layer counts as lists)."""
    c = counts.double()
    ratio = (c.max(1).values / c.mean(1)).max().item()
    return ratio, counts.tolist()


# ---------------------------------------------------------------------------------------------

def main(argv):
    args = parse_args(argv)
    os.makedirs(args.run_dir, exist_ok=True)
    ckpt_path = os.path.join(args.run_dir, "ckpt.pt")
    log_path = os.path.join(args.run_dir, "log.csv")

    ck = None
    if os.path.exists(ckpt_path) and (not args.no_resume or args.eval_only):
        ck = torch.load(ckpt_path, map_location="cpu")
        for k in FIXED_ARGS:
            if k in ck["args"] and getattr(args, k) != ck["args"][k]:
                print(f"resume: keeping {k}={ck['args'][k]!r} from the checkpoint "
                      f"(ignoring {getattr(args, k)!r})", flush=True)
                setattr(args, k, ck["args"][k])
    elif args.eval_only:
        raise SystemExit(f"{ckpt_path}: no checkpoint to evaluate")

    train_ids = load_ids(args.run_dir, args.data_dir, "train", TRAIN_FILES)
    valid_ids = load_ids(args.run_dir, args.data_dir, "valid", [VALID_FILE])
    model = build_model(args.preset, args.seed)
    teacher, teacher_step, teacher_mtime = None, None, None
    if args.teacher:
        teacher_mtime = os.path.getmtime(args.teacher)
        teacher, tck = load_teacher(args.teacher)
        teacher_step = tck.get("step")
        print(f"teacher {args.teacher} at step {teacher_step}", flush=True)
    opt = make_optimizer(model, args)
    step, tokens, cpu_before = 0, 0, 0.0
    if ck is None and args.init_from:
        init = torch.load(os.path.abspath(os.path.expanduser(args.init_from)), map_location="cpu")
        if init.get("config") != model.cfg.to_dict():
            raise SystemExit(f"--init-from {args.init_from}: its model config differs from preset {args.preset}")
        model.load_state_dict(init["model"])
        print(f"initialised from {args.init_from} (its step {init.get('step')})", flush=True)
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, tokens, cpu_before = ck["step"], ck["tokens"], ck["cpu_s"]
    total, active = M.count_params(model)
    tokens_per_step = args.batch * args.seq_len
    total_steps = int(math.ceil(args.total_tokens / tokens_per_step))
    print(f"run {args.run_dir}: preset {args.preset} ({total:,} params, {active:,} active), "
          f"train {len(train_ids):,} tokens, valid {len(valid_ids):,}; step {step}/{total_steps}, "
          f"cpu {cpu_before / 3600:.2f} h of {args.max_cpu_hours}", flush=True)

    if args.eval_only:
        vl, agree, counts = evaluate(model, val_windows(valid_ids), teacher)
        print(json.dumps({"val_loss": vl, "val_agree": agree, "step": step, "tokens": tokens,
                          "load_max": load_stats(counts)[0] if counts is not None else None}))
        return

    if ck is None:
        trim_log(log_path, -1)  # a fresh run starts a fresh log
    else:
        trim_log(log_path, step)
    log = Log(log_path)
    with open(os.path.join(args.run_dir, "args.json"), "w") as f:
        json.dump({"args": vars(args), "config": model.cfg.to_dict(), "params": total,
                   "active_params": active, "argv": sys.argv}, f, indent=1)

    vwin = val_windows(valid_ids, args.val_windows)
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    cpu0, wall0 = time.process_time(), time.time()
    last_ckpt = last_val = last_follow = wall0
    acc = {"loss": 0.0, "aux": 0.0, "kl": 0.0, "n": 0, "tok": 0, "t": wall0}

    def cpu_s():
        return cpu_before + time.process_time() - cpu0

    def checkpoint():
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "tokens": tokens, "cpu_s": cpu_s(), "args": vars(args), "teacher_step": teacher_step,
            "config": model.cfg.to_dict()})

    def validate(windows):
        vl, agree, counts = evaluate(model, windows, teacher)
        lm = None
        if counts is not None:
            lm, per_layer = load_stats(counts)
            with open(os.path.join(args.run_dir, "expert_load.json"), "w") as f:
                json.dump({"step": step, "windows": len(windows), "counts": per_layer}, f)
        return vl, agree, lm

    model.train()
    reason = "total tokens reached"
    while step < total_steps:
        if cpu_s() >= args.max_cpu_hours * 3600:
            reason = "CPU budget spent"
            break
        if args.stop_after_min and time.time() - wall0 >= args.stop_after_min * 60:
            reason = "session limit"
            break
        if args.stop_at_step and step >= args.stop_at_step:
            reason = "--stop-at-step"
            break
        if stop["signal"] is not None:
            reason = f"signal {stop['signal']}"
            break
        lr = lr_at(step, args, total_steps)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = train_batch(train_ids, args.seed, step, args.batch, args.seq_len)
        x, y = batch[:, :-1], batch[:, 1:]
        logits, aux = model(x)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        if teacher is not None:
            with torch.no_grad():
                tlogits, _ = teacher(x)
            kl = kl_loss(logits, tlogits)
            loss = kl + args.ce_weight * ce
            acc["kl"] += kl.item()
        else:
            loss = ce + args.aux_coef * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += tokens_per_step
        acc["loss"] += ce.item()
        acc["aux"] += aux.item() / model.cfg.num_hidden_layers
        acc["n"] += 1
        acc["tok"] += tokens_per_step

        now = time.time()
        do_val = now - last_val >= args.val_every_min * 60 or step == total_steps
        if step % args.log_every == 0 or do_val:
            vl = agree = lm = None
            if do_val:
                vl, agree, lm = validate(vwin)
                last_val = time.time()
            n = max(1, acc["n"])
            log.row(step=step, tokens=tokens, lr=lr, train_loss=acc["loss"] / n,
                    aux=acc["aux"] / n if model.cfg.kind == "moe" else None,
                    kl=acc["kl"] / n if teacher is not None else None, val_loss=vl,
                    val_agree=agree, load_max=lm, tokens_per_s=acc["tok"] / (now - acc["t"]),
                    cpu_s=round(cpu_s(), 1), wall_s=round(now - wall0, 1))
            print(f"step {step} tok {tokens} lr {lr:.2e} loss {acc['loss'] / n:.4f}"
                  + (f" val {vl:.4f}" if vl is not None else "")
                  + f" {acc['tok'] / (now - acc['t']):.0f} tok/s cpu {cpu_s() / 3600:.3f} h",
                  flush=True)
            acc = {"loss": 0.0, "aux": 0.0, "kl": 0.0, "n": 0, "tok": 0, "t": time.time()}
        if (teacher is not None and args.teacher_follow_min
                and time.time() - last_follow >= args.teacher_follow_min * 60):
            last_follow = time.time()
            mtime = os.path.getmtime(args.teacher)
            if mtime != teacher_mtime:  # the writer replaces the file atomically (os.replace)
                teacher, tck = load_teacher(args.teacher)
                teacher_mtime, teacher_step = mtime, tck.get("step")
                print(f"step {step}: teacher reloaded at its step {teacher_step}", flush=True)
        if time.time() - last_ckpt >= args.ckpt_every_min * 60:
            checkpoint()
            last_ckpt = time.time()

    checkpoint()
    print(f"stopped at step {step}/{total_steps} ({reason}); checkpoint {ckpt_path}", flush=True)
    if step >= total_steps:
        vl, agree, lm = validate(val_windows(valid_ids))
        result = {"step": step, "tokens": tokens, "val_loss": vl, "val_agree": agree,
                  "teacher_step": teacher_step,
                  "load_max": lm, "cpu_s": cpu_s(), "val_windows": len(val_windows(valid_ids))}
        with open(os.path.join(args.run_dir, "final.json"), "w") as f:
            json.dump(result, f, indent=1)
        print("final", json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
