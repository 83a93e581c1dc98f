/*
 * cmd_run.c — `moge run`: load a model directory, tokenize the prompt, generate, stream the text
 * to stdout and the statistics to stderr.
 *
 * --prompts FILE (one prompt per line, blank lines skipped, as moge bench --prompts) decodes many
 * prompts through one moge_decoder, --batch N at a time (default 8; at most the number of prompts), with
 * continuous batching: when a sequence stops it is removed and the next prompt takes its slot.
 * One drafter serves every sequence at once (a draft model or layer-skip: one draft forward per
 * tree level for all of them);
 * the context has N sequences of just the slots the longest prompt, -n and the tree need
 * (cli_batch_context). stdout: for each prompt in file order a line "--- prompt K" (K from 1,
 * counting prompts, not blank lines) and then exactly what `moge run -p PROMPT` with the same
 * flags prints (its text and one newline), so that deleting the header lines leaves the
 * concatenation of the single runs' outputs; the first unfinished prompt streams live, later ones
 * are held until their turn. Greedy text equals the single run's; with sampling each prompt uses
 * the --seed of a single run and gets the same distribution (a speculative single run's planner
 * may draw differently). stderr: one line per prompt, then the totals. --stats-json FILE: an
 * object with "sequences" (one single-run statistics object per prompt, in file order, with
 * "prompt": K) and "totals" (the decoder's: tokens, seconds, tokens_per_s over all sequences,
 * passes, ..., forward_times). --batch without --prompts, --prompts with -p or --compare: usage
 * errors (exit 2).
 * Statistics of one prompt (--stats-json) include forward_times: where the target's forwards of the
 * generation spent their time (moge_forward_times: seconds per part, forwards, rows); -v prints
 * the same as shares on stderr.
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "moge.h"

static void usage(FILE *f, const cli_common_opts *o) {
    fputs("usage: moge run -m DIR [options]\n"
          "\n"
          "Generates text with the model in DIR (a Hugging Face directory: config.json,\n"
          "*.safetensors, tokenizer.json). The prompt is not echoed; statistics go to stderr.\n"
          "\n",
          f);
    cli_common_usage(f, o,
                     "  -p, --prompt TEXT      prompt (default: standard input when it is a pipe, else none:\n"
                     "                         generation starts from BOS); escapes \\n \\t \\\\ \\xHH ... are processed\n"
                     "  -f, --file FILE        the prompt is FILE's text (- for standard input; one final line end dropped)\n"
                     "  -e, --escape           process escapes in -p (the default, as llama.cpp); --no-escape: take it as is\n"
                     "  -q, --quiet            no statistics on stderr (errors only)\n"
                     "  -v, --verbose          the time of the target's forwards by part (q/k/v, attention, ...);\n"
                     "                         MoE models: the expert load of every layer\n"
                     "      --prompts FILE     one prompt per line (blank lines skipped), decoded together; stdout:\n"
                     "                         per prompt a line \"--- prompt K\" (K = 1, 2, ...), then what -p\n"
                     "                         would print for it\n"
                     "      --batch N          with --prompts: sequences decoded at once, a finished one making room\n"
                     "                         for the next prompt (default 8; at most the number of prompts)\n"
                     "      --stats-json FILE  write the run's statistics as JSON (- for stdout; with --prompts:\n"
                     "                         {\"sequences\": [one per prompt], \"totals\": {...}})\n"
                     "      --compare          with speculation: generate again without it (same prompt and\n"
                     "                         settings, not printed) and report the speedup measured in this\n"
                     "                         run and whether the two texts are identical (both after an\n"
                     "                         untimed warm-up of 16 tokens each way)\n");
}

typedef struct {
    moge_detok_stream *stream;
    const moge_tokenizer *tok;
    char *buf;
    size_t cap;
    int failed;
    int32_t *ids;     /* every emitted id, for --stats-json */
    int32_t n_ids, cap_ids;
    bool held;        /* --prompts: keep the text in out (a later prompt's, not yet its turn) */
    char *out;
    size_t n_out, cap_out;
} printer;

/* Text for stdout: printed now, or kept while p->held. */
static void printer_write(printer *p, const char *s, size_t n) {
    if (n == 0) return;
    if (!p->held) {
        fwrite(s, 1, n, stdout);
        fflush(stdout);
        return;
    }
    if (p->n_out + n > p->cap_out) {
        size_t cap = 2 * (p->n_out + n) + 256;
        char *b = realloc(p->out, cap);
        if (!b) { p->failed = 1; return; }
        p->out = b;
        p->cap_out = cap;
    }
    memcpy(p->out + p->n_out, s, n);
    p->n_out += n;
}

