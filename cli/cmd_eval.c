/*
 * cmd_eval.c — `moge eval`: the validation loss of a model on a text file, and for MoE models the
 * expert load, measured by the runtime.
 *
 * Contract (the same numbers as tools/train/evaluate.py, which follows train.py):
 *  - The file is read as UTF-8 with universal newlines (CR LF and CR become LF, as Python's text
 *    mode does) and split into documents at lines equal to --doc-sep (default <|endoftext|>);
 *    each document is stripped of leading and trailing white space (Python's str.strip()) and,
 *    when not empty, becomes BOS, its tokens (moge_tokenize without special tokens), EOS. The
 *    stream is their concatenation; --no-eos drops every EOS id from it (evaluate.py --no-eos),
 *    --no-bos leaves BOS out. BOS and EOS are the tokenizer's ids.
 *  - Windows: the stream holds (len - 1) / W windows of W + 1 tokens at stride W (W = --window,
 *    default 256); --windows N scores N of them at floor(i * (total - 1) / (N - 1)) (numpy's
 *    linspace(0, total - 1, N).astype(int)), all of them when N is 0 or >= total.
 *  - Each window is one moge_forward of its first W tokens from an empty KV cache, with the logits
 *    of every row; row i predicts token i + 1. Loss = the mean over the scored predictions of
 *    -log softmax(logits)[target], in nats, computed in double; --skip-boundaries leaves out the
 *    predictions whose target is BOS or EOS. Perplexity = exp(loss).
 *  - MoE models: the load over those forwards (one forward = one window = one batch), from the
 *    runtime's statistics (moge_moe_stats_get totals, reset before the first window): per MoE
 *    layer the mean and largest Imbalance Score, the token-expert pairs each device computed and
 *    the rows routed to each expert. Without --devices every expert group is a device of its own,
 *    so models with the same group count are measured on the same placement whatever the threads.
 *  - stdout: the result (loss, perplexity, predictions, windows, seconds; the MoE table). stderr:
 *    progress (windows done / total, tokens/s), a line every few seconds, or one line redrawn when
 *    stderr is a terminal. --json FILE: everything, arrays included, written to FILE.PID.tmp and
 *    renamed; FILE must be writable before any work starts ("-": stdout).
 *  - Ctrl-C stops after the window being computed: the result of the windows done is printed and
 *    written marked partial, and the exit status is 130. A second Ctrl-C ends the process at once
 *    (never with a half-written --json).
 *  - Exit 0; 2 for usage errors (the message names the flag); 1 for failures (the message names
 *    the file, model or flag).
 */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "moge.h"

#define CMD "eval"

typedef struct {
    cli_common_opts c;
    const char *file, *doc_sep, *json;
    int32_t window;     /* predictions per window */
    int32_t n_windows;  /* 0 = all */
    bool no_eos, no_bos, skip_boundaries;
} eval_opts;

