/*
 * bench_tokenizer.c — `make bench`: tokenizer load time and single-thread encode throughput,
 * beside the Hugging Face JavaScript reference measured in the same run.
 *
 *  1. Load time of tests/fixtures/tokenizers/qwen3/tokenizer.json (11 MB; median of 3 loads).
 *  2. Text: ../shared/data/tinystories/train.txt when present, else
 *     tests/fixtures/tokenizers/tinystories-valid.txt. The whole text is encoded in one
 *     moge_tokenize call (no special tokens) on one thread, 3 times; MB/s and tokens/s of the
 *     median, for Qwen3, Mistral and the tok512 tokenizer of models/stories260K.
 *  3. When `node` is on PATH and the npm package @huggingface/tokenizers is installed under
 *     $MOGE_HF_TOKENIZERS_JS or /tmp/hftok (nothing is ever downloaded here), tools/tok_bench.mjs
 *     encodes the same text with the same Qwen3 tokenizer.json (median of 3) and the two id
 *     sequences are compared (count, first mismatch). Mistral and tok512 have no pre-tokenizer:
 *     the reference BPE-merges the whole text as one word, which takes it most of a minute on
 *     valid.txt alone (0.03 MB/s), so JS is run for them only with MOGE_TOK_BENCH_JS_ALL=1.
 * Prints a markdown table. Exits non-zero only when moge itself fails.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "moge.h"

#define QWEN3 "tests/fixtures/tokenizers/qwen3/tokenizer.json"
#define MISTRAL "tests/fixtures/tokenizers/mistral/tokenizer.json"
#define TOK512 "models/stories260K/tokenizer.json"
#define TRAIN_TXT "../shared/data/tinystories/train.txt"
#define VALID_TXT "tests/fixtures/tokenizers/tinystories-valid.txt"
#define JS_SCRIPT "tools/tok_bench.mjs"
#define RUNS 3

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[(n - 1) / 2];
}

static bool is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *p = NULL;
    size_t n = 0, cap = 0, r;
    do {
        if (n == cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *q = realloc(p, cap + 1);
            if (!q) {
                free(p);
                fclose(f);
                return NULL;
            }
            p = q;
        }
        r = fread(p + n, 1, cap - n, f);
        n += r;
    } while (r > 0);
    fclose(f);
    p[n] = '\0';
    *len = n;
    return p;
}

/* An executable named `name` on PATH. */
static bool on_path(const char *name) {
    const char *path = getenv("PATH");
    if (!path) return false;
    char buf[4096];
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t l = colon ? (size_t)(colon - path) : strlen(path);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)(l ? l : 1), l ? path : ".", name);
        if (access(buf, X_OK) == 0) return true;
        path += l + (colon ? 1 : 0);
    }
    return false;
}

/* The package's dist/tokenizers.mjs under dir (dir may be the install root or the package). */
static bool find_js_lib(const char *dir, char *out, size_t out_size) {
    static const char *const rel[] = {"node_modules/@huggingface/tokenizers/dist/tokenizers.mjs",
                                      "dist/tokenizers.mjs"};
    for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
        snprintf(out, out_size, "%s/%s", dir, rel[i]);
        if (is_file(out)) return true;
    }
    return false;
}

typedef struct {
    const char *name, *path;
    bool ok;
    double load_s, enc_s;
    int32_t *ids;
    size_t n_ids;
    bool js_run, js_ok;
    double js_load_s, js_enc_s;
    size_t js_n;
    long js_mismatch; /* first differing index, -1 when equal */
} row;

