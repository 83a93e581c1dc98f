#!/bin/sh
# smoke_test.sh — a few-minute check of the trainer on tiny models (2 layers, hidden 32): trains
# the MoGE target, its top-K twin and a draft distilled from the target for 20 steps each;
# checks that a run stopped at step 12 and resumed ends bit-identical to an uninterrupted one;
# exports the three and checks their logits against tools/reference_forward.py (numpy float64).
# Exits non-zero on any failure. Writes only under a temporary directory.
#
#   sh tools/train/smoke_test.sh
set -eu
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
T=$(mktemp -d /tmp/moge-train-smoke.XXXXXX)
trap 'rm -rf "$T"' EXIT
export MOGE_TRAIN_DIR="$T" OPENBLAS_NUM_THREADS=1
A="--batch 4 --seq-len 64 --total-tokens 5120 --warmup-steps 5 --log-every 5 --val-windows 8"

$PY tools/train/train.py --name target $A --preset tiny-target | tail -1
$PY tools/train/train.py --name twin $A --preset tiny-twin | tail -1
$PY tools/train/train.py --name twin2 $A --preset tiny-twin --stop-at-step 12 | tail -1
$PY tools/train/train.py --name twin2 $A --preset tiny-twin | tail -1
$PY tools/train/train.py --name draft $A --preset tiny-draft --teacher "$T/target/ckpt.pt" | tail -1
$PY - "$T" <<'EOF'
import json, sys
a = json.load(open(sys.argv[1] + "/twin/final.json"))
b = json.load(open(sys.argv[1] + "/twin2/final.json"))
if a["val_loss"] != b["val_loss"]:
    raise SystemExit(f"resume: {b['val_loss']} != uninterrupted {a['val_loss']}")
print("resume: bit-identical final validation loss", a["val_loss"])
EOF

for r in target twin draft; do
    $PY tools/train/export.py "$T/$r" "$T/out-$r"
done
$PY - "$T" <<'EOF'
import re, subprocess, sys
import numpy as np, torch
sys.path.insert(0, "tools/train")
import export
ids = [1, 403, 407, 261, 378, 2, 1, 317, 269]
for name, extra in (("target", []), ("twin", ["--routing", "topk", "--renorm", "1"]),
                    ("draft", [])):
    d = f"{sys.argv[1]}/out-{name}"
    out = subprocess.run(["/usr/bin/python3", "tools/reference_forward.py", d, "logits",
                          *map(str, ids), *extra], capture_output=True, text=True, check=True)
    ref = [np.array(x.split(), float)
           for x in re.findall(r"logits\[:8\] \[([^\]]*)\]", out.stdout)]
    with torch.no_grad():
        got = export.load_exported(d)(torch.tensor([ids]))[0][0, :, :8].numpy()
    assert len(ref) == len(ids), out.stdout
    err = max(abs(got[i] - ref[i]).max() for i in range(len(ids)))
    print(f"{name}: max |torch - reference_forward| over the first 8 logits: {err:.2e}")
    if err > 1e-5:
        raise SystemExit(f"{name}: differs from reference_forward.py")
EOF
echo "smoke test passed"
