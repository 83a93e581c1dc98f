/*
 * cmd_quantize.c — `moge quantize -m IN -o OUT --quant q8|q4|w8a8|w4a8`: write a pre-quantized copy of a
 * model directory (moge_quantize_model; format in runtime/quant_file.c). Progress on stderr (a
 * redrawn line on a terminal, otherwise a line per tenth of the bytes), the sizes on stdout.
 * Exit status: 0 written, 1 failed (nothing written), 2 bad usage.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "moge.h"
#include "moge_hub.h"

static void usage(FILE *f) {
    fputs("usage: moge quantize -m IN_DIR -o OUT_DIR --quant q8|q4|w8a8|w4a8 [--force] [--row-major]\n"
          "\n"
          "Writes a pre-quantized copy of a model: config.json, one model.safetensors whose weight\n"
          "matrices are stored as Q8 or Q4 blocks in the cpu backend's panel layout, and the tokenizer,\n"
          "generation config, LICENSE and README files. It loads with no quantization pass and no copy\n"
          "(the blocks are mmapped and used in place) and gives exactly the logits of\n"
          "`moge run -m IN_DIR --quant q8|q4|w8a8|w4a8`.\n"
          "\n"
          "  -m, --model DIR   the model to quantize (F32, F16 or BF16; a directory or a pulled OWNER/NAME)\n"
          "  -o, --out DIR     the directory to write; it must not exist or be empty\n"
          "  --quant FORMAT    q8: int8, 1.125 bytes per weight; q4: 4-bit, 0.625 bytes per weight;\n"
          "                    w8a8 / w4a8: q8's / q4's weights, multiplied with int8 activations\n"
          "  --force           replace OUT_DIR even when it holds files\n"
          "  --row-major       the first version of the format (row-major blocks), for moge builds that\n"
          "                    predate the panel layout; the cpu backend copies it into panels at load\n"
          "\n"
          "The output is written into a temporary directory next to OUT_DIR and renamed at the end.\n",
          f);
}

typedef struct {
    bool tty;
    int tenth;   /* tenths of the bytes reported so far (no terminal) */
    int width;   /* length of the last drawn line (terminal) */
    double t_draw;
} progress_state;

static void on_progress(const char *tensor, int32_t index, int32_t count, int64_t done, int64_t total, void *user) {
    progress_state *ps = user;
    int pct = total > 0 ? (int)(100.0 * done / total) : 100;
    if (ps->tty) {
        double t = clock_now();
        if (index < count && t - ps->t_draw < 0.1) return;
        ps->t_draw = t;
        fprintf(stderr, "\r%*s\r", ps->width, "");
        ps->width = fprintf(stderr, "  [%5d/%d] %3d%%  %.60s", index, count, pct, tensor);
        fflush(stderr);
        return;
    }
    if (pct / 10 > ps->tenth || index == count) {
        ps->tenth = pct / 10;
        fprintf(stderr, "  [%5d/%d] %3d%%  %s\n", index, count, pct, tensor);
    }
}

int cmd_quantize(int argc, char **argv) {
    static const char *C = "quantize";
    const char *in = NULL, *out = NULL, *q = NULL;
    moge_quantize_params p = moge_quantize_default_params();
    const cli_flag flags[] = {{"-m", "--model", CLI_ARG_STR, &in, 0, 0},      {"-o", "--out", CLI_ARG_STR, &out, 0, 0},
                              {NULL, "--quant", CLI_ARG_STR, &q, 0, 0},        {NULL, "--force", CLI_ARG_SWITCH, &p.overwrite, 0, 0},
                              {NULL, "--row-major", CLI_ARG_SWITCH, &p.row_major, 0, 0}};
    const char *pos[1];
    int n_pos, rc = cli_parse_flags(C, flags, (int)(sizeof flags / sizeof flags[0]), argc, argv, pos, 0, &n_pos, usage);
    if (rc >= 0) return rc;
    if (!in || !out || !q) {
        fprintf(stderr, "moge quantize: %s is required (moge quantize -m IN_DIR -o OUT_DIR --quant q8|q4|w8a8|w4a8)\n",
                !in ? "-m IN_DIR" : !out ? "-o OUT_DIR" : "--quant q8|q4|w8a8|w4a8");
        return 2;
    }
    if (moge_quant_parse(q, &p.quant) != MOGE_OK || p.quant == MOGE_QUANT_NONE) {
        fprintf(stderr, "moge quantize: --quant: expected q8, q4, w8a8 or w4a8, got \"%s\"\n", q);
        return 2;
    }
    char dir[4096], err[2048];
    if (moge_resolve_model(in, dir, sizeof dir, err, sizeof err) != MOGE_OK) {
        fprintf(stderr, "moge quantize: %s\n", err);
        return 1;
    }
    progress_state ps = {.tty = isatty(2) == 1, .tenth = 0};
    p.progress = on_progress;
    p.progress_user = &ps;
    moge_quantize_stats s;
    double t0 = clock_now();
    moge_status st = moge_quantize_model(dir, out, &p, &s, err, sizeof err);
    if (ps.tty && ps.width) fprintf(stderr, "\r%*s\r", ps.width, "");
    if (st != MOGE_OK) {
        fprintf(stderr, "moge quantize: %s\n", err[0] ? err : moge_status_str(st));
        return st == MOGE_ERR_ARG ? 2 : 1;
    }
    printf("wrote %s (%s) in %.2f s\n", out, q, clock_now() - t0);
    printf("  weights  %.2f MB -> %.2f MB model.safetensors (%.3f of the input)\n", s.in_bytes / 1e6, s.out_bytes / 1e6,
           s.in_bytes ? (double)s.out_bytes / s.in_bytes : 0.0);
    printf("  tensors  %d quantized, %d copied unchanged; %d other files copied\n", s.n_quantized, s.n_copied, s.n_files);
    printf("  run it   moge run -m %s\n", out);
    return 0;
}