static bool bench_moge(row *r, const char *text, size_t len) {
    char err[512] = "";
    moge_tokenizer *t = NULL;
    double t0 = clock_now();
    moge_status st = moge_tokenizer_load(r->path, &t, err, sizeof err);
    r->load_s = clock_now() - t0;
    if (st != MOGE_OK) {
        fprintf(stderr, "bench_tokenizer: loading %s: %s (%s)\n", r->path, moge_status_str(st), err);
        return false;
    }
    size_t cap = len + 16;
    r->ids = malloc(cap * sizeof *r->ids);
    double times[RUNS];
    for (int k = 0; k < RUNS && r->ids; k++) {
        t0 = clock_now();
        st = moge_tokenize(t, text, len, false, r->ids, cap, &r->n_ids);
        times[k] = clock_now() - t0;
        if (st != MOGE_OK) {
            fprintf(stderr, "bench_tokenizer: %s: moge_tokenize: %s\n", r->name, moge_status_str(st));
            moge_tokenizer_free(t);
            return false;
        }
    }
    moge_tokenizer_free(t);
    if (!r->ids) return false;
    r->enc_s = median(times, RUNS);
    r->ok = true;
    return true;
}

/* Runs tools/tok_bench.mjs and compares its ids with moge's. */
static void bench_js(row *r, const char *lib, const char *text_path) {
    char ids_path[] = "/tmp/moge-tok-bench-XXXXXX";
    int fd = mkstemp(ids_path);
    if (fd < 0) {
        perror("bench_tokenizer: mkstemp");
        return;
    }
    close(fd);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "node '%s' '%s' '%s' '%s' %d '%s'", JS_SCRIPT, lib, r->path, text_path, RUNS,
             ids_path);
    r->js_run = true;
    FILE *p = popen(cmd, "r");
    char line[512] = "";
    bool parsed = false;
    if (p) {
        while (fgets(line, sizeof line, p)) {
            double ls, ms, mb;
            size_t n;
            if (sscanf(line, "load_s=%lf median_s=%lf mb_s=%lf tokens=%zu", &ls, &ms, &mb, &n) == 4) {
                r->js_load_s = ls;
                r->js_enc_s = ms;
                r->js_n = n;
                parsed = true;
            }
        }
        int rc = pclose(p);
        if (rc != 0) parsed = false;
    }
    if (!parsed) {
        fprintf(stderr, "bench_tokenizer: %s: `%s` failed\n", r->name, cmd);
        unlink(ids_path);
        return;
    }
    size_t blen = 0;
    char *b = slurp(ids_path, &blen);
    unlink(ids_path);
    if (!b) return;
    size_t n = blen / 4, common = n < r->n_ids ? n : r->n_ids;
    r->js_mismatch = -1;
    for (size_t i = 0; i < common; i++) {
        int32_t v;
        memcpy(&v, b + 4 * i, 4);
        if (v != r->ids[i]) {
            r->js_mismatch = (long)i;
            break;
        }
    }
    if (r->js_mismatch < 0 && n != r->n_ids) r->js_mismatch = (long)common;
    r->js_n = n;
    r->js_ok = true;
    free(b);
}

