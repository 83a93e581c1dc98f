/*
 * cmd_run.c — `moge run`: load a model directory, tokenize the prompt, generate, stream the text
 * to stdout and the statistics to stderr.
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "examples/cli.h"
#include "examples/commands.h"
#include "moge.h"

static void usage(FILE *f, const cli_common_opts *o) {
    fputs("usage: moge run -m DIR [options]\n"
          "\n"
          "Generates text with the model in DIR (a Hugging Face directory: config.json,\n"
          "*.safetensors, tokenizer.json). The prompt is not echoed; statistics go to stderr.\n"
          "\n",
          f);
    cli_common_usage(f, o,
                     "  -p, --prompt TEXT      prompt (default: none, generation starts from BOS)\n"
                     "      --stats-json FILE  write the run's statistics as JSON (- for stdout)\n"
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
    size_t skip;      /* bytes of prompt text the stream still holds: not printed */
    int failed;
    int32_t *ids;     /* every emitted id, for --stats-json */
    int32_t n_ids, cap_ids;
} printer;

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
    n = cli_detok_drop(p->buf, n, &p->skip);
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

/* The run's statistics (design.md §5) as JSON; path "-" is stdout. Returns 0 on success. */
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
            gp->spec == MOGE_SPEC_CHAIN ? "chain" : "tree", spec->tokens_per_s, spec->mean_accepted, st.tokens_per_s, out->speedup,
            out->identical ? "identical" : gp->sampler.temperature > 0 ? "differs (sampling)" : "DIFFERS");
    return out->identical || gp->sampler.temperature > 0 ? 0 : 1;
}

static int write_stats_json(const char *path, const moge_model_info *info, const moge_stats *st, const moge_context *ctx,
                            const int32_t *ids, int32_t n_ids, const compare_result *cmp) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "architecture", info->architecture);
    cJSON_AddStringToObject(root, "backend", info->backend);
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
    cJSON_AddNumberToObject(ts, "sample", st->t_sample_s);
    cJSON_AddNumberToObject(ts, "rollback", st->t_rollback_s);
    cJSON_AddStringToObject(root, "stop", stop_text(st->stop));
    if (cmp) {
        cJSON *c = cJSON_AddObjectToObject(root, "compare");
        cJSON_AddNumberToObject(c, "plain_tokens_per_s", cmp->tokens_per_s);
        cJSON_AddNumberToObject(c, "speedup", cmp->speedup);
        cJSON_AddBoolToObject(c, "identical", cmp->identical);
    }
    if (moge_context_n_moe_layers(ctx) > 0) {
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
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return 1;
    bool ok = cli_write_text("run", "--stats-json", path, text);
    free(text);
    return ok ? 0 : 1;
}