/* Prints the kept text and prints from now on. */
static void printer_release(printer *p) {
    p->held = false;
    printer_write(p, p->out, p->n_out);
    p->n_out = 0;
}

/* The end of the text: what the stream still holds, and the newline. */
static void printer_finish(printer *p) {
    size_t n = 0;
    if (cli_detok_flush(p->stream, &p->buf, &p->cap, &n) == MOGE_OK) printer_write(p, p->buf, n);
    printer_write(p, "\n", 1);
}

static bool print_token(int32_t tok, void *user) {
    printer *p = user;
    size_t n = 0;
    if (p->n_ids == p->cap_ids) {
        int32_t cap = p->cap_ids ? 2 * p->cap_ids : 256, *ids = realloc(p->ids, (size_t)cap * sizeof *ids);
        if (!ids) { p->failed = 1; return false; }
        p->ids = ids;
        p->cap_ids = cap;
    }
    p->ids[p->n_ids++] = tok;
    if (moge_tokenizer_is_special(p->tok, tok)) return true;
    if (cli_detok_push(p->stream, tok, &p->buf, &p->cap, &n) != MOGE_OK) {
        p->failed = 1;
        return false;
    }
    printer_write(p, p->buf, n);
    return true;
}


/* The run's statistics (docs/design.md §5) as JSON; path "-" is stdout. Returns 0 on success. */
typedef struct {
    double tokens_per_s; /* plain decoding */
    double speedup;      /* speculative tokens/s over plain */
    bool identical;      /* the same ids */
} compare_result;

typedef struct {
    const int32_t *ids; /* the speculative run's ids */
    int32_t n_ids, n_seen;
    bool same;
} id_checker;

static bool check_token(int32_t tok, void *user) {
    id_checker *c = user;
    if (c->n_seen >= c->n_ids || c->ids[c->n_seen] != tok) c->same = false;
    c->n_seen++;
    return true;
}

/* --compare: the same generation without speculation, from a fresh cache; one summary line. */
static int run_compare(cli_models *m, const int32_t *ids, int32_t n_ids, const moge_generate_params *gp, const printer *pr,
                       const moge_stats *spec, compare_result *out) {
    moge_generate_params plain = *gp;
    plain.spec = MOGE_SPEC_NONE;
    plain.drafter = NULL;
    id_checker chk = {.ids = pr->ids, .n_ids = pr->n_ids, .same = true};
    moge_stats st;
    moge_status s = moge_kv_truncate(m->ctx, 0);
    if (s == MOGE_OK) s = moge_generate(m->ctx, ids, n_ids, &plain, check_token, &chk, &st);
    if (s != MOGE_OK) {
        fprintf(stderr, "moge run: --compare: %s\n", moge_context_error(m->ctx)[0] ? moge_context_error(m->ctx) : moge_status_str(s));
        return 1;
    }
    out->tokens_per_s = st.tokens_per_s;
    out->speedup = st.tokens_per_s > 0 ? spec->tokens_per_s / st.tokens_per_s : 0.0;
    out->identical = chk.same && chk.n_seen == chk.n_ids;
    fprintf(stderr, "moge run: %s speculation %.1f tokens/s, tau %.2f; no speculation %.1f tokens/s: %.2fx in this run; text %s\n",
            moge_spec_name(gp->spec), spec->tokens_per_s, spec->mean_accepted, st.tokens_per_s, out->speedup,
            out->identical ? "identical" : gp->sampler.temperature > 0 ? "differs (sampling)" : "DIFFERS");
    return out->identical || gp->sampler.temperature > 0 ? 0 : 1;
}

