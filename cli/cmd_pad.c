/*
 * cmd_pad.c — `moge pad -m SRC -o OUT [--hidden N] [--layers N] [--heads N] [--ff N] [--ff-expert N]
 * [--ff-shared N] [--seed S] [--force]`: write a memory-bound stand-in of a trained model, wider and
 * deeper, that computes the same function (moge_pad_model; the construction in runtime/pad.c).
 * Progress on stderr once it takes half a second (a redrawn line on a terminal, otherwise a line
 * per tenth of the bytes), the sizes on stdout. Exit status: 0 written, 1 failed (nothing written),
 * 2 bad usage or sizes.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "moge.h"
#include "moge_hub.h"

static void usage(FILE *f) {
    fputs("usage: moge pad -m SRC -o OUT [--hidden N] [--layers N] [--heads N] [--ff N] [--ff-expert N]\n"
          "                [--ff-shared N] [--seed S] [--force]\n"
          "\n"
          "Writes a stand-in of a trained model: wider and deeper, with the same logits (up to float\n"
          "rounding) and the same greedy text, at the memory cost of its own size, to measure\n"
          "memory-bound decoding with a real model's text. The added dims, heads, units and layers come\n"
          "after the real ones; whatever would write from them into the real outputs is zero, every\n"
          "other added weight random. Output: one F32 model.safetensors, config.json, the tokenizer\n"
          "and licence files, and a README.md naming the source.\n"
          "\n"
          "  -m, --model DIR   the trained model (F32, F16 or BF16; Llama, Mistral, Qwen2, Qwen3, Pangu MoGE,\n"
          "                    Mixtral, Qwen2-MoE, Qwen3-MoE; a directory or a pulled OWNER/NAME)\n"
          "  -o, --out DIR     the directory to write; it must not exist or be empty\n"
          "  --hidden N        hidden size (the architectures that derive head_dim from it, Pangu and\n"
          "                    Qwen2, need N = heads x head_dim)\n"
          "  --layers N        layers: the real ones spread evenly, inserted ones between them\n"
          "  --heads N         query heads, a multiple of the source's query / key-value head ratio;\n"
          "                    key/value heads follow that ratio, head_dim is kept\n"
          "  --ff N            MLP width of a dense model\n"
          "  --ff-expert N     width of each routed expert (MoE)\n"
          "  --ff-shared N     width of the shared expert (a MoE model that has one)\n"
          "                    (each size defaults to the source's; none may be smaller)\n"
          "  --seed S          seed of the random weights (default 0)\n"
          "  --force           replace OUT even when it holds files\n"
          "\n"
          "The output is written into a temporary directory next to OUT and renamed at the end.\n",
          f);
}

typedef struct {
    bool tty;
    int tenth;   /* tenths reported so far (no terminal) */
    int width;   /* length of the last drawn line (terminal) */
    double t0, t_draw;
    const char *out;
} progress_state;

static void on_progress(double done, void *user) {
    progress_state *ps = user;
    int pct = (int)(100.0 * done);
    double t = clock_now();
    if (t - ps->t0 < 0.5) return; /* a small model: no progress */
    if (ps->tty) {
        if (done < 1.0 && t - ps->t_draw < 0.1) return;
        ps->t_draw = t;
        fprintf(stderr, "\r%*s\r", ps->width, "");
        ps->width = fprintf(stderr, "moge pad: writing %.200s: %3d %% (%.1f s)", ps->out, pct, t - ps->t0);
        fflush(stderr);
        return;
    }
    if (pct / 10 > ps->tenth) {
        ps->tenth = pct / 10;
        fprintf(stderr, "moge pad: %3d %%\n", pct);
    }
}

/* One line of a model's sizes. */
static void describe(const char *label, const moge_model_info *i, int64_t bytes, const char *what) {
    printf("  %-9s%s: hidden %d, %d layers, %d / %d heads of %d", label, i->architecture, i->n_embd, i->n_layer, i->n_head, i->n_head_kv,
           i->head_dim);
    if (i->n_expert) {
        printf(", %d experts of width %d", i->n_expert, i->n_ff_expert);
        if (i->n_ff_shared) printf(", shared expert %d", i->n_ff_shared);
    } else {
        printf(", MLP %d", i->n_ff);
    }
    printf("; %.2f M parameters, %.2f MB %s\n", i->n_params / 1e6, bytes / 1e6, what);
}