int cmd_run(int argc, char **argv) {
    const char *prompt = NULL, *stats_json = NULL;
    bool compare = false;
    cli_common_opts o;
    cli_common_init(&o, "run", CLI_RUN);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_parse_common(argc, argv, &i, &o);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout, &o); return 0; }
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { if (!(prompt = cli_value(o.cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--stats-json")) { if (!(stats_json = cli_value(o.cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--compare")) compare = true;
        else return cli_unknown_option(&o, a);
    }
    if (!o.model) {
        fprintf(stderr, "moge run: -m DIR is required (e.g. moge run -m models/stories260K)\n");
        return 2;
    }
    if (!cli_check_drafters(&o)) return 2;
    cli_draft_kind kind = cli_draft_choice(&o);
    if (o.spec < 0) o.spec = kind != CLI_DRAFT_NONE ? MOGE_SPEC_TREE : MOGE_SPEC_NONE;
    if (o.spec != MOGE_SPEC_NONE && kind == CLI_DRAFT_NONE) {
        fprintf(stderr, "moge run: --spec %s needs a drafter: -d DIR, --draft-layers L or --lookup\n", o.spec == MOGE_SPEC_CHAIN ? "chain" : "tree");
        return 2;
    }
    moge_generate_params gp = o.gp;
    gp.spec = (moge_spec_mode)o.spec;
    if (compare && gp.spec == MOGE_SPEC_NONE) {
        fprintf(stderr, "moge run: --compare compares speculation with plain decoding: give a drafter (-d, --draft-layers or --lookup)\n");
        return 2;
    }

    int rc = 1;
    cli_models m = {0};
    moge_drafter *drafter = NULL;
    moge_detok_stream *stream = NULL;
    int32_t *ids = NULL;
    char *buf = NULL;
    moge_status st;
    if (!cli_load_model(&o, 0, &m) || (gp.spec != MOGE_SPEC_NONE && !cli_load_drafter(&o, kind, &m, &drafter, NULL, 0))) goto done;
    gp.drafter = drafter;
    size_t n_ids = 0;
    if (prompt && prompt[0] && (st = cli_tokenize(m.tok, prompt, &ids, &n_ids)) != MOGE_OK) {
        fprintf(stderr, "moge run: tokenizing the prompt: %s\n", moge_status_str(st));
        goto done;
    }
    if (n_ids == 0) {
        int32_t bos = moge_tokenizer_bos(m.tok) >= 0 ? moge_tokenizer_bos(m.tok) : m.info.bos_id;
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
    if ((int64_t)n_ids > moge_context_n_ctx(m.ctx)) {
        fprintf(stderr, "moge run: the prompt has %zu tokens but the context holds %d (use -c)\n", n_ids, moge_context_n_ctx(m.ctx));
        goto done;
    }
    if ((st = moge_detok_stream_new(m.tok, &stream)) != MOGE_OK) goto done;
    size_t cap = 0;
    /* Feed the prompt through the stream so the first generated piece decodes in context
     * (e.g. the leading-space rule), but print only what generation adds. Special tokens (BOS)
     * are not text. */
    size_t skip = 0;
    if ((st = cli_detok_prime(stream, m.tok, ids, n_ids, &buf, &cap, &skip)) != MOGE_OK) {
        fprintf(stderr, "moge run: decoding the prompt: %s\n", moge_status_str(st));
        goto done;
    }
    printer pr = {.stream = stream, .buf = buf, .cap = cap, .tok = m.tok, .skip = skip};
    moge_stats stats;
    if (compare) { /* untimed: the first of the two timed runs must not pay for reading the weights in */
        moge_generate_params warm = gp;
        warm.n_predict = 16;
        if (moge_generate(m.ctx, ids, (int32_t)n_ids, &warm, NULL, NULL, NULL) == MOGE_OK) warm.spec = MOGE_SPEC_NONE;
        moge_kv_truncate(m.ctx, 0);
        if (warm.spec == MOGE_SPEC_NONE && moge_generate(m.ctx, ids, (int32_t)n_ids, &warm, NULL, NULL, NULL) == MOGE_OK)
            moge_kv_truncate(m.ctx, 0);
    }
    st = moge_generate(m.ctx, ids, (int32_t)n_ids, &gp, print_token, &pr, &stats);
    size_t n = 0;
    if (cli_detok_flush(stream, &pr.buf, &pr.cap, &n) == MOGE_OK) fwrite(pr.buf, 1, cli_detok_drop(pr.buf, n, &pr.skip), stdout);
    buf = pr.buf; /* grown by the printer */
    fputc('\n', stdout);
    fflush(stdout);
    if (st != MOGE_OK) {
        fprintf(stderr, "moge run: %s\n", moge_context_error(m.ctx)[0] ? moge_context_error(m.ctx) : moge_status_str(st));
        free(pr.ids);
        goto done;
    }
    if (pr.failed) fprintf(stderr, "moge run: out of memory while printing the text\n");
    fprintf(stderr, "moge run: %s, %s backend: prompt %d tokens (%.3f s), generated %d tokens in %.3f s (%.1f tokens/s), stop: %s\n",
            m.info.architecture, m.info.backend, stats.n_prompt, stats.t_prefill_s, stats.n_generated, stats.t_decode_s,
            stats.tokens_per_s, stop_text(stats.stop));
    if (gp.spec != MOGE_SPEC_NONE) {
        fprintf(stderr, "moge run: speculative %s: %d target passes, tau %.2f tokens/pass, acceptance by depth:", gp.spec == MOGE_SPEC_CHAIN ? "chain" : "tree",
                stats.n_forward + 1, stats.mean_accepted);
        for (int d = 1; d < MOGE_MAX_DEPTH && stats.accept_tries[d] > 0; d++)
            fprintf(stderr, " %.2f", (double)stats.accept_hits[d] / stats.accept_tries[d]);
        fprintf(stderr, "; time draft %.3f s, verify %.3f s\n", stats.t_draft_s, stats.t_verify_s);
    }
    if (stats.stop == MOGE_STOP_CONTEXT_FULL)
        fprintf(stderr, "moge run: the context (%d tokens) is full; use -c to enlarge it\n", moge_context_n_ctx(m.ctx));
    for (int l = 0; l < moge_context_n_moe_layers(m.ctx); l++) {
        moge_moe_stats ms;
        if (moge_moe_stats_get(m.ctx, l, true, &ms) != MOGE_OK) continue;
        if (l == 0) fprintf(stderr, "moge run: MoE (%s routing, %d devices): per layer mean Imbalance Score / max / distinct experts per pass:\n", m.info.routing, ms.n_devices);
        fprintf(stderr, "  layer %2d: IS %.3f / %.3f, %.1f of %d experts\n", l, ms.imbalance, ms.imbalance_max, ms.distinct_experts, ms.n_experts);
    }
    rc = pr.failed ? 1 : 0;
    compare_result cmp = {0};
    if (compare && rc == 0 && run_compare(&m, ids, (int32_t)n_ids, &gp, &pr, &stats, &cmp) != 0) rc = 1;
    if (stats_json && write_stats_json(stats_json, &m.info, &stats, m.ctx, pr.ids, pr.n_ids, compare && rc == 0 ? &cmp : NULL) != 0) rc = 1;
    free(pr.ids);
done:
    free(buf);
    free(ids);
    moge_detok_stream_free(stream);
    moge_drafter_free(drafter);
    cli_models_free(&m);
    return rc;
}
