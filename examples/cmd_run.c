/*
 * cmd_run.c — `moge run`: load a model directory, tokenize the prompt, generate, stream the text
 * to stdout and the statistics to stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "examples/cli.h"
#include "examples/commands.h"
#include "moge.h"

static void usage(FILE *f) {
    fputs("usage: moge run -m DIR [options]\n"
          "\n"
          "Generates text with the model in DIR (a Hugging Face directory: config.json,\n"
          "*.safetensors, tokenizer.json). The prompt is not echoed; statistics go to stderr.\n"
          "\n"
          "  -m, --model DIR        model directory (required)\n"
          "  -p, --prompt TEXT      prompt (default: none, generation starts from BOS)\n"
          "  -n, --n-predict N      tokens to generate (default 128)\n"
          "      --temp F           temperature, 0 = greedy (default 0.8)\n"
          "      --top-k N          0 = off (default 40)\n"
          "      --top-p F          1 = off (default 0.95)\n"
          "      --min-p F          0 = off (default 0)\n"
          "      --repeat-penalty F 1 = off (default 1)\n"
          "      --seed N           RNG seed (default 42)\n"
          "  -c, --ctx N            context length in tokens (default: the model's maximum)\n"
          "  -t, --threads N        threads (default: all cores)\n"
          "      --backend NAME     cpu (default) or ref (slow reference loops)\n",
          f);
}

typedef struct {
    moge_detok_stream *stream;
    char *buf;
    size_t cap;
    int failed;
} printer;

static bool print_token(int32_t tok, void *user) {
    printer *p = user;
    size_t n = 0;
    if (moge_detok_stream_push(p->stream, tok, p->buf, p->cap, &n) != MOGE_OK) {
        p->failed = 1;
        return false;
    }
    fwrite(p->buf, 1, n, stdout);
    fflush(stdout);
    return true;
}

static const char *stop_text(moge_stop_reason r) {
    switch (r) {
    case MOGE_STOP_LENGTH: return "length";
    case MOGE_STOP_EOS: return "end of sequence";
    case MOGE_STOP_CALLBACK: return "stopped";
    case MOGE_STOP_CONTEXT_FULL: return "context full";
    }
    return "?";
}

int cmd_run(int argc, char **argv) {
    const char *C = "run", *dir = NULL, *prompt = NULL;
    moge_model_params mp = moge_model_default_params();
    moge_context_params cp = moge_context_default_params();
    moge_generate_params gp = moge_generate_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long l;
        double d;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
#define VALUE() do { if (!(v = cli_value(C, argc, argv, &i))) return 2; } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VALUE(); dir = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { VALUE(); prompt = v; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { VALUE(); if (!cli_int(C, a, v, 0, 1L << 30, &l)) return 2; gp.n_predict = (int32_t)l; }
        else if (!strcmp(a, "--temp")) { VALUE(); if (!cli_float(C, a, v, 0, 100, &d)) return 2; gp.sampler.temperature = (float)d; }
        else if (!strcmp(a, "--top-k")) { VALUE(); if (!cli_int(C, a, v, 0, 1L << 30, &l)) return 2; gp.sampler.top_k = (int32_t)l; }
        else if (!strcmp(a, "--top-p")) { VALUE(); if (!cli_float(C, a, v, 1e-6, 1, &d)) return 2; gp.sampler.top_p = (float)d; }
        else if (!strcmp(a, "--min-p")) { VALUE(); if (!cli_float(C, a, v, 0, 1, &d)) return 2; gp.sampler.min_p = (float)d; }
        else if (!strcmp(a, "--repeat-penalty")) { VALUE(); if (!cli_float(C, a, v, 1e-3, 100, &d)) return 2; gp.sampler.repeat_penalty = (float)d; }
        else if (!strcmp(a, "--seed")) { VALUE(); if (!cli_u64(C, a, v, &gp.sampler.seed)) return 2; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { VALUE(); if (!cli_int(C, a, v, 1, 1L << 24, &l)) return 2; cp.n_ctx = (int32_t)l; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VALUE(); if (!cli_int(C, a, v, 1, 1024, &l)) return 2; mp.n_threads = (int)l; }
        else if (!strcmp(a, "--backend")) {
            VALUE();
            if (!strcmp(v, "cpu")) mp.backend = MOGE_BACKEND_CPU;
            else if (!strcmp(v, "ref")) mp.backend = MOGE_BACKEND_REF;
            else { fprintf(stderr, "moge run: --backend: expected cpu or ref, got \"%s\"\n", v); return 2; }
        } else {
            fprintf(stderr, "moge run: unknown option \"%s\" (see moge run --help)\n", a);
            return 2;
        }
#undef VALUE
    }
    if (!dir) {
        fprintf(stderr, "moge run: -m DIR is required (e.g. moge run -m models/stories260K)\n");
        return 2;
    }

    char err[1024];
    int rc = 1;
    moge_model *model = NULL;
    moge_tokenizer *tok = NULL;
    moge_context *ctx = NULL;
    moge_detok_stream *stream = NULL;
    int32_t *ids = NULL;
    char *buf = NULL;
    moge_status st;
    if ((st = moge_model_load(dir, &mp, &model, err, sizeof err)) != MOGE_OK ||
        (st = moge_tokenizer_load(dir, &tok, err, sizeof err)) != MOGE_OK ||
        (st = moge_context_new(model, &cp, &ctx, err, sizeof err)) != MOGE_OK) {
        fprintf(stderr, "moge run: %s\n", err);
        goto done;
    }
    moge_model_info info;
    moge_model_get_info(model, &info);
    size_t n_ids = 0;
    if (prompt && prompt[0]) {
        size_t len = strlen(prompt), cap = len + 8;
        ids = malloc(cap * sizeof *ids);
        st = ids ? moge_tokenize(tok, prompt, len, true, ids, cap, &n_ids) : MOGE_ERR_NOMEM;
        if (st == MOGE_ERR_BUFFER) {
            int32_t *bigger = realloc(ids, n_ids * sizeof *ids);
            st = bigger ? moge_tokenize(tok, prompt, len, true, bigger, n_ids, &n_ids) : MOGE_ERR_NOMEM;
            if (bigger) ids = bigger;
        }
        if (st != MOGE_OK) {
            fprintf(stderr, "moge run: tokenizing the prompt: %s\n", moge_status_str(st));
            goto done;
        }
    }
    if (n_ids == 0) {
        int32_t bos = moge_tokenizer_bos(tok) >= 0 ? moge_tokenizer_bos(tok) : info.bos_id;
        if (bos < 0) {
            fprintf(stderr, "moge run: the prompt is empty and the model has no BOS token: give -p TEXT\n");
            goto done;
        }
        free(ids);
        ids = malloc(sizeof *ids);
        if (!ids) goto done;
        ids[0] = bos;
        n_ids = 1;
    }
    if ((int64_t)n_ids > moge_context_n_ctx(ctx)) {
        fprintf(stderr, "moge run: the prompt has %zu tokens but the context holds %d (use -c)\n", n_ids, moge_context_n_ctx(ctx));
        goto done;
    }
    if ((st = moge_detok_stream_new(tok, &stream)) != MOGE_OK) goto done;
    size_t cap = moge_detok_stream_max_bytes(stream) + 1;
    buf = malloc(cap);
    if (!buf) goto done;
    /* Feed the prompt through the stream so the first generated piece decodes in context
     * (e.g. the leading-space rule), but print only what generation adds. */
    for (size_t i = 0; i < n_ids; i++) {
        size_t n = 0;
        moge_detok_stream_push(stream, ids[i], buf, cap, &n);
    }
    printer pr = {.stream = stream, .buf = buf, .cap = cap};
    moge_stats stats;
    st = moge_generate(ctx, ids, (int32_t)n_ids, &gp, print_token, &pr, &stats);
    size_t n = 0;
    if (moge_detok_stream_flush(stream, buf, cap, &n) == MOGE_OK) fwrite(buf, 1, n, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    if (st != MOGE_OK) {
        fprintf(stderr, "moge run: %s\n", moge_context_error(ctx)[0] ? moge_context_error(ctx) : moge_status_str(st));
        goto done;
    }
    fprintf(stderr, "moge run: %s, %s backend: prompt %d tokens (%.3f s), generated %d tokens in %.3f s (%.1f tokens/s), stop: %s\n",
            info.architecture, info.backend, stats.n_prompt, stats.t_prefill_s, stats.n_generated, stats.t_decode_s,
            stats.tokens_per_s, stop_text(stats.stop));
    if (stats.stop == MOGE_STOP_CONTEXT_FULL)
        fprintf(stderr, "moge run: the context (%d tokens) is full; use -c to enlarge it\n", moge_context_n_ctx(ctx));
    rc = pr.failed ? 1 : 0;
done:
    free(buf);
    free(ids);
    moge_detok_stream_free(stream);
    moge_context_free(ctx);
    moge_tokenizer_free(tok);
    moge_model_free(model);
    return rc;
}
