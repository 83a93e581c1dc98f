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

static void usage(FILE *f) {
    fputs("usage: moge run -m DIR [options]\n"
          "\n"
          "Generates text with the model in DIR (a Hugging Face directory: config.json,\n"
          "*.safetensors, tokenizer.json). The prompt is not echoed; statistics go to stderr.\n"
          "\n"
          "  -m, --model DIR        model directory, or OWNER/NAME[@REV] pulled with moge pull (required)\n"
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
          "      --backend NAME     cpu (default) or ref (slow reference loops)\n"
          "      --quant q8|q4      quantize the weights at load (blocks of 32, int8 or int4)\n"
          "      --routing RULE     MoE models: override the routing rule: moge, topk or group_limited\n"
          "      --n-group N        MoE: expert groups for the override (default: the checkpoint's)\n"
          "      --topk-group N     MoE group_limited: groups kept (default: half)\n"
          "      --devices N        MoE: workers owning whole expert groups (default: automatic)\n"
          "      --stats-json FILE  write the run's statistics as JSON (- for stdout)\n"
          "\n"
          "speculative decoding (output identical to target-only at --temp 0, same distribution otherwise):\n"
          "  -d, --draft DIR        a draft model with the target's tokenizer\n"
          "      --draft-layers L   self-draft with the target's first L layers\n"
          "      --lookup           prompt-lookup drafting (no model)\n"
          "      --spec MODE        none, chain or tree (default: tree with a drafter, else none)\n"
          "      --draft-max N      deepest draft level / chain length (default 6)\n"
          "      --tree-nodes N     draft nodes per step (default 24)\n"
          "      --branch N         children per expanded node, dynamic trees (default 4)\n"
          "      --tree-shape LIST  static tree: children per depth, e.g. 4,2,2,1,1\n"
          "      --sampled-draft    draw draft children from the draft's distribution (rejection sampling)\n"
          "      --no-adaptive      keep the tree budget fixed\n",
          f);
}

typedef struct {
    moge_detok_stream *stream;
    const moge_tokenizer *tok;
    char *buf;
    size_t cap;
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

/* The run's statistics (design.md §5) as JSON; path "-" is stdout. Returns 0 on success. */
static int write_stats_json(const char *path, const moge_model_info *info, const moge_stats *st, const moge_context *ctx,
                            const int32_t *ids, int32_t n_ids) {
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
    int rc = 0;
    if (!strcmp(path, "-")) {
        puts(text);
    } else {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "w");
        int bad = !f;
        if (f) {
            bad = fputs(text, f) < 0 || fputc('\n', f) < 0;
            bad |= fclose(f) != 0;
        }
        if (bad || rename(tmp, path) != 0) {
            fprintf(stderr, "moge run: --stats-json: cannot write %s\n", path);
            remove(tmp);
            rc = 1;
        }
    }
    free(text);
    return rc;
}