/* Loads dir with the ref backend (the weights stay mapped: cheap) for its sizes; info's strings
 * belong to the model, so its architecture is copied into arch. */
static bool model_info(const char *dir, moge_model_info *info, char *arch, size_t cap, char *err, size_t n) {
    moge_model_params mp = moge_model_default_params();
    mp.backend = MOGE_BACKEND_REF;
    mp.n_threads = 1;
    moge_model *m = NULL;
    if (moge_model_load(dir, &mp, &m, err, n) != MOGE_OK) return false;
    moge_model_get_info(m, info);
    snprintf(arch, cap, "%s", info->architecture);
    moge_model_free(m);
    info->architecture = arch;
    info->backend = info->dtype = info->routing = info->quant = NULL;
    return true;
}

int cmd_pad(int argc, char **argv) {
    static const char *C = "pad";
    const char *in = NULL, *out = NULL;
    moge_pad_params p = moge_pad_default_params();
    const cli_flag flags[] = {
        {"-m", "--model", CLI_ARG_STR, &in, 0, 0},
        {"-o", "--out", CLI_ARG_STR, &out, 0, 0},
        {NULL, "--hidden", CLI_ARG_I32, &p.hidden, 1, 1 << 20},
        {NULL, "--layers", CLI_ARG_I32, &p.layers, 1, 1 << 20},
        {NULL, "--heads", CLI_ARG_I32, &p.heads, 1, 1 << 20},
        {NULL, "--ff", CLI_ARG_I32, &p.ff, 1, 1 << 20},
        {NULL, "--ff-expert", CLI_ARG_I32, &p.ff_expert, 1, 1 << 20},
        {NULL, "--ff-shared", CLI_ARG_I32, &p.ff_shared, 1, 1 << 20},
        {NULL, "--seed", CLI_ARG_U64, &p.seed, 0, 0},
        {NULL, "--force", CLI_ARG_SWITCH, &p.overwrite, 0, 0},
    };
    const char *pos[1];
    int n_pos, rc = cli_parse_flags(C, flags, (int)(sizeof flags / sizeof flags[0]), argc, argv, pos, 0, &n_pos, usage);
    if (rc >= 0) return rc;
    if (!in || !out) {
        fprintf(stderr, "moge pad: %s is required (moge pad -m SRC -o OUT [--hidden N] [--layers N] ...)\n", !in ? "-m SRC" : "-o OUT");
        return 2;
    }
    char dir[4096], err[2048];
    if (moge_resolve_model(in, dir, sizeof dir, err, sizeof err) != MOGE_OK) {
        fprintf(stderr, "moge pad: -m %s: %s\n", in, err);
        return 1;
    }
    progress_state ps = {.tty = isatty(2) == 1, .out = out};
    p.progress = on_progress;
    p.progress_user = &ps;
    double t0 = ps.t0 = clock_now();
    moge_status st = moge_pad_model(dir, out, &p, err, sizeof err);
    if (ps.tty && ps.width) fprintf(stderr, "\r%*s\r", ps.width, "");
    if (st != MOGE_OK) {
        fprintf(stderr, "moge pad: %s\n", err[0] ? err : moge_status_str(st));
        return st == MOGE_ERR_ARG ? 2 : 1;
    }
    double secs = clock_now() - t0;
    moge_model_info si, oi;
    char sarch[64], oarch[64];
    if (!model_info(dir, &si, sarch, sizeof sarch, err, sizeof err) || !model_info(out, &oi, oarch, sizeof oarch, err, sizeof err)) {
        fprintf(stderr, "moge pad: wrote %s, but cannot read it back: %s\n", out, err);
        return 1;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    struct stat sbuf;
    int64_t file = stat(path, &sbuf) == 0 ? (int64_t)sbuf.st_size : oi.weight_bytes;
    printf("wrote %s in %.1f s (%.0f MB/s)\n", out, secs, secs > 0 ? file / 1e6 / secs : 0.0);
    describe("source", &si, si.weight_bytes, "of weights");
    describe("stand-in", &oi, file, "model.safetensors (F32)");
    printf("  seed     %llu\n", (unsigned long long)p.seed);
    printf("  run it   moge run -m %s\n", out);
    return 0;
}