static void usage(FILE *f) {
    fputs("usage: moge eval -m DIR -f FILE [options]\n"
          "\n"
          "Scores the model on FILE the way tools/train/train.py validates: documents separated by\n"
          "lines equal to --doc-sep, each encoded as <s> document </s>, concatenated; consecutive\n"
          "windows of --window predictions, each one forward from an empty cache. Prints the loss\n"
          "in nats per token and the perplexity; for MoE models also the expert load per layer\n"
          "(Imbalance Score, pairs per device, hits per expert). Ctrl-C prints a partial result.\n"
          "\n",
          f);
    cli_common_usage(f, &(cli_common_opts){.cmd = CMD, .who = CLI_EVAL},
                     "  -f, --file FILE        the text to score (required)\n"
                     "      --doc-sep STR      the line that separates documents (default <|endoftext|>)\n"
                     "      --window N         predictions per window; windows are N + 1 tokens at stride N\n"
                     "                         (default 256)\n"
                     "      --windows N        score N windows spread evenly over the file (default 0 = all)\n"
                     "      --no-eos           no </s> after the documents (llama2.c's format)\n"
                     "      --no-bos           no <s> before the documents\n"
                     "      --skip-boundaries  leave out the predictions of <s> and </s>\n"
                     "      --tokenizer PATH   tokenizer.json (or its directory) to use instead of the model's\n"
                     "      --json FILE        write the result as JSON (- for stdout)\n");
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, eval_opts *o) {
    cli_common_init(&o->c, CMD, CLI_EVAL);
    o->c.devices_per_group = true;
    o->doc_sep = "<|endoftext|>";
    o->window = 256;
    const cli_flag flags[] = {
        {"-f", "--file", CLI_ARG_STR, &o->file, 0, 0},
        {NULL, "--doc-sep", CLI_ARG_STR, &o->doc_sep, 0, 0},
        {NULL, "--json", CLI_ARG_STR, &o->json, 0, 0},
        {NULL, "--tokenizer", CLI_ARG_STR, &o->c.tokenizer, 0, 0},
        {NULL, "--window", CLI_ARG_I32, &o->window, 1, 1L << 20},
        {NULL, "--windows", CLI_ARG_I32, &o->n_windows, 0, 1L << 30},
        {NULL, "--no-eos", CLI_ARG_SWITCH, &o->no_eos, 0, 0},
        {NULL, "--no-bos", CLI_ARG_SWITCH, &o->no_bos, 0, 0},
        {NULL, "--skip-boundaries", CLI_ARG_SWITCH, &o->skip_boundaries, 0, 0},
    };
    int rc = cli_parse_flags_common(&o->c, flags, (int)(sizeof flags / sizeof flags[0]), argc, argv, usage);
    if (rc >= 0) return rc;
    if (strchr(o->doc_sep, '\n') || strchr(o->doc_sep, '\r')) {
        fprintf(stderr, "moge eval: --doc-sep: a line cannot hold a line break\n");
        return 2;
    }
    if (!o->c.model) {
        fprintf(stderr, "moge eval: -m DIR is required (e.g. moge eval -m models/stories260K -f valid.txt)\n");
        return 2;
    }
    if (!o->file) {
        fprintf(stderr, "moge eval: -f FILE is required: the text to score\n");
        return 2;
    }
    if (o->json && !cli_check_output(CMD, "--json", o->json)) return 2;
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* The token stream                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* The file's bytes with CR LF and lone CR turned into LF (Python's universal newlines), checked
 * to be UTF-8. NULL after printing an error that names the file. */
static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "moge eval: -f %s: cannot open: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0, got;
    char *s = malloc(cap);
    while (s && (got = fread(s + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *bigger = realloc(s, cap *= 2);
            if (!bigger) { free(s); s = NULL; }
            else s = bigger;
        }
    }
    int e = errno;
    bool bad = !s || ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "moge eval: -f %s: cannot read: %s\n", path, s ? strerror(e) : "out of memory");
        free(s);
        return NULL;
    }
    size_t w = 0;
    for (size_t r = 0; r < n; r++) {
        if (s[r] == '\r') {
            s[w++] = '\n';
            if (r + 1 < n && s[r + 1] == '\n') r++;
        } else s[w++] = s[r];
    }
    s[w] = 0; /* n < cap: the loop above leaves room */
    for (size_t i = 0; i < w;) {
        const unsigned char *p = (const unsigned char *)s + i;
        int k = p[0] < 0x80 ? 1 : (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3 : (p[0] & 0xF8) == 0xF0 ? 4 : 0;
        bool ok = k > 0 && i + (size_t)k <= w;
        for (int j = 1; ok && j < k; j++) ok = (p[j] & 0xC0) == 0x80;
        if (ok && k == 2) ok = p[0] >= 0xC2;                                             /* overlong */
        if (ok && k == 3) ok = !(p[0] == 0xE0 && p[1] < 0xA0) && !(p[0] == 0xED && p[1] >= 0xA0); /* overlong, surrogate */
        if (ok && k == 4) ok = !(p[0] == 0xF0 && p[1] < 0x90) && !(p[0] == 0xF4 && p[1] >= 0x90) && p[0] <= 0xF4;
        if (!ok) {
            fprintf(stderr, "moge eval: -f %s: not UTF-8 (byte %zu, after newline conversion, is 0x%02x)\n", path, i, p[0]);
            free(s);
            return NULL;
        }
        i += (size_t)k;
    }
    *len = w;
    return s;
}

