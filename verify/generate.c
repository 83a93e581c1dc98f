/*
 * generate.c — the generation loop (design.md §1): prefill the prompt, sample the first token,
 * then repeat: the drafter grows a tree rooted at the last emitted token, the target verifies it
 * in one forward (moge_verify_tree), the accepted tokens and the bonus token are emitted, and the
 * drafter keeps the accepted path. Without speculation the tree is the root alone, so the
 * target-only path and the speculative path share every line that decides a token.
 *
 * With params->adaptive (the default) the planner (verify/planner.c) chooses each step's tree: how
 * deep to draft, which of the drafted nodes the target verifies (none: a plain step), by expected
 * accepted tokens per expected second; without it every step verifies the tree the drafter made.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "draft/drafter.h"
#include "verify/planner.h"
#include "runtime/context.h"
#include "runtime/errors.h"
#include "sampling/sampling.h"

moge_generate_params moge_generate_default_params(void) {
    moge_generate_params p = {.n_predict = 128, .sampler = moge_sampler_default_params(), .spec = MOGE_SPEC_NONE,
                              .drafter = NULL, .draft = moge_draft_default_params(), .adaptive = true};
    return p;
}

#define DRAFT_WINDOW 32

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    moge_context *ctx;
    const moge_generate_params *gp;
    moge_token_cb cb;
    void *user;
    moge_stats *stats;
    int32_t *hist;
    int32_t n_hist;
    int32_t eos;
    bool done;
} run_state;

/* Emits one token; returns false when generation must stop (EOS, length, callback). */
static bool emit(run_state *r, int32_t tok) {
    if (tok == r->eos) {
        r->stats->stop = MOGE_STOP_EOS;
        return false;
    }
    r->hist[r->n_hist++] = tok;
    r->stats->n_generated++;
    if (r->cb && !r->cb(tok, r->user)) {
        r->stats->stop = MOGE_STOP_CALLBACK;
        return false;
    }
    if (r->stats->n_generated >= r->gp->n_predict) {
        r->stats->stop = MOGE_STOP_LENGTH;
        return false;
    }
    return true;
}

