#!/usr/bin/env bash
# bench_peer.sh — `make bench-peer LLAMA_CPP=DIR`: plain decoding speed of moge and of a llama.cpp
# you built yourself, side by side on the same weights, in one run.
#
# Usage: tools/bench_peer.sh LLAMA_CPP_BIN_DIR     (or LLAMA_CPP=DIR tools/bench_peer.sh)
#   LLAMA_CPP_BIN_DIR holds llama.cpp's llama-bench (e.g. ~/llama.cpp/build/bin; a llama.cpp
#   checkout whose build/bin holds it also works). Nothing is downloaded or built here besides
#   what `make bench-peer` builds of moge itself; llama.cpp is only run.
# Environment (defaults in brackets):
#   MODELS   [dense-272m dense-1g]  model directories; a bare name is build/bench-models/NAME,
#            a random benchmark model that tests/bench_forward writes on first use
#   FORMATS  [f32 q8_0]  f32: the weights as stored on both sides; q8_0: llama.cpp's Q8_0 file
#            against moge quantizing at load to q8 and to w8a8 (two rows)
#   ROUNDS   [3]  rounds; each runs every model and format once on both sides, llama.cpp and moge
#            taking turns (which goes first alternates by round)
#   VARIANTS [$MOGE_KERNELS, else best]  moge's kernel variants, each run in every round
#            (MOGE_KERNELS=NAME; best: the one the binary picks for this processor), e.g.
#            "best avx2" on an AMD Zen 4, whose AVX-512 executes as two 256-bit halves, to see
#            whether the 256-bit kernels win there
#   THREADS  [2]  N_GEN [64]  BUILD [build]  PYTHON [/usr/bin/python3]
#   OMP_POLICIES  [ACTIVE PASSIVE]  llama.cpp (OpenMP builds) runs once per OMP_WAIT_POLICY and
#            its better rate counts: spinning (ACTIVE, OpenMP's default) is about 2x faster on a
#            quiet 2-core machine, sleeping (PASSIVE) far faster when another process holds a core
#   LLAMA_BENCH_ARGS  extra arguments for llama-bench (e.g. "-fa 1")
#
# Each model's GGUF files are written once by tools/gguf_write.py under $BUILD/peer/ (again when
# the model or the writer is newer). llama.cpp: `llama-bench -m FILE -p 0 -n N_GEN -t THREADS -r 1
# -o csv` (one warm-up token, then N_GEN one-token decodes from an empty context), its avg_ts.
# moge: `bench_forward -t THREADS --decode N_GEN DIR` (one untimed token, then N_GEN one-token
# forwards from an empty KV cache, each committed) on the same safetensors weights. Both use
# tokens that are not sampled from the logits. The table gives each side's median over the rounds
# (min–max in brackets) and the ratio of the medians; the header names the processor (lscpu) and
# llama.cpp's commit. Quote ratios from one run: the numbers move with the machine's load.
set -u -o pipefail

die() { echo "bench-peer: $*" >&2; exit 1; }

BIN=${1:-${LLAMA_CPP:-}}
[ -n "$BIN" ] || die "no llama.cpp given: make bench-peer LLAMA_CPP=/path/to/llama.cpp/build/bin (the folder holding llama-bench)"
[ -x "$BIN/llama-bench" ] || { [ -x "$BIN/build/bin/llama-bench" ] && BIN=$BIN/build/bin; }
[ -x "$BIN/llama-bench" ] || die "$BIN has no llama-bench (build llama.cpp first: cmake -B build && cmake --build build --target llama-bench; then give its build/bin)"

MODELS=${MODELS:-dense-272m dense-1g}
FORMATS=${FORMATS:-f32 q8_0}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
N_GEN=${N_GEN:-64}
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
LLAMA_BENCH_ARGS=${LLAMA_BENCH_ARGS:-}
OMP_POLICIES=${OMP_POLICIES:-ACTIVE PASSIVE}
VARIANTS=${VARIANTS:-${MOGE_KERNELS:-best}}
BENCH=$BUILD/tests/bench_forward
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1