/* One generation's statistics (docs/design.md §5) into o: its ids, then moge_stats' figures. */
static void add_stats_json(cJSON *root, const moge_stats *st, const int32_t *ids, int32_t n_ids) {
    cJSON *jids = cJSON_AddArrayToObject(root, "ids");
    for (int32_t i = 0; i < n_ids; i++) cJSON_AddItemToArray(jids, cJSON_CreateNumber(ids[i]));
    cJSON_AddNumberToObject(root, "prompt_tokens", st->n_prompt);
    cJSON_AddNumberToObject(root, "tokens", st->n_generated);
    cJSON_AddNumberToObject(root, "prefill_seconds", st->t_prefill_s);
    cJSON_AddNumberToObject(root, "seconds", st->t_decode_s);
    cJSON_AddNumberToObject(root, "tokens_per_s", st->tokens_per_s);
    cJSON_AddNumberToObject(root, "target_passes", st->n_forward + 1);
    cJSON_AddNumberToObject(root, "mean_accepted", st->mean_accepted);
    cJSON_AddNumberToObject(root, "draft_nodes", (double)st->n_draft_nodes);
    cJSON_AddNumberToObject(root, "draft_nodes_verified", (double)st->n_draft_nodes);
    cJSON_AddNumberToObject(root, "draft_nodes_proposed", (double)st->n_draft_proposed);
    cJSON_AddNumberToObject(root, "plain_steps", st->n_plain_steps);
    if (st->predicted_speedup > 0) cJSON_AddNumberToObject(root, "predicted_speedup", st->predicted_speedup);
    else cJSON_AddNullToObject(root, "predicted_speedup"); /* no planner ran */
    cJSON_AddNumberToObject(root, "expert_bytes_read", st->expert_bytes_read);
    cJSON *acc = cJSON_AddArrayToObject(root, "accept_by_depth");
    for (int d = 1; d < MOGE_MAX_DEPTH && st->accept_tries[d] > 0; d++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "depth", d);
        cJSON_AddNumberToObject(o, "tries", (double)st->accept_tries[d]);
        cJSON_AddNumberToObject(o, "accepted", (double)st->accept_hits[d]);
        cJSON_AddNumberToObject(o, "rate", (double)st->accept_hits[d] / st->accept_tries[d]);
        cJSON_AddItemToArray(acc, o);
    }
    cJSON *ts = cJSON_AddObjectToObject(root, "time_split");
    cJSON_AddNumberToObject(ts, "draft", st->t_draft_s);
    cJSON_AddNumberToObject(ts, "verify", st->t_verify_s);
    cJSON_AddNumberToObject(ts, "draft_accept", st->t_draft_accept_s);
    cJSON_AddNumberToObject(ts, "emit", st->t_emit_s);
    /* the same two under their first names, which scripts may read */
    cJSON_AddNumberToObject(ts, "sample", st->t_emit_s);
    cJSON_AddNumberToObject(ts, "rollback", st->t_draft_accept_s);
    cJSON_AddStringToObject(root, "stop", moge_stop_name(st->stop));
}

/* The context's MoE load totals per layer (nothing for a dense model). */
static void add_moe_json(cJSON *root, const moge_model_info *info, const moge_context *ctx) {
    if (moge_context_n_moe_layers(ctx) == 0) return;
    cJSON *moe = cJSON_AddObjectToObject(root, "moe");
    cJSON_AddStringToObject(moe, "routing", info->routing);
    cJSON *layers = cJSON_AddArrayToObject(moe, "layers");
    for (int l = 0; l < moge_context_n_moe_layers(ctx); l++) {
        moge_moe_stats ms;
        if (moge_moe_stats_get(ctx, l, true, &ms) != MOGE_OK) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", l);
        cJSON_AddNumberToObject(o, "n_devices", ms.n_devices);
        cJSON_AddNumberToObject(o, "forwards", (double)ms.n_forwards);
        cJSON_AddNumberToObject(o, "rows", (double)ms.n_rows);
        cJSON_AddNumberToObject(o, "imbalance", ms.imbalance);
        cJSON_AddNumberToObject(o, "imbalance_max", ms.imbalance_max);
        cJSON_AddNumberToObject(o, "distinct_experts", ms.distinct_experts);
        cJSON *dp = cJSON_AddArrayToObject(o, "pairs_per_device");
        for (int d = 0; d < ms.n_devices; d++) cJSON_AddItemToArray(dp, cJSON_CreateNumber((double)ms.device_pairs[d]));
        cJSON *eh = cJSON_AddArrayToObject(o, "expert_hits");
        for (int e = 0; e < ms.n_experts; e++) cJSON_AddItemToArray(eh, cJSON_CreateNumber((double)ms.expert_hits[e]));
        cJSON_AddItemToArray(layers, o);
    }
}

/* Writes root (freed) to path ("-": stdout). Returns 0 on success. */
static int write_json(cJSON *root, const char *path) {
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return 1;
    bool ok = cli_write_text("run", "--stats-json", path, text);
    free(text);
    return ok ? 0 : 1;
}

static int write_stats_json(const char *path, const moge_model_info *info, const moge_stats *st, const moge_forward_times *ft,
                            moge_context *ctx, const int32_t *ids, int32_t n_ids, const compare_result *cmp) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "architecture", info->architecture);
    cli_json_backend(root, info);
    add_stats_json(root, st, ids, n_ids);
    if (cmp) {
        cJSON *c = cJSON_AddObjectToObject(root, "compare");
        cJSON_AddNumberToObject(c, "plain_tokens_per_s", cmp->tokens_per_s);
        cJSON_AddNumberToObject(c, "speedup", cmp->speedup);
        cJSON_AddBoolToObject(c, "identical", cmp->identical);
    }
    cli_forward_times_out(root, "forward_times", NULL, "run", "", ft);
    add_moe_json(root, info, ctx);
    cli_report_ranks(root, NULL, "run", ctx);
    return write_json(root, path);
}