/* The length of the white-space character (str.isspace() in Python) that ends at s + n, or 0. */
static int space_before(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    if (n >= 1 && ((p[n - 1] >= 0x09 && p[n - 1] <= 0x0D) || (p[n - 1] >= 0x1C && p[n - 1] <= 0x20))) return 1;
    if (n >= 2 && p[n - 2] == 0xC2 && (p[n - 1] == 0x85 || p[n - 1] == 0xA0)) return 2;
    if (n >= 3) {
        unsigned c = (unsigned)(p[n - 3] & 0x0F) << 12 | (unsigned)(p[n - 2] & 0x3F) << 6 | (p[n - 1] & 0x3F);
        if ((p[n - 3] & 0xF0) == 0xE0 && (c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
                                          c == 0x202F || c == 0x205F || c == 0x3000))
            return 3;
    }
    return 0;
}

/* The same for the character that starts at s (n bytes left; valid UTF-8). */
static int space_at(const char *s, size_t n) {
    unsigned char c = (unsigned char)s[0];
    size_t k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    return k <= n && space_before(s, k) == (int)k ? (int)k : 0;
}

typedef struct {
    int32_t *ids;
    size_t n, cap;
    int64_t documents;
} stream;

static bool stream_put(stream *s, int32_t id) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 4096;
        int32_t *ids = realloc(s->ids, cap * sizeof *ids);
        if (!ids) return false;
        s->ids = ids;
        s->cap = cap;
    }
    s->ids[s->n++] = id;
    return true;
}

/* Appends BOS, the tokens of text[0..len) stripped, EOS (as o says); nothing for an empty body. */
static moge_status add_document(stream *s, const moge_tokenizer *tok, const eval_opts *o, const char *text, size_t len) {
    int k;
    while (len > 0 && (k = space_at(text, len)) > 0) { text += k; len -= (size_t)k; }
    while (len > 0 && (k = space_before(text, len)) > 0) len -= (size_t)k;
    if (len == 0) return MOGE_OK;
    s->documents++;
    if (!o->no_bos && !stream_put(s, moge_tokenizer_bos(tok))) return MOGE_ERR_NOMEM;
    size_t n = 0;
    moge_status st = moge_tokenize(tok, text, len, false, s->ids + s->n, s->cap - s->n, &n);
    if (st == MOGE_ERR_BUFFER) {
        size_t cap = s->n + n + (s->cap > n ? s->cap : n);
        int32_t *ids = realloc(s->ids, cap * sizeof *ids);
        if (!ids) return MOGE_ERR_NOMEM;
        s->ids = ids;
        s->cap = cap;
        st = moge_tokenize(tok, text, len, false, s->ids + s->n, s->cap - s->n, &n);
    }
    if (st != MOGE_OK) return st;
    s->n += n;
    if (!stream_put(s, moge_tokenizer_eos(tok))) return MOGE_ERR_NOMEM;
    return MOGE_OK;
}