int cmd_run(int argc, char **argv) {
    const char *C = "run", *model_arg = NULL, *prompt = NULL, *stats_json = NULL, *draft_dir = NULL;
    int draft_layers = 0, spec = -1;
    int32_t shape[16];
    bool lookup = false;
    moge_model_params mp = moge_model_default_params();
    moge_context_params cp = moge_context_default_params();
    moge_generate_params gp = moge_generate_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long l;
        double d;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
#define VALUE() do { if (!(v = cli_value(C, argc, argv, &i))) return 2; } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VALUE(); model_arg = v; }
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
        else if (!strcmp(a, "--quant")) { VALUE(); int q; if (!cli_quant(C, v, &q)) return 2; mp.quant = (moge_quant)q; }
        else if (!strcmp(a, "--backend")) {
            VALUE();
            if (!strcmp(v, "cpu")) mp.backend = MOGE_BACKEND_CPU;
            else if (!strcmp(v, "ref")) mp.backend = MOGE_BACKEND_REF;
            else { fprintf(stderr, "moge run: --backend: expected cpu or ref, got \"%s\"\n", v); return 2; }
        } else if (!strcmp(a, "--routing")) {
            VALUE();
            if (!strcmp(v, "moge")) mp.routing = MOGE_ROUTING_MOGE;
            else if (!strcmp(v, "topk")) mp.routing = MOGE_ROUTING_TOPK;
            else if (!strcmp(v, "group_limited")) mp.routing = MOGE_ROUTING_GROUP_LIMITED;
            else { fprintf(stderr, "moge run: --routing: expected moge, topk or group_limited, got \"%s\"\n", v); return 2; }
        }
        else if (!strcmp(a, "--n-group")) { VALUE(); if (!cli_int(C, a, v, 1, 1024, &l)) return 2; mp.n_group = (int32_t)l; }
        else if (!strcmp(a, "--topk-group")) { VALUE(); if (!cli_int(C, a, v, 1, 1024, &l)) return 2; mp.topk_group = (int32_t)l; }
        else if (!strcmp(a, "--devices")) { VALUE(); if (!cli_int(C, a, v, 1, 1024, &l)) return 2; cp.n_devices = (int32_t)l; }
        else if (!strcmp(a, "--stats-json")) { VALUE(); stats_json = v; }
        else if (!strcmp(a, "-d") || !strcmp(a, "--draft")) { VALUE(); draft_dir = v; }
        else if (!strcmp(a, "--draft-layers")) { VALUE(); if (!cli_int(C, a, v, 1, 1024, &l)) return 2; draft_layers = (int)l; }
        else if (!strcmp(a, "--lookup")) lookup = true;
        else if (!strcmp(a, "--spec")) {
            VALUE();
            if (!strcmp(v, "none")) spec = MOGE_SPEC_NONE;
            else if (!strcmp(v, "chain")) spec = MOGE_SPEC_CHAIN;
            else if (!strcmp(v, "tree")) spec = MOGE_SPEC_TREE;
            else { fprintf(stderr, "moge run: --spec: expected none, chain or tree, got \"%s\"\n", v); return 2; }
        }
        else if (!strcmp(a, "--draft-max")) { VALUE(); if (!cli_int(C, a, v, 1, MOGE_MAX_DEPTH - 1, &l)) return 2; gp.draft.draft_max = (int32_t)l; }
        else if (!strcmp(a, "--tree-nodes")) { VALUE(); if (!cli_int(C, a, v, 1, 63, &l)) return 2; gp.draft.tree_nodes = (int32_t)l; }
        else if (!strcmp(a, "--branch")) { VALUE(); if (!cli_int(C, a, v, 1, 16, &l)) return 2; gp.draft.branch = (int32_t)l; }
        else if (!strcmp(a, "--tree-shape")) {
            VALUE();
            if (!cli_tree_shape(C, v, shape, &gp.draft.n_shape)) return 2;
            gp.draft.shape = shape;
        }
        else if (!strcmp(a, "--sampled-draft")) gp.draft.sampled = true;
        else if (!strcmp(a, "--no-adaptive")) gp.adaptive = false;
        else {
            fprintf(stderr, "moge run: unknown option \"%s\" (see moge run --help)\n", a);
            return 2;
        }
#undef VALUE
    }
    if (!model_arg) {
        fprintf(stderr, "moge run: -m DIR is required (e.g. moge run -m models/stories260K)\n");
        return 2;
    }
    if ((draft_dir != NULL) + (draft_layers > 0) + lookup > 1) {
        fprintf(stderr, "moge run: choose one drafter: -d, --draft-layers or --lookup\n");
        return 2;
    }
    bool have_drafter = draft_dir || draft_layers > 0 || lookup;
    if (spec < 0) spec = have_drafter ? MOGE_SPEC_TREE : MOGE_SPEC_NONE;
    if (spec != MOGE_SPEC_NONE && !have_drafter) {
        fprintf(stderr, "moge run: --spec %s needs a drafter: -d DIR, --draft-layers L or --lookup\n", spec == MOGE_SPEC_CHAIN ? "chain" : "tree");
        return 2;
    }
    gp.spec = (moge_spec_mode)spec;

    char err[1024], dir[4096];
    if (moge_resolve_model(model_arg, dir, sizeof dir, err, sizeof err) != MOGE_OK) {
        fprintf(stderr, "moge run: -m %s: %s\n", model_arg, err);
        return 1;
    }
    int rc = 1;
    moge_model *model = NULL, *draft_model = NULL;
    moge_tokenizer *tok = NULL, *draft_tok = NULL;
    moge_drafter *drafter = NULL;
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
    if (gp.spec != MOGE_SPEC_NONE) {
        if (draft_dir) {
            char ddir[4096];
            if ((st = moge_resolve_model(draft_dir, ddir, sizeof ddir, err, sizeof err)) != MOGE_OK ||
                (st = moge_model_load(ddir, &mp, &draft_model, err, sizeof err)) != MOGE_OK ||
                (st = moge_tokenizer_load(ddir, &draft_tok, err, sizeof err)) != MOGE_OK ||
                (st = moge_drafter_new_model(draft_model, tok, draft_tok, moge_context_n_ctx(ctx), &drafter, err, sizeof err)) != MOGE_OK) {
                fprintf(stderr, "moge run: draft %s: %s\n", draft_dir, err);
                goto done;
            }
        } else if (draft_layers > 0) {
            st = moge_drafter_new_layer_skip(model, draft_layers, moge_context_n_ctx(ctx), &drafter, err, sizeof err);
        } else {
            st = moge_drafter_new_lookup(3, &drafter, err, sizeof err);
        }
        if (st != MOGE_OK) {
            fprintf(stderr, "moge run: %s\n", err);
            goto done;
        }
        gp.drafter = drafter;
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
     * (e.g. the leading-space rule), but print only what generation adds. Special tokens (BOS)
     * are not text. */
    for (size_t i = 0; i < n_ids; i++) {
        size_t n = 0;
        if (!moge_tokenizer_is_special(tok, ids[i])) moge_detok_stream_push(stream, ids[i], buf, cap, &n);
    }
    printer pr = {.stream = stream, .buf = buf, .cap = cap, .tok = tok};
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
    if (gp.spec != MOGE_SPEC_NONE) {
        fprintf(stderr, "moge run: speculative %s: %d target passes, tau %.2f tokens/pass, acceptance by depth:", gp.spec == MOGE_SPEC_CHAIN ? "chain" : "tree",
                stats.n_forward + 1, stats.mean_accepted);
        for (int d = 1; d < MOGE_MAX_DEPTH && stats.accept_tries[d] > 0; d++)
            fprintf(stderr, " %.2f", (double)stats.accept_hits[d] / stats.accept_tries[d]);
        fprintf(stderr, "; time draft %.3f s, verify %.3f s\n", stats.t_draft_s, stats.t_verify_s);
    }
    if (stats.stop == MOGE_STOP_CONTEXT_FULL)
        fprintf(stderr, "moge run: the context (%d tokens) is full; use -c to enlarge it\n", moge_context_n_ctx(ctx));
    for (int l = 0; l < moge_context_n_moe_layers(ctx); l++) {
        moge_moe_stats ms;
        if (moge_moe_stats_get(ctx, l, true, &ms) != MOGE_OK) continue;
        if (l == 0) fprintf(stderr, "moge run: MoE (%s routing, %d devices): per layer mean Imbalance Score / max / distinct experts per pass:\n", info.routing, ms.n_devices);
        fprintf(stderr, "  layer %2d: IS %.3f / %.3f, %.1f of %d experts\n", l, ms.imbalance, ms.imbalance_max, ms.distinct_experts, ms.n_experts);
    }
    rc = pr.failed ? 1 : 0;
    if (stats_json && write_stats_json(stats_json, &info, &stats, ctx, pr.ids, pr.n_ids) != 0) rc = 1;
    free(pr.ids);
done:
    free(buf);
    free(ids);
    moge_detok_stream_free(stream);
    moge_drafter_free(drafter);
    moge_tokenizer_free(draft_tok);
    moge_model_free(draft_model);
    moge_context_free(ctx);
    moge_tokenizer_free(tok);
    moge_model_free(model);
    return rc;
}