/* The MoE load totals of the context on stderr (nothing for a dense model). */
/* How much run says on stderr besides errors: -q none, -v (--verbose) the MoE table per layer. */
static enum { QUIET, NORMAL, VERBOSE } verbosity = NORMAL;

/* MoE load: one line (means over the layers), or with -v a line per layer. */
static void print_moe(const cli_models *m) {
    int n = moge_context_n_moe_layers(m->ctx), n_got = 0;
    double is = 0, is_max = 0, distinct = 0;
    int n_experts = 0, n_devices = 0;
    for (int l = 0; l < n && verbosity != QUIET; l++) {
        moge_moe_stats ms;
        if (moge_moe_stats_get(m->ctx, l, true, &ms) != MOGE_OK) continue;
        if (verbosity == VERBOSE && n_got == 0)
            fprintf(stderr, "moge run: MoE (%s routing, %d devices): per layer mean Imbalance Score / max / distinct experts per pass:\n", m->info.routing, ms.n_devices);
        if (verbosity == VERBOSE)
            fprintf(stderr, "  layer %2d: IS %.3f / %.3f, %.1f of %d experts\n", l, ms.imbalance, ms.imbalance_max, ms.distinct_experts, ms.n_experts);
        n_got++;
        is += ms.imbalance;
        is_max = ms.imbalance_max > is_max ? ms.imbalance_max : is_max;
        distinct += ms.distinct_experts;
        n_experts = ms.n_experts;
        n_devices = ms.n_devices;
    }
    if (verbosity == NORMAL && n_got > 0)
        fprintf(stderr, "moge run: MoE (%s routing, %d devices), %d layers: mean Imbalance Score %.3f (max %.3f), %.1f of %d experts per pass (-v: per layer)\n",
                m->info.routing, n_devices, n_got, is / n_got, is_max, distinct / n_got, n_experts);
    if (verbosity != QUIET) cli_report_ranks(NULL, stderr, "run", m->ctx);
}

/* The ids of a prompt (what names it in messages): text with the tokenizer's BOS, or the BOS
 * alone for empty text; it must fit a sequence. False after printing an error. */
static bool prompt_ids(const cli_common_opts *o, const cli_models *m, const char *text, const char *what, int32_t **ids, size_t *n_ids) {
    moge_status st;
    *ids = NULL;
    *n_ids = 0;
    if (text && text[0] && (st = cli_tokenize(m->tok, text, ids, n_ids)) != MOGE_OK) {
        fprintf(stderr, "moge run: tokenizing %s: %s\n", what, moge_status_str(st));
        return false;
    }
    if (*n_ids == 0) {
        int32_t bos = moge_tokenizer_bos(m->tok) >= 0 ? moge_tokenizer_bos(m->tok) : m->info.bos_id;
        if (bos < 0) {
            fprintf(stderr, "moge run: %s is empty and the model has no BOS token: give -p TEXT\n", what);
            return false;
        }
        free(*ids);
        if (!(*ids = malloc(sizeof **ids))) return false;
        (*ids)[0] = bos;
        *n_ids = 1;
    }
    if ((int64_t)*n_ids > cli_prompt_limit(o, m)) {
        fprintf(stderr, "moge run: %s has %zu tokens but the context holds %d (use -c)\n", what, *n_ids, cli_prompt_limit(o, m));
        return false;
    }
    return true;
}

/* A printer for prompt ids through a new stream, primed with them (the first generated piece
 * decodes in context, e.g. the leading-space rule, but only what generation adds is printed;
 * special tokens such as BOS are not text). False after printing an error. */
static bool printer_start(printer *p, const moge_tokenizer *tok, const int32_t *ids, size_t n_ids, bool held) {
    moge_status st;
    *p = (printer){.tok = tok, .held = held};
    if ((st = moge_detok_stream_new(tok, &p->stream)) == MOGE_OK) st = moge_detok_stream_prime(p->stream, ids, n_ids);
    if (st != MOGE_OK) fprintf(stderr, "moge run: decoding the prompt: %s\n", moge_status_str(st));
    return st == MOGE_OK;
}

static void printer_free(printer *p) {
    moge_detok_stream_free(p->stream);
    free(p->buf);
    free(p->ids);
    free(p->out);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------------------------------ */
/* --prompts FILE: many prompts through one decoder                                           */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    int32_t *ids;        /* the prompt's */
    size_t n_ids;
    printer pr;          /* its text: held until every earlier prompt is printed */
    moge_stats st;       /* final once done */
    moge_status status;  /* what stopped it (MOGE_OK unless an error) */
    int32_t seq;         /* its id in the decoder while it runs */
    bool started, done;
    bool shown;          /* its header and held text are printed: it prints as it goes */
} run_item;

