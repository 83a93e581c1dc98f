#!/usr/bin/python3
"""Expert parallelism benchmark (issue 17): `mpirun -np N build/moge run` on the memory-bound
stand-ins of the demo target (MoGE routing) and of its top-K twin, plain and with tree speculation,
for N = 1, 2, 4; prints a Markdown table of step time and its split (compute vs exchange), the
bytes exchanged per token, each rank's expert bytes and resident memory, the Imbalance Score of
the ranks' real loads, and whether the text equals the single-process run's.

    make standins          # build/standins/tinystories-moge-1.6g
    build/moge pad -m models/tinystories-topk --hidden 1024 --layers 18 --heads 32 \
        --ff-expert 128 --ff-shared 2048 -o build/standins/tinystories-topk-1.6g
    /usr/bin/python3 tools/bench_mpi.py [--ranks 1,2,4] [-n 48] [-t 1]

The top-K stand-in is run with --routing topk (moge pad does not carry the twin's routing key).
"""
import argparse
import json
import os
import subprocess
import sys

PROMPT = "Once upon a time, there was a little robot who"
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def run(bin_, n, model, extra, n_predict, threads, json_path):
    cmd = [bin_, "run", "-m", model, "-n", str(n_predict), "-t", str(threads), "--temp", "0", "-p", PROMPT,
           "--stats-json", json_path] + extra
    if n > 0:
        cmd = ["mpirun", "--oversubscribe", "-np", str(n)] + cmd
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stderr[-2000:]))
    with open(json_path) as f:
        return p.stdout, json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/moge")
    ap.add_argument("--ranks", default="1,2,4")
    ap.add_argument("-n", type=int, default=48)
    ap.add_argument("-t", type=int, default=1)
    ap.add_argument("--standins", default="build/standins")
    ap.add_argument("--routings", default="MoGE,top-K", help="which stand-ins (MoGE, top-K)")
    ap.add_argument("--modes", default="plain,tree")
    a = ap.parse_args()
    models = [("MoGE", a.standins + "/tinystories-moge-1.6g", []),
              ("top-K", a.standins + "/tinystories-topk-1.6g", ["--routing", "topk"])]
    modes = [("plain", []), ("tree", ["-d", "models/tinystories-draft", "--spec", "tree"])]
    print("| routing | mode | ranks | tokens/s | ms/token | per rank: compute / exchange s (max) | exchange share | "
          "MB sent/token (all ranks) | expert MB / resident MB per rank | rank IS | text = 1 process |")
    print("|---|---|---:|---:|---:|---|---:|---:|---|---:|---|")
    for rname, model, rflags in [m for m in models if m[0] in a.routings.split(",")]:
        for mname, mflags in [m for m in modes if m[0] in a.modes.split(",")]:
            alone, _ = run(a.bin, 0, model, rflags + mflags, a.n, a.t, "/tmp/bench_mpi.json")
            for n in [int(x) for x in a.ranks.split(",")]:
                text, j = run(a.bin, n, model, rflags + mflags, a.n, a.t, "/tmp/bench_mpi.json")
                ranks = j["ranks"]
                tokens = max(j["tokens"], 1)
                comp = max(r["compute_seconds"] for r in ranks)
                comm = max(r["comm_seconds"] for r in ranks)
                sent = sum(r["bytes_sent"] for r in ranks) / tokens / 1e6
                ex = ranks[0]["expert_bytes"] / 1e6
                res = max(r["resident_bytes"] for r in ranks) / 1e6
                print("| %s | %s | %d | %.1f | %.0f | %.2f / %.2f | %.0f %% | %.2f | %.0f / %.0f | %.3f | %s |" % (
                    rname, mname, n, j["tokens_per_s"], 1000.0 / j["tokens_per_s"] if j["tokens_per_s"] else 0, comp, comm,
                    100.0 * comm / (comp + comm) if comp + comm > 0 else 0, sent, ex, res, j["rank_imbalance"],
                    "yes" if text == alone else "NO"))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