int main(void) {
    bool have_train = is_file(TRAIN_TXT);
    const char *text_path = have_train ? TRAIN_TXT : VALID_TXT;
    size_t len = 0;
    char *text = slurp(text_path, &len);
    if (!text) {
        fprintf(stderr, "bench_tokenizer: cannot read %s\n", text_path);
        return 1;
    }
    printf("## Tokenizer: load time and encode throughput (single thread)\n\n");
    printf("Text: %s (%.2f MB)%s; the whole text in one call, median of %d runs.\n\n", text_path, (double)len / 1e6,
           have_train ? "" : " — " TRAIN_TXT " not found", RUNS);

    /* Load time of the 11 MB Qwen3 tokenizer.json. */
    double loads[RUNS];
    for (int k = 0; k < RUNS; k++) {
        char err[512] = "";
        moge_tokenizer *t = NULL;
        double t0 = clock_now();
        moge_status st = moge_tokenizer_load(QWEN3, &t, err, sizeof err);
        loads[k] = clock_now() - t0;
        if (st != MOGE_OK) {
            fprintf(stderr, "bench_tokenizer: loading %s: %s (%s)\n", QWEN3, moge_status_str(st), err);
            free(text);
            return 1;
        }
        moge_tokenizer_free(t);
    }
    double load_med = median(loads, RUNS);
    printf("Qwen3 tokenizer.json load: %.3f s (median of %d; target < 0.5 s: %s)\n\n", load_med, RUNS,
           load_med < 0.5 ? "met" : "NOT met");

    row rows[] = {{.name = "Qwen3", .path = QWEN3}, {.name = "Mistral", .path = MISTRAL},
                  {.name = "tok512 (stories260K)", .path = TOK512}};
    const size_t n_rows = sizeof rows / sizeof *rows;
    int fail = 0;
    for (size_t i = 0; i < n_rows; i++)
        if (!bench_moge(&rows[i], text, len)) fail = 1;

    /* The JavaScript reference. */
    const char *js_dir = getenv("MOGE_HF_TOKENIZERS_JS");
    if (!js_dir || !*js_dir) js_dir = "/tmp/hftok";
    char lib[4096];
    bool have_node = on_path("node"), have_lib = find_js_lib(js_dir, lib, sizeof lib);
    bool js_all = getenv("MOGE_TOK_BENCH_JS_ALL") && strcmp(getenv("MOGE_TOK_BENCH_JS_ALL"), "0") != 0;
    const char *js_note = NULL;
    if (!have_node) js_note = "JavaScript reference: skipped (`node` is not on PATH).";
    else if (!have_lib)
        js_note = "JavaScript reference: skipped (@huggingface/tokenizers not found under $MOGE_HF_TOKENIZERS_JS "
                  "or /tmp/hftok). Install it once, outside the repository:\n"
                  "    mkdir -p /tmp/hftok && cd /tmp/hftok && npm init -y && npm install --ignore-scripts "
                  "@huggingface/tokenizers";
    else if (!is_file(JS_SCRIPT)) js_note = "JavaScript reference: skipped (" JS_SCRIPT " not found).";
    else {
        for (size_t i = 0; i < n_rows; i++)
            if (rows[i].ok && (i == 0 || js_all)) bench_js(&rows[i], lib, text_path);
    }

    printf("| tokenizer | load s | encode MB/s | M tokens/s | tokens | JS load s | JS MB/s | moge / JS | ids agree |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (size_t i = 0; i < n_rows; i++) {
        row *r = &rows[i];
        if (!r->ok) {
            printf("| %s | failed | | | | | | | |\n", r->name);
            continue;
        }
        double mbs = (double)len / 1e6 / r->enc_s, tps = (double)r->n_ids / r->enc_s;
        printf("| %s | %.3f | %.1f | %.2f | %zu |", r->name, r->load_s, mbs, tps / 1e6, r->n_ids);
        if (r->js_ok) {
            double jmbs = (double)len / 1e6 / r->js_enc_s;
            char agree[96];
            if (r->js_mismatch < 0) snprintf(agree, sizeof agree, "yes (%zu ids)", r->n_ids);
            else snprintf(agree, sizeof agree, "NO: first difference at id %ld (JS: %zu ids)", r->js_mismatch, r->js_n);
            printf(" %.3f | %.2f | %.0fx | %s |\n", r->js_load_s, jmbs, mbs / jmbs, agree);
        } else if (r->js_run) {
            printf(" | failed | | |\n");
        } else {
            printf(" | — | | |\n");
        }
    }
    if (js_note) printf("\n%s\n", js_note);
    else {
        printf("\nJS: @huggingface/tokenizers via node (%s), same text, one call, median of %d.", lib, RUNS);
        if (!js_all) printf(" Mistral/tok512 have no pre-tokenizer: the reference BPE-merges the whole text as one "
                            "word (about 0.03 MB/s), so they run only with MOGE_TOK_BENCH_JS_ALL=1.");
        printf("\n");
    }
    for (size_t i = 0; i < n_rows; i++) free(rows[i].ids);
    free(text);
    return fail;
}