for v in ROUNDS THREADS N_GEN; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number, not '${!v}'"
done
for f in $FORMATS; do
  [ "$f" = f32 ] || [ "$f" = q8_0 ] || die "FORMATS: '$f' is not f32 or q8_0"
done
for v in $VARIANTS; do
  [[ $v =~ ^[a-z0-9]+$ ]] || die "VARIANTS: '$v' is not a kernel variant name (best, avx2, avx512vnni, ...)"
done
N_VARIANTS=$(wc -w <<<"$VARIANTS")
[ -x "$BENCH" ] || die "$BENCH is missing: run make bench-peer (or make $BENCH) first"
"$PYTHON" -c "import numpy" 2>/dev/null || die "$PYTHON with numpy is needed to write the GGUF files (tools/gguf_write.py)"

OUT=$BUILD/peer
mkdir -p "$OUT" || exit 1
LOG=$(mktemp "$OUT/bench-peer.XXXXXX") || exit 1
RES=$LOG.results
trap 'rm -f "$LOG" "$RES"' EXIT

# model directory of a name from MODELS
model_dir() { case $1 in */*) echo "${1%/}" ;; *) echo "build/bench-models/$1" ;; esac; }

# ---- the models and their GGUF files ----------------------------------------------------------
for m in $MODELS; do
  d=$(model_dir "$m")
  if [ ! -f "$d/config.json" ]; then
    "$BENCH" --write-models "$d" >/dev/null 2>"$LOG" || { cat "$LOG" >&2; die "cannot write $d"; }
    [ -f "$d/config.json" ] || die "$d: no config.json (not a model directory, nor one of bench_forward's benchmark models)"
  fi
  for f in $FORMATS; do
    g=$OUT/$(basename "$d")-$f.gguf
    newer=$(find "$d" -maxdepth 1 \( -name '*.safetensors' -o -name config.json -o -name 'tokenizer*.json' \) -newer "$g" 2>/dev/null | head -n 1)
    if [ ! -f "$g" ] || [ -n "$newer" ] || [ tools/gguf_write.py -nt "$g" ]; then
      echo "bench-peer: $PYTHON tools/gguf_write.py $d $g --type $f" >&2
      "$PYTHON" tools/gguf_write.py "$d" "$g" --type "$f" || die "tools/gguf_write.py failed for $d ($f)"
    fi
  done
done

# ---- the runs ------------------------------------------------------------------------------------
COMMIT=""
KERNELS="" # the variants that ran, as bench_forward names them
BEST=""    # the one "best" picked
run_llama() { # model format round
  local g csv ts c best="" pol
  g=$OUT/$(basename "$(model_dir "$1")")-$2.gguf
  for pol in $OMP_POLICIES; do
    # shellcheck disable=SC2086
    csv=$(OMP_WAIT_POLICY=$pol "$BIN/llama-bench" -m "$g" -p 0 -n "$N_GEN" -t "$THREADS" -r 1 -o csv $LLAMA_BENCH_ARGS 2>"$LOG") ||
      { tail -n 20 "$LOG" >&2; die "llama-bench failed on $g"; }
    # the header row names the columns; the last row is the test
    read -r ts c < <(printf '%s\n' "$csv" | tr -d '"' | awk -F, '
      /^build_commit,/ { for (i = 1; i <= NF; i++) col[$i] = i; next }
      col["avg_ts"] && NF > 1 { ts = $col["avg_ts"]; c = $col["build_commit"] }
      END { if (ts != "") print ts, c }')
    [ -n "${ts:-}" ] || { printf '%s\n' "$csv" >&2; die "no avg_ts in llama-bench's CSV output for $g"; }
    COMMIT=$c
    echo "bench-peer: round $3/$ROUNDS: $1 $2 llama.cpp (OMP_WAIT_POLICY=$pol) $ts tokens/s" >&2
    best=$(awk -v a="$ts" -v b="${best:-0}" 'BEGIN { print (a > b ? a : b) }')
  done
  echo "$1 $2 llama.cpp - $best" >>"$RES"
}
run_moge() { # model format round variant
  local d w line k n=0
  d=$(model_dir "$1")
  if [ "$2" = f32 ]; then w=none; else w=q8,w8a8; fi
  if [ "$4" = best ]; then k=""; else k=$4; fi
  MOGE_KERNELS=$k MOGE_BENCH_WEIGHTS=$w "$BENCH" -t "$THREADS" --decode "$N_GEN" "$d" >"$LOG.moge" 2>"$LOG" ||
    { tail -n 20 "$LOG" >&2; rm -f "$LOG.moge"; die "$BENCH --decode failed on $d ($w, kernels $4)"; }
  # "decode 64 tokens: 40.84 tokens/s (DIR, weights q8, 2 threads, avx512vnni kernels)"
  k=$(sed -n 's/^decode .*threads, \(.*\) kernels)$/\1/p' "$LOG.moge" | head -n 1)
  case " $KERNELS " in *" $k "*) ;; *) KERNELS=${KERNELS:+$KERNELS, }$k ;; esac
  [ "$4" = best ] && BEST=$k
  while read -r line; do
    local ts=${line#*: } q=${line##*weights }
    ts=${ts%% *}
    q=${q%%,*}
    echo "$1 $2 moge $q@$4 $ts" >>"$RES"
    n=$((n + 1))
    echo "bench-peer: round $3/$ROUNDS: $1 $2 moge $q ($k kernels) $ts tokens/s" >&2
  done < <(grep '^decode ' "$LOG.moge")
  rm -f "$LOG.moge"
  [ "$n" -gt 0 ] || die "$BENCH printed no decode line for $d"
}
run_moges() { # model format round: every variant
  local v
  for v in $VARIANTS; do run_moge "$1" "$2" "$3" "$v"; done
}

for r in $(seq 1 "$ROUNDS"); do
  for m in $MODELS; do
    for f in $FORMATS; do
      if [ $((r % 2)) = 1 ]; then run_llama "$m" "$f" "$r"; run_moges "$m" "$f" "$r"
      else run_moges "$m" "$f" "$r"; run_llama "$m" "$f" "$r"; fi
    done
  done
done

# ---- the table -----------------------------------------------------------------------------------
# "median (min–max)" of the rows of RES matching model, format, side, weights; the bare median in MED
stat() {
  awk -v m="$1" -v f="$2" -v s="$3" -v w="$4" '$1 == m && $2 == f && $3 == s && $4 == w { print $5 }' "$RES" | sort -g |
    awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "-"; exit }
      med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%.1f (%.1f–%.1f) %s\n", med, v[1], v[NR], med }'
}
CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
echo
echo "moge vs llama.cpp, plain decoding: ${CPU:-unknown processor}; moge ${KERNELS:-?} kernels; llama.cpp ${COMMIT:-?} ($BIN/llama-bench);" \
  "$THREADS threads, $N_GEN tokens from an empty cache, median (min–max) of $ROUNDS alternating rounds; llama.cpp: the better of OMP_WAIT_POLICY=${OMP_POLICIES// //} per round"
echo
echo "| model | weights | moge tokens/s | llama.cpp tokens/s | moge / llama.cpp |"
echo "|---|---|---:|---:|---:|"
for m in $MODELS; do
  name=$(basename "$(model_dir "$m")")
  for f in $FORMATS; do
    if [ "$f" = f32 ]; then rows="f32:none"; else rows="q8:q8 w8a8:w8a8"; fi
    read -r l1 l2 lmed < <(stat "$m" "$f" llama.cpp -)
    for v in $VARIANTS; do
      for row in $rows; do
        read -r m1 m2 mmed < <(stat "$m" "$f" moge "${row#*:}@$v")
        if [ "$f" = f32 ]; then label="f32 (both)"; else label="moge ${row%%:*} / llama.cpp Q8_0"; fi
        if [ "$N_VARIANTS" -gt 1 ]; then
          if [ "$v" = best ]; then label="$label, moge $BEST kernels (best)"; else label="$label, moge $v kernels"; fi
        fi
        ratio=$(awk -v a="${mmed:-0}" -v b="${lmed:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.2f×", a / b; else print "-" }')
        echo "| $name | $label | $m1 $m2 | $l1 $l2 | $ratio |"
      done
    done
  done
done