typedef struct {
    cli_common_opts *o;
    cli_models m;
    moge_generate_params gp;
    moge_decoder *dec;
    run_item *it;
    int n, batch, cur;   /* prompts, sequences at once, the first prompt not printed whole */
    moge_drafter *dr;    /* serves every sequence; NULL without speculation */
    bool failed;         /* a sequence stopped with an error, or its text could not be kept */
} run_batch;

/* Prints the header and held text of every prompt whose turn has come: the first one not yet
 * finished prints as it goes. */
static void batch_show(run_batch *b) {
    for (; b->cur < b->n; b->cur++) {
        run_item *x = &b->it[b->cur];
        if (!x->shown) {
            printf("--- prompt %d\n", b->cur + 1);
            printer_release(&x->pr);
            fflush(stdout);
            x->shown = true;
        }
        if (!x->done) return;
    }
}

/* Adds prompt i to the decoder with a free drafter. False after printing an error. */
static bool batch_add(run_batch *b, int i) {
    run_item *x = &b->it[i];
    moge_generate_params gp = b->gp;
    gp.drafter = b->dr;
    if (!printer_start(&x->pr, b->m.tok, x->ids, x->n_ids, !x->shown)) return false;
    moge_status st = moge_decoder_add(b->dec, x->ids, (int32_t)x->n_ids, &gp, print_token, &x->pr, &x->seq);
    if (st != MOGE_OK) {
        fprintf(stderr, "moge run: prompt %d: %s\n", i + 1, moge_context_error(b->m.ctx)[0] ? moge_context_error(b->m.ctx) : moge_status_str(st));
        return false;
    }
    x->started = true;
    return true;
}

/* Removes every stopped sequence (its text ended, its statistics kept); returns how many. */
static int batch_reap(run_batch *b) {
    int n_done = 0;
    for (int i = b->cur; i < b->n; i++) {
        run_item *x = &b->it[i];
        bool stopped = false;
        if (!x->started || x->done || moge_decoder_seq_stats(b->dec, x->seq, &x->st, &stopped, &x->status) != MOGE_OK || !stopped) continue;
        printer_finish(&x->pr);
        moge_decoder_remove(b->dec, x->seq);
        moge_detok_stream_free(x->pr.stream);
        x->pr.stream = NULL;
        x->done = true;
        n_done++;
        if (x->status != MOGE_OK) {
            fprintf(stderr, "moge run: prompt %d: %s\n", i + 1, moge_status_str(x->status));
            b->failed = true;
        }
        if (x->pr.failed) {
            fprintf(stderr, "moge run: prompt %d: out of memory while printing the text\n", i + 1);
            b->failed = true;
        }
    }
    return n_done;
}

/* stderr: a line per prompt, the totals, acceptance over every sequence, the MoE load. */
static void batch_report(const run_batch *b, const moge_decoder_stats *ds) {
    if (verbosity == QUIET) return;
    moge_stats sum = {0};
    bool full = false;
    for (int i = 0; i < b->n; i++) {
        const moge_stats *st = &b->it[i].st;
        fprintf(stderr, "moge run: prompt %d: prompt %d tokens, generated %d tokens, tau %.2f, stop: %s\n", i + 1, st->n_prompt,
                st->n_generated, st->n_forward + 1 > 0 ? (double)st->n_generated / (st->n_forward + 1) : 0.0, moge_stop_name(st->stop));
        sum.n_generated += st->n_generated;
        sum.n_forward += st->n_forward + 1;
        for (int d = 0; d < MOGE_MAX_DEPTH; d++) sum.accept_tries[d] += st->accept_tries[d], sum.accept_hits[d] += st->accept_hits[d];
        full = full || st->stop == MOGE_STOP_CONTEXT_FULL;
    }
    char where[256];
    cli_backend_desc(&b->m.info, where, sizeof where);
    fprintf(stderr, "moge run: %s, %s: %d prompts, batch %d: prefill %.3f s, generated %d tokens in %.3f s (%.1f tokens/s, all sequences), %lld passes\n",
            b->m.info.architecture, where, b->n, b->batch, ds->t_prefill_s, sum.n_generated, ds->t_decode_s,
            ds->t_decode_s > 0 ? sum.n_generated / ds->t_decode_s : 0.0, (long long)ds->n_passes);
    if (b->gp.spec != MOGE_SPEC_NONE) {
        fprintf(stderr, "moge run: speculative %s: tau %.2f tokens per pass per sequence, acceptance by depth:", moge_spec_name(b->gp.spec),
                sum.n_forward ? (double)sum.n_generated / sum.n_forward : 0.0);
        for (int d = 1; d < MOGE_MAX_DEPTH && sum.accept_tries[d] > 0; d++) fprintf(stderr, " %.2f", (double)sum.accept_hits[d] / sum.accept_tries[d]);
        fputc('\n', stderr);
    }
    if (full) fprintf(stderr, "moge run: a sequence filled its context (%d tokens); use -c to enlarge it\n", moge_context_n_ctx(b->m.ctx));
    print_moe(&b->m);
    if (verbosity == VERBOSE) {
        moge_forward_times ft;
        moge_forward_times_get(b->m.ctx, &ft);
        cli_forward_times_out(NULL, NULL, stderr, "run", "time of the target's forwards", &ft);
    }
}