moge_status moge_generate(moge_context *ctx, const int32_t *prompt, int32_t n_prompt, const moge_generate_params *params,
                          moge_token_cb cb, void *user, moge_stats *stats) {
    moge_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    if (!ctx) return MOGE_ERR_ARG;
    if (!prompt || n_prompt < 1)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_generate: the prompt needs at least one token");
    moge_generate_params gp = params ? *params : moge_generate_default_params();
    if (gp.spec != MOGE_SPEC_NONE && !gp.drafter)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_generate: speculative mode without a drafter");
    if (gp.spec == MOGE_SPEC_CHAIN) {
        gp.draft.branch = 1;
        gp.draft.shape = NULL;
        gp.draft.tree_nodes = gp.draft.draft_max;
    }
    if (gp.draft.draft_max > MOGE_MAX_DEPTH - 1) gp.draft.draft_max = MOGE_MAX_DEPTH - 1;
    const model_config *c = &ctx->model->cfg;
    if (ctx->n_past + n_prompt > ctx->n_ctx)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_CONTEXT_FULL,
                       "the prompt (%d tokens) does not fit in the context (%d of %d slots used)", n_prompt, ctx->n_past, ctx->n_ctx);
    if (gp.n_context_tokens != 0 && (!gp.context_tokens || gp.n_context_tokens != ctx->n_past))
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG,
                       "moge_generate: context_tokens lists %d tokens but the context holds %d", gp.n_context_tokens, ctx->n_past);
    int32_t n_vocab = c->n_vocab, n_hist_max = gp.n_context_tokens + n_prompt + (gp.n_predict > 0 ? gp.n_predict : 0) + 1;
    int32_t tree_cap = gp.spec == MOGE_SPEC_NONE ? 1 : gp.draft.tree_nodes + 1;
    if (tree_cap > ctx->n_batch) tree_cap = ctx->n_batch;
    if (tree_cap < 1) tree_cap = 1;
    run_state r = {.ctx = ctx, .gp = &gp, .cb = cb, .user = user, .stats = stats, .eos = c->eos_id};
    r.hist = malloc((size_t)n_hist_max * sizeof(int32_t));
    float *probs = malloc((size_t)n_vocab * sizeof(float));
    int32_t *idx = malloc((size_t)n_vocab * sizeof(int32_t)), *path = malloc((size_t)tree_cap * 3 * sizeof(int32_t));
    int32_t *opath = path ? path + tree_cap : NULL, *map = path ? path + 2 * tree_cap : NULL;
    moge_tree tree, vtree;
    moge_status st = moge_tree_init(&tree, tree_cap), st2 = moge_tree_init(&vtree, tree_cap);
    if (!r.hist || !probs || !idx || !path || st != MOGE_OK || st2 != MOGE_OK) {
        free(r.hist); free(probs); free(idx); free(path); moge_tree_free(&tree); moge_tree_free(&vtree);
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_NOMEM, "out of memory");
    }
    if (gp.n_context_tokens > 0) memcpy(r.hist, gp.context_tokens, (size_t)gp.n_context_tokens * sizeof(int32_t));
    memcpy(r.hist + gp.n_context_tokens, prompt, (size_t)n_prompt * sizeof(int32_t));
    r.n_hist = gp.n_context_tokens + n_prompt;
    /* the planner (calibrating the target on its first use: before the prefill, leaving the cache
     * as it is); a context too full to calibrate in runs the configured tree */
    planner *pl = NULL;
    if (gp.adaptive && gp.spec != MOGE_SPEC_NONE && tree_cap > 1) {
        int32_t rule = (gp.spec == MOGE_SPEC_CHAIN) | (gp.sampler.temperature > 0) << 1 | gp.draft.sampled << 2;
        st = planner_start(ctx, tree_cap, gp.drafter, rule, r.hist, r.n_hist, &pl);
        if (st == MOGE_ERR_CONTEXT_FULL) st = MOGE_OK;
        if (st != MOGE_OK) {
            free(r.hist); free(probs); free(idx); free(path); moge_tree_free(&tree); moge_tree_free(&vtree);
            return set_err(ctx->err, sizeof ctx->err, st, "calibrating the speculation planner: %s", moge_status_str(st));
        }
    }
    uint64_t rng = gp.sampler.seed;
    const float *logits = NULL;
    int32_t base = ctx->n_past;
    moge_moe_stats_reset(ctx);
    if (gp.drafter && gp.drafter->iface.reset) gp.drafter->iface.reset(gp.drafter->self);

    double t0 = now_s();
    for (int32_t done = 0; done < n_prompt && st == MOGE_OK;) {
        int32_t chunk = n_prompt - done < ctx->n_batch ? n_prompt - done : ctx->n_batch;
        moge_batch b = {.n = chunk, .tokens = prompt + done, .logits_last_only = true};
        st = moge_forward(ctx, &b, &logits);
        if (st == MOGE_OK) st = moge_kv_commit(ctx, NULL, chunk);
        stats->n_prefill_forward++;
        done += chunk;
    }
    stats->n_prompt = n_prompt;
    double t1 = now_s();
    stats->t_prefill_s = t1 - t0;
    stats->stop = MOGE_STOP_LENGTH;
    /* The first token is sampled from the prefill's logits, before any drafting. */
    bool go = st == MOGE_OK && gp.n_predict > 0;
    if (go) go = emit(&r, sampling_choose(logits, n_vocab, &gp.sampler, r.hist, r.n_hist, probs, idx, &rng));
    int32_t draft_from = 0, drafted_to = r.n_hist - 1; /* the drafter's window of the history */
    while (go) {
        if (ctx->n_past + 1 > ctx->n_ctx) {
            stats->stop = MOGE_STOP_CONTEXT_FULL;
            break;
        }
        double ts = now_s();
        moge_tree_reset(&tree, r.hist[r.n_hist - 1]);
        moge_draft_params dp = gp.draft;
        int32_t levels = 0;
        if (gp.spec != MOGE_SPEC_NONE) {
            int32_t width = dp.branch;
            levels = pl ? planner_depth(pl, dp.draft_max, &width) : dp.draft_max;
            if (!dp.shape && width < dp.branch) dp.branch = width < 1 ? 1 : width;
            dp.draft_max = levels;
            int32_t room = ctx->n_ctx - ctx->n_past - 1;
            if (dp.tree_nodes > tree_cap - 1) dp.tree_nodes = tree_cap - 1;
            if (dp.tree_nodes > room) dp.tree_nodes = room;
            if (levels > 0 && dp.tree_nodes > 0) {
                /* after many plain steps the drafter would first have to read every token it
                 * missed: a probe of the planner's gives it the last DRAFT_WINDOW tokens only,
                 * and the drafter sees the history from there on while it keeps speculating */
                if (pl && r.n_hist - 1 - drafted_to > DRAFT_WINDOW) draft_from = r.n_hist - 1 - DRAFT_WINDOW;
                drafted_to = r.n_hist - 1;
                st = gp.drafter->iface.propose(gp.drafter->self, r.hist + draft_from, r.n_hist - 1 - draft_from, &dp,
                                               &gp.sampler, &tree);
                if (st != MOGE_OK) break;
                if (tree.n > dp.tree_nodes + 1) tree.n = dp.tree_nodes + 1; /* a custom drafter went over */
            }
        }
        double td = now_s();
        /* the planner picks the nodes worth verifying (vtree; map: its nodes' ids in tree) */
        const moge_tree *vt = &tree;
        if (pl && levels > 0) {
            int32_t drafted = 1;
            for (int32_t i = 1; i < tree.n; i++) if (tree.depth[i] > drafted) drafted = tree.depth[i];
            planner_choose(pl, &tree, drafted, td - ts, &vtree, map);
            vt = &vtree;
        }
        double tc = now_s();
        moge_verify_result vr;
        st = moge_verify_tree(ctx, vt, &gp.sampler, r.hist, r.n_hist - 1, &rng, path, &vr);
        if (st != MOGE_OK) break;
        double tv = now_s();
        stats->expert_bytes_read += planner_expert_bytes(ctx);
        for (int32_t i = 0; i < vr.n_path; i++) opath[i] = vt == &tree ? path[i] : map[path[i]];
        if (tree.n > 1) {
            st = gp.drafter->iface.accept(gp.drafter->self, &tree, opath, vr.n_path);
            if (st != MOGE_OK) break;
        }
        double ta = now_s();
        stats->n_forward++;
        stats->n_draft_proposed += tree.n - 1;
        stats->n_draft_nodes += vt->n - 1;
        if (pl && vt->n == 1) stats->n_plain_steps++;
        for (int32_t i = 0; i < vr.n_path && vt->n > 1; i++) {
            /* a try at depth d+1: the walk stood at a node of depth d that has a child */
            int32_t node = path[i], d = vt->depth[node] + 1;
            bool has_child = false;
            for (int32_t j = node + 1; j < vt->n && !has_child; j++) has_child = vt->parent[j] == node;
            if (!has_child || d >= MOGE_MAX_DEPTH) continue;
            stats->accept_tries[d]++;
            if (i + 1 < vr.n_path) stats->accept_hits[d]++;
        }
        for (int32_t i = 1; i < vr.n_path && go; i++) go = emit(&r, vt->token[path[i]]);
        if (go) go = emit(&r, vr.bonus);
        double te = now_s();
        stats->t_draft_s += tc - ts;
        stats->t_verify_s += tv - tc;
        stats->t_rollback_s += ta - tv;
        stats->t_sample_s += te - ta;
        if (pl) planner_observe(pl, vt, path, vr.n_path, tv - tc, te - tv);
    }
    /* Keep in the cache exactly the prompt and the emitted tokens but the last (a path accepted
     * past n_predict or an EOS is dropped), so a conversation can go on in this context. */
    int32_t keep = base + n_prompt + (stats->n_generated > 0 ? stats->n_generated - 1 : 0);
    if (ctx->n_past > keep) moge_kv_truncate(ctx, keep);
    stats->t_decode_s = now_s() - t1;
    stats->tokens_per_s = stats->t_decode_s > 0 ? stats->n_generated / stats->t_decode_s : 0;
    /* τ: emitted tokens per target pass; the first token came from the prefill's last pass */
    stats->mean_accepted = (double)stats->n_generated / (stats->n_forward + 1);
    stats->predicted_speedup = planner_predicted_speedup(pl);
    free(r.hist); free(probs); free(idx); free(path);
    moge_tree_free(&tree);
    moge_tree_free(&vtree);
    return st;
}
