#!/bin/sh
# finish.sh — turns the finished training runs into the committed demo models (tools/train/README.md,
# "Finishing"): exports the three runs, writes the C runtime's fixtures from the trainer's forward,
# moves the demo-model test into tests/, measures everything with the runtime into the model cards
# (results.py) and runs the tests. Run from the repository root once each run directory has its
# final.json; it stops at the first failure and changes nothing it has not reached.
set -eu
RUNS=${MOGE_TRAIN_DIR:-$HOME/.cache/moge/train}
DRAFT_RUN=${DRAFT_RUN:-draft}   # or draft-final (README: a further distillation from the final target)
PY=/usr/bin/python3
for run in target twin "$DRAFT_RUN"; do
  [ -f "$RUNS/$run/final.json" ] || { echo "finish.sh: $RUNS/$run has no final.json: that run has not ended" >&2; exit 1; }
done
$PY tools/train/export.py "$RUNS/target" models/tinystories-moge
$PY tools/train/export.py "$RUNS/twin" models/tinystories-topk
$PY tools/train/export.py "$RUNS/$DRAFT_RUN" models/tinystories-draft
$PY tools/train/make_fixtures.py models/tinystories-moge models/tinystories-topk models/tinystories-draft
if [ -f tools/train/test_demo_models.c ]; then git mv tools/train/test_demo_models.c tests/test_demo_models.c; fi
make
$PY tools/train/results.py
du -sh models/tinystories-moge models/tinystories-topk models/tinystories-draft
make test
echo "finish.sh: done; check the model cards, run make demo, commit models/tinystories-* tests/fixtures/demo tests/test_demo_models.c"