static int batch_stats_json(const run_batch *b, const moge_decoder_stats *ds, const char *path) {
    double tokens = 0; /* the sequences' n_generated: their first tokens (from the prefills) too */
    for (int i = 0; i < b->n; i++) tokens += b->it[i].st.n_generated;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "architecture", b->m.info.architecture);
    cli_json_backend(root, &b->m.info);
    cJSON_AddNumberToObject(root, "batch", b->batch);
    cJSON *seqs = cJSON_AddArrayToObject(root, "sequences");
    for (int i = 0; i < b->n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "prompt", i + 1);
        add_stats_json(o, &b->it[i].st, b->it[i].pr.ids, b->it[i].pr.n_ids);
        cJSON_AddItemToArray(seqs, o);
    }
    cJSON *t = cJSON_AddObjectToObject(root, "totals");
    cJSON_AddNumberToObject(t, "prompts", b->n);
    cJSON_AddNumberToObject(t, "tokens", tokens);
    cJSON_AddNumberToObject(t, "prefill_seconds", ds->t_prefill_s);
    cJSON_AddNumberToObject(t, "seconds", ds->t_decode_s);
    cJSON_AddNumberToObject(t, "tokens_per_s", ds->t_decode_s > 0 ? tokens / ds->t_decode_s : 0.0);
    cJSON_AddNumberToObject(t, "passes", (double)ds->n_passes);
    cJSON_AddNumberToObject(t, "prefill_passes", (double)ds->n_prefill_passes);
    cJSON_AddNumberToObject(t, "rows", (double)ds->n_rows);
    cJSON_AddNumberToObject(t, "expert_bytes_read", ds->expert_bytes_read);
    moge_forward_times ft;
    moge_forward_times_get(b->m.ctx, &ft);
    cli_forward_times_out(t, "forward_times", NULL, "run", "", &ft);
    add_moe_json(root, &b->m.info, b->m.ctx);
    cli_report_ranks(root, NULL, "run", b->m.ctx);
    return write_json(root, path);
}

/* moge run --prompts FILE [--batch N]. */
static int run_prompts(cli_common_opts *o, const char *path, int batch, const char *stats_json, moge_generate_params gp, cli_draft_kind kind) {
    run_batch b = {.o = o, .gp = gp};
    char **lines = NULL;
    int rc = 1, n_lines = 0;
    bool ok = cli_read_prompts("run", path, &lines, &n_lines) && cli_load_model(o, -1, &b.m);
    b.n = n_lines;
    b.batch = batch > 0 ? batch : 8;
    b.batch = b.batch < n_lines ? b.batch : n_lines; /* no slots for prompts there are not */
    if (ok && !(b.it = calloc((size_t)b.n, sizeof *b.it))) {
        fprintf(stderr, "moge run: out of memory\n");
        ok = false;
    }
    int32_t longest = 0;
    for (int i = 0; ok && i < b.n; i++) {
        char what[32];
        snprintf(what, sizeof what, "prompt %d", i + 1);
        ok = prompt_ids(o, &b.m, lines[i], what, &b.it[i].ids, &b.it[i].n_ids);
        longest = ok && (int32_t)b.it[i].n_ids > longest ? (int32_t)b.it[i].n_ids : longest;
    }
    ok = ok && cli_batch_context(o, &b.m, b.batch, longest, cli_tree_nodes(&gp));
    /* one drafter serves every sequence (a draft model: one draft forward per tree level for all) */
    if (ok && gp.spec != MOGE_SPEC_NONE) ok = cli_load_drafter(o, kind, &b.m, b.batch, &b.dr, NULL, 0);
    moge_status st = MOGE_OK;
    if (ok && (st = moge_decoder_new(b.m.ctx, &b.dec)) != MOGE_OK) {
        fprintf(stderr, "moge run: %s\n", moge_context_error(b.m.ctx));
        ok = false;
    }
    if (ok) {
        rc = 0;
        batch_show(&b);
        for (int next = 0, running = 0; b.cur < b.n && rc == 0;) {
            for (; rc == 0 && running < b.batch && next < b.n; next++, running++)
                if (!batch_add(&b, next)) rc = 1;
            if (rc == 0 && (st = moge_decoder_step(b.dec, NULL)) != MOGE_OK) {
                fprintf(stderr, "moge run: %s\n", moge_context_error(b.m.ctx)[0] ? moge_context_error(b.m.ctx) : moge_status_str(st));
                rc = 1;
            }
            running -= batch_reap(&b);
            batch_show(&b);
        }
    }
    if (rc == 0) {
        moge_decoder_stats ds;
        moge_decoder_get_stats(b.dec, &ds);
        batch_report(&b, &ds);
        if (stats_json && batch_stats_json(&b, &ds, stats_json) != 0) rc = 1;
    }
    if (b.failed) rc = 1;
    moge_decoder_free(b.dec);
    for (int i = 0; b.it && i < b.n; i++) {
        free(b.it[i].ids);
        printer_free(&b.it[i].pr);
    }
    moge_drafter_free(b.dr);
    for (int i = 0; i < n_lines; i++) free(lines[i]);
    free(lines);
    free(b.it);
    cli_models_free(&b.m);
    return rc;
}