/* The stream of text (tools/train/train.py's tokenize_file), EOS ids dropped with --no-eos. */
static moge_status build_stream(const moge_tokenizer *tok, const eval_opts *o, const char *text, size_t len, stream *s) {
    size_t sep_len = strlen(o->doc_sep), doc = 0;
    moge_status st = MOGE_OK;
    for (size_t line = 0; line <= len && st == MOGE_OK && !cli_interrupted;) {
        const char *nl = memchr(text + line, '\n', len - line);
        size_t end = nl ? (size_t)(nl - text) : len;
        if (end - line == sep_len && !memcmp(text + line, o->doc_sep, sep_len)) {
            st = add_document(s, tok, o, text + doc, line > doc ? line - 1 - doc : 0); /* without the LF before the separator */
            doc = end + 1;
        }
        line = end + 1;
    }
    if (st == MOGE_OK && doc < len && !cli_interrupted) st = add_document(s, tok, o, text + doc, len - doc);
    if (st == MOGE_OK && o->no_eos) {
        int32_t eos = moge_tokenizer_eos(tok);
        size_t w = 0;
        for (size_t i = 0; i < s->n; i++)
            if (s->ids[i] != eos) s->ids[w++] = s->ids[i];
        s->n = w;
    }
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Scoring                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* -log softmax(logits)[target] in double. */
static double row_nll(const float *logits, int32_t n_vocab, int32_t target) {
    double mx = logits[0], sum = 0;
    for (int32_t v = 1; v < n_vocab; v++) mx = logits[v] > mx ? logits[v] : mx;
    for (int32_t v = 0; v < n_vocab; v++) sum += exp((double)logits[v] - mx);
    return mx + log(sum) - (double)logits[target];
}

typedef struct {
    int64_t total, n_picks, done; /* windows in the stream, chosen, scored */
    int64_t *picks;
    double nll;                   /* summed */
    int64_t predictions;
    double seconds;
} score;

static void progress(const score *r, int32_t window, double t0, bool tty, bool last) {
    double dt = clock_now() - t0;
    fprintf(stderr, "%smoge eval: window %lld/%lld, %.0f tokens/s, loss so far %.4f%s", tty ? "\r\033[K" : "", (long long)r->done,
            (long long)r->n_picks, dt > 0 ? (double)r->done * window / dt : 0.0, r->predictions ? r->nll / r->predictions : 0.0,
            tty && !last ? "" : "\n");
}

/* Scores the chosen windows; stops early at Ctrl-C. False after printing an error. */
static bool run_windows(moge_context *ctx, const eval_opts *o, const stream *s, int32_t n_vocab, int32_t bos, int32_t eos, score *r) {
    bool tty = isatty(STDERR_FILENO);
    double t0 = clock_now(), shown = t0;
    moge_moe_stats_reset(ctx);
    for (; r->done < r->n_picks && !cli_interrupted; r->done++) {
        const int32_t *w = s->ids + r->picks[r->done] * o->window;
        const float *logits;
        moge_kv_truncate(ctx, 0);
        moge_batch b = {.n = o->window, .tokens = w};
        if (moge_forward(ctx, &b, &logits) != MOGE_OK) {
            fprintf(stderr, "moge eval: window %lld: %s\n", (long long)r->picks[r->done], moge_context_error(ctx));
            return false;
        }
        for (int32_t i = 0; i < o->window; i++) {
            int32_t t = w[i + 1];
            if (o->skip_boundaries && (t == bos || t == eos)) continue;
            r->nll += row_nll(logits + (int64_t)i * n_vocab, n_vocab, t);
            r->predictions++;
        }
        double t = clock_now();
        if (t - shown >= (tty ? 0.2 : 5.0)) {
            progress(r, o->window, t0, tty, false);
            shown = t;
        }
    }
    r->seconds = clock_now() - t0;
    if (r->done > 0) progress(r, o->window, t0, tty, true);
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* The result                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static void print_result(const eval_opts *o, const cli_models *m, const stream *s, const score *r) {
    bool partial = r->done < r->n_picks;
    double loss = r->predictions ? r->nll / r->predictions : NAN;
    printf("moge eval: %s on %s%s\n", o->c.model, o->file, partial ? " -- PARTIAL (interrupted)" : "");
    printf("  stream      %lld documents, %zu tokens (%s document%s)\n", (long long)s->documents, s->n, o->no_bos ? "" : "<s>",
           o->no_eos ? "" : " </s>");
    if (partial)
        printf("  windows     %lld of the %lld chosen (of %lld; %d predictions each)\n", (long long)r->done, (long long)r->n_picks,
               (long long)r->total, (int)o->window);
    else
        printf("  windows     %lld (of %lld; %d predictions each)\n", (long long)r->done, (long long)r->total, (int)o->window);
    printf("  loss        %.6f nats/token%s\n", loss, o->skip_boundaries ? " (predictions of <s> and </s> left out)" : "");
    printf("  perplexity  %.4f\n", exp(loss));
    printf("  predictions %lld\n", (long long)r->predictions);
    char where[256];
    cli_backend_desc(&m->info, where, sizeof where);
    printf("  time        %.2f s (%.0f tokens/s; %s, %s, %s weights)\n", r->seconds,
           r->seconds > 0 ? (double)r->done * o->window / r->seconds : 0.0, m->info.architecture, where, strcmp(m->info.quant, "none") ? m->info.quant : m->info.dtype);
    int32_t L = moge_context_n_moe_layers(m->ctx);
    for (int32_t l = 0; l < L; l++) {
        moge_moe_stats ms;
        if (moge_moe_stats_get(m->ctx, l, true, &ms) != MOGE_OK) continue;
        if (l == 0) {
            printf("MoE load: %s routing, %d experts in %d groups, k %d; %d devices (whole groups each); %lld forwards of %d rows\n",
                   m->info.routing, ms.n_experts, (int)m->info.n_group, (int)m->info.n_expert_used, ms.n_devices,
                   (long long)ms.n_forwards, (int)o->window);
            printf("  layer  IS mean  IS max  expert share min    max  (uniform %.2f %%)\n", 100.0 / ms.n_experts);
        }
        int64_t lo = ms.expert_hits[0], hi = lo, pairs = 0;
        for (int e = 0; e < ms.n_experts; e++) {
            lo = ms.expert_hits[e] < lo ? ms.expert_hits[e] : lo;
            hi = ms.expert_hits[e] > hi ? ms.expert_hits[e] : hi;
            pairs += ms.expert_hits[e];
        }
        double den = pairs > 0 ? (double)pairs / 100.0 : 1.0;
        printf("  %5d  %7.4f  %6.4f  %14.2f %% %6.2f %%\n", (int)l, ms.imbalance, ms.imbalance_max, (double)lo / den, (double)hi / den);
    }
}

static cJSON *int_array(const int64_t *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

static bool write_json(const eval_opts *o, const cli_models *m, const stream *s, const score *r) {
    cJSON *root = cJSON_CreateObject();
    double loss = r->predictions ? r->nll / r->predictions : 0;
    cJSON_AddStringToObject(root, "model", o->c.model);
    cJSON_AddStringToObject(root, "file", o->file);
    cJSON_AddStringToObject(root, "architecture", m->info.architecture);
    cli_json_backend(root, &m->info);
    cJSON_AddStringToObject(root, "quant", m->info.quant);
    cJSON_AddBoolToObject(root, "partial", r->done < r->n_picks);
    cJSON_AddBoolToObject(root, "bos", !o->no_bos);
    cJSON_AddBoolToObject(root, "eos", !o->no_eos);
    cJSON_AddBoolToObject(root, "skip_boundaries", o->skip_boundaries);
    cJSON_AddNumberToObject(root, "documents", (double)s->documents);
    cJSON_AddNumberToObject(root, "tokens", (double)s->n);
    cJSON_AddNumberToObject(root, "window", o->window);
    cJSON_AddNumberToObject(root, "windows_total", (double)r->total);
    cJSON_AddNumberToObject(root, "windows_chosen", (double)r->n_picks);
    cJSON_AddNumberToObject(root, "windows", (double)r->done);
    cJSON_AddItemToObject(root, "window_indices", int_array(r->picks, (int)r->done));
    cJSON_AddNumberToObject(root, "predictions", (double)r->predictions);
    cJSON_AddNumberToObject(root, "nll_sum", r->nll);
    cJSON_AddNumberToObject(root, "val_loss", loss);
    cJSON_AddNumberToObject(root, "perplexity", exp(loss));
    cJSON_AddNumberToObject(root, "seconds", r->seconds);
    cJSON_AddNumberToObject(root, "tokens_per_s", r->seconds > 0 ? (double)r->done * o->window / r->seconds : 0.0);
    int32_t L = moge_context_n_moe_layers(m->ctx);
    if (L > 0) {
        cJSON *moe = cJSON_AddObjectToObject(root, "moe");
        cJSON_AddStringToObject(moe, "routing", m->info.routing);
        cJSON_AddNumberToObject(moe, "n_experts", m->info.n_expert);
        cJSON_AddNumberToObject(moe, "n_group", m->info.n_group);
        cJSON_AddNumberToObject(moe, "k", m->info.n_expert_used);
        cJSON *layers = cJSON_AddArrayToObject(moe, "layers");
        for (int32_t l = 0; l < L; l++) {
            moge_moe_stats ms;
            if (moge_moe_stats_get(m->ctx, l, true, &ms) != MOGE_OK) continue;
            if (l == 0) {
                cJSON_AddNumberToObject(moe, "n_devices", ms.n_devices);
                cJSON_AddNumberToObject(moe, "forwards", (double)ms.n_forwards);
                cJSON_AddNumberToObject(moe, "rows", (double)ms.n_rows);
            }
            cJSON *x = cJSON_CreateObject();
            cJSON_AddNumberToObject(x, "layer", l);
            cJSON_AddNumberToObject(x, "imbalance", ms.imbalance);
            cJSON_AddNumberToObject(x, "imbalance_max", ms.imbalance_max);
            cJSON_AddNumberToObject(x, "distinct_experts", ms.distinct_experts);
            cJSON_AddItemToObject(x, "pairs_per_device", int_array(ms.device_pairs, ms.n_devices));
            cJSON_AddItemToObject(x, "expert_hits", int_array(ms.expert_hits, ms.n_experts));
            cJSON_AddItemToArray(layers, x);
        }
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    bool ok = text && cli_write_text(CMD, "--json", o->json, text);
    if (!text) fprintf(stderr, "moge eval: --json %s: out of memory\n", o->json);
    free(text);
    return ok;
}

/* Fails early (before minutes of work) when --json cannot be written. */
static bool json_writable(const char *path) {
    if (!strcmp(path, "-")) return true;
    char tmp[CLI_PATH_CAP + 32];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (f) {
        fclose(f);
        remove(tmp);
        return true;
    }
    fprintf(stderr, "moge eval: --json %s: cannot write: %s\n", path, strerror(errno));
    return false;
}

/* ------------------------------------------------------------------------------------------ */

/* The stream of the file with m's tokenizer, checked against the model. False after printing an
 * error (or when Ctrl-C came). */
static bool make_stream(const eval_opts *o, const cli_models *m, const char *text, size_t len, stream *s) {
    int32_t bos = moge_tokenizer_bos(m->tok), eos = moge_tokenizer_eos(m->tok);
    const char *tok_src = o->c.tokenizer ? o->c.tokenizer : o->c.model;
    if ((bos < 0 && !o->no_bos) || (eos < 0 && !o->no_eos)) {
        bool b = bos < 0 && !o->no_bos;
        fprintf(stderr, "moge eval: the tokenizer of %s has no %s token: give %s\n", tok_src, b ? "BOS" : "EOS", b ? "--no-bos" : "--no-eos");
        return false;
    }
    moge_status st = build_stream(m->tok, o, text, len, s);
    if (st != MOGE_OK) {
        fprintf(stderr, "moge eval: tokenizing %s: %s\n", o->file, moge_status_str(st));
        return false;
    }
    if (cli_interrupted) {
        fprintf(stderr, "moge eval: interrupted while tokenizing; no result\n");
        return false;
    }
    for (size_t i = 0; i < s->n; i++)
        if (s->ids[i] < 0 || s->ids[i] >= m->info.n_vocab) {
            const char *piece = moge_tokenizer_piece(m->tok, s->ids[i]);
            fprintf(stderr, "moge eval: token %d of %s (\"%s\") is outside the model's vocabulary of %d: the tokenizer does not fit %s\n",
                    (int)s->ids[i], tok_src, piece ? piece : "?", (int)m->info.n_vocab, o->c.model);
            return false;
        }
    return true;
}

/* The windows to score (tools/train/train.py's val_windows). False after printing an error. */
static bool choose_windows(const eval_opts *o, const stream *s, score *r) {
    r->total = s->n > 0 ? (int64_t)(s->n - 1) / o->window : 0;
    if (r->total == 0) {
        fprintf(stderr, "moge eval: -f %s: %zu tokens, fewer than one window needs (%d); use a smaller --window\n", o->file, s->n,
                (int)o->window + 1);
        return false;
    }
    r->n_picks = o->n_windows > 0 && o->n_windows < r->total ? o->n_windows : r->total;
    if (!(r->picks = malloc((size_t)r->n_picks * sizeof *r->picks))) {
        fprintf(stderr, "moge eval: out of memory\n");
        return false;
    }
    /* numpy's linspace(0, total - 1, n).astype(int): i * step in double, the last exactly total - 1 */
    double step = r->n_picks > 1 ? (double)(r->total - 1) / (double)(r->n_picks - 1) : 0;
    for (int64_t i = 0; i < r->n_picks; i++) r->picks[i] = r->n_picks == r->total ? i : (int64_t)((double)i * step);
    if (r->n_picks > 1) r->picks[r->n_picks - 1] = r->total - 1;
    fprintf(stderr, "moge eval: %s: %lld documents, %zu tokens; scoring %lld of %lld windows of %d\n", o->file, (long long)s->documents,
            s->n, (long long)r->n_picks, (long long)r->total, (int)o->window);
    return true;
}

static int eval_main(const eval_opts *o) {
    int rc = 1;
    cli_models m = {0};
    stream s = {0};
    score r = {0};
    size_t len = 0;
    char *text = NULL;
    if (o->json && !json_writable(o->json)) return 1;
    if (!(text = read_text(o->file, &len))) return 1;
    cli_common_opts c = o->c;
    c.cp.n_batch = o->window; /* one forward per window */
    if (!cli_load_model(&c, o->window, &m)) goto done;
    if (moge_context_n_ctx(m.ctx) < o->window) {
        fprintf(stderr, "moge eval: --window %d: the model's context holds %d tokens (max_position_embeddings)\n", (int)o->window,
                (int)moge_context_n_ctx(m.ctx));
        goto done;
    }
    int32_t bos = moge_tokenizer_bos(m.tok), eos = moge_tokenizer_eos(m.tok);
    if (!make_stream(o, &m, text, len, &s) || !choose_windows(o, &s, &r)) {
        if (cli_interrupted) rc = 130;
        goto done;
    }
    if (!run_windows(m.ctx, o, &s, m.info.n_vocab, bos, eos, &r)) goto done;
    if (r.done == 0) {
        fprintf(stderr, "moge eval: interrupted before the first window; no result\n");
        rc = 130;
        goto done;
    }
    print_result(o, &m, &s, &r);
    fflush(stdout);
    rc = r.done < r.n_picks ? 130 : 0;
    if (o->json && !write_json(o, &m, &s, &r)) rc = 1;
done:
    free(r.picks);
    free(s.ids);
    free(text);
    cli_models_free(&m);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    eval_opts o;
    memset(&o, 0, sizeof o);
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    /* Ctrl-C: finish the window being computed, then print what was scored; a second one ends the
     * process (SA_RESETHAND). */
    struct sigaction old;
    cli_catch_sigint(true, &old);
    rc = eval_main(&o);
    sigaction(SIGINT, &old, NULL);
    return rc;
}