int cmd_run(int argc, char **argv) {
    const char *prompt = NULL, *stats_json = NULL, *prompts = NULL, *prompt_file = NULL;
    char *prompt_text = NULL; /* -f FILE or a pipe's text */
    bool compare = false, escape = true;
    long batch = 0;
    cli_common_opts o;
    cli_common_init(&o, "run", CLI_RUN);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int r = cli_parse_common(argc, argv, &i, &o);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout, &o); return 0; }
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { if (!(prompt = cli_value(o.cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { if (!(prompt_file = cli_value(o.cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "-e") || !strcmp(a, "--escape")) escape = true;
        else if (!strcmp(a, "--no-escape")) escape = false;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) o.quiet = true, verbosity = QUIET;
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) verbosity = VERBOSE;
        else if (!strcmp(a, "--stats-json")) { if (!(stats_json = cli_value(o.cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--prompts")) { if (!(prompts = cli_value(o.cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--batch")) {
            if (!(v = cli_value(o.cmd, argc, argv, &i)) || !cli_int(o.cmd, a, v, 1, MOGE_MAX_SEQ, &batch)) return 2;
        } else if (!strcmp(a, "--compare")) compare = true;
        else return cli_unknown_option(&o, a);
    }
    if (!o.model) {
        fprintf(stderr, "moge run: -m DIR is required (e.g. moge run -m models/stories260K)\n");
        return 2;
    }
    if (batch > 0 && !prompts) {
        fprintf(stderr, "moge run: --batch N decodes the prompts of --prompts FILE together: give --prompts FILE\n");
        return 2;
    }
    if (prompt && prompt_file) {
        fprintf(stderr, "moge run: give the prompt with -p TEXT or -f FILE, not both\n");
        return 2;
    }
    if (prompts && (prompt || prompt_file || compare)) {
        fprintf(stderr, "moge run: --prompts FILE takes the prompts from FILE: drop %s\n",
                prompt ? "-p / --prompt" : prompt_file ? "-f / --file" : "--compare");
        return 2;
    }
    if (prompt && escape) prompt = cli_unescape((char *)prompt); /* argv's strings are writable */
    if (stats_json && !cli_check_output(o.cmd, "--stats-json", stats_json)) return 2;
    if (!cli_check_drafters(&o)) return 2;
    cli_draft_kind kind = cli_draft_choice(&o);
    if (o.spec < 0) o.spec = kind != CLI_DRAFT_NONE ? MOGE_SPEC_TREE : MOGE_SPEC_NONE;
    if (o.spec != MOGE_SPEC_NONE && kind == CLI_DRAFT_NONE) {
        fprintf(stderr, "moge run: --spec %s needs a drafter: -d DIR, --draft-layers L or --lookup\n", moge_spec_name((moge_spec_mode)o.spec));
        return 2;
    }
    moge_generate_params gp = o.gp;
    gp.spec = (moge_spec_mode)o.spec;
    if (compare && gp.spec == MOGE_SPEC_NONE) {
        fprintf(stderr, "moge run: --compare compares speculation with plain decoding: give a drafter (-d, --draft-layers or --lookup)\n");
        return 2;
    }
    if (prompts) return run_prompts(&o, prompts, (int)batch, stats_json, gp, kind);
    if (!prompt && (prompt_file || cli_stdin_is_pipe())) {
        if (!(prompt_text = cli_read_text(o.cmd, prompt_file ? "-f" : "standard input", prompt_file ? prompt_file : "-"))) return 1;
        prompt = prompt_text;
    }

    int rc = 1;
    cli_models m = {0};
    moge_drafter *drafter = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    printer pr = {0};
    o.cp.abort_cb = cli_abort_cb; /* Ctrl-C stops the pass in progress (a long prompt's prefill too) */
    if (!cli_load_model(&o, 0, &m) || (gp.spec != MOGE_SPEC_NONE && !cli_load_drafter(&o, kind, &m, 1, &drafter, NULL, 0))) goto done;
    gp.drafter = drafter;
    if (!prompt_ids(&o, &m, prompt, "the prompt", &ids, &n_ids) || !printer_start(&pr, m.tok, ids, n_ids, false)) goto done;
    moge_stats stats;
    if (compare) { /* untimed: the first of the two timed runs must not pay for reading the weights in */
        moge_generate_params warm = gp;
        warm.n_predict = 16;
        if (moge_generate(m.ctx, ids, (int32_t)n_ids, &warm, NULL, NULL, NULL) == MOGE_OK) warm.spec = MOGE_SPEC_NONE;
        moge_kv_truncate(m.ctx, 0);
        if (warm.spec == MOGE_SPEC_NONE && moge_generate(m.ctx, ids, (int32_t)n_ids, &warm, NULL, NULL, NULL) == MOGE_OK)
            moge_kv_truncate(m.ctx, 0);
    }
    struct sigaction old_sa;
    cli_catch_sigint(false, &old_sa); /* Ctrl-C ends the text cleanly: what was generated, a newline, a note */
    moge_forward_times_reset(m.ctx); /* this generation's forwards only (not --compare's warm-up) */
    moge_status st = moge_generate(m.ctx, ids, (int32_t)n_ids, &gp, print_token, &pr, &stats);
    moge_forward_times ft;
    moge_forward_times_get(m.ctx, &ft);
    sigaction(SIGINT, &old_sa, NULL);
    printer_finish(&pr);
    if (st == MOGE_ERR_ABORTED) {
        fprintf(stderr, "moge run: interrupted after %d tokens\n", stats.n_generated);
        rc = 130;
        goto done;
    }
    if (st != MOGE_OK) {
        fprintf(stderr, "moge run: %s\n", moge_context_error(m.ctx)[0] ? moge_context_error(m.ctx) : moge_status_str(st));
        goto done;
    }
    if (pr.failed) fprintf(stderr, "moge run: out of memory while printing the text\n");
    char where[256];
    cli_backend_desc(&m.info, where, sizeof where);
    if (verbosity != QUIET) fprintf(stderr, "moge run: %s, %s: prompt %d tokens (%.3f s), generated %d tokens in %.3f s (%.1f tokens/s), stop: %s\n",
            m.info.architecture, where, stats.n_prompt, stats.t_prefill_s, stats.n_generated, stats.t_decode_s,
            stats.tokens_per_s, moge_stop_name(stats.stop));
    if (gp.spec != MOGE_SPEC_NONE && verbosity != QUIET) {
        fprintf(stderr, "moge run: speculative %s: %d target passes, tau %.2f tokens/pass, acceptance by depth:", moge_spec_name(gp.spec),
                stats.n_forward + 1, stats.mean_accepted);
        for (int d = 1; d < MOGE_MAX_DEPTH && stats.accept_tries[d] > 0; d++)
            fprintf(stderr, " %.2f", (double)stats.accept_hits[d] / stats.accept_tries[d]);
        fprintf(stderr, "; time draft %.3f s, verify %.3f s\n", stats.t_draft_s, stats.t_verify_s);
    }
    if (stats.stop == MOGE_STOP_CONTEXT_FULL)
        fprintf(stderr, "moge run: the context (%d tokens) is full; use -c to enlarge it\n", moge_context_n_ctx(m.ctx));
    print_moe(&m);
    if (verbosity == VERBOSE) cli_forward_times_out(NULL, NULL, stderr, "run", "time of the target's forwards", &ft);
    rc = pr.failed ? 1 : 0;
    compare_result cmp = {0};
    if (compare && rc == 0 && run_compare(&m, ids, (int32_t)n_ids, &gp, &pr, &stats, &cmp) != 0) rc = 1;
    if (stats_json && write_stats_json(stats_json, &m.info, &stats, &ft, m.ctx, pr.ids, pr.n_ids, compare && rc == 0 ? &cmp : NULL) != 0) rc = 1;
done:
    printer_free(&pr);
    free(ids);
    free(prompt_text);
    moge_drafter_free(drafter);
    cli_models_free(&m);
    return rc;
}
