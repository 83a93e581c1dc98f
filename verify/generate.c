/*
 * generate.c — the generation loop (design.md §1): prefill the prompt, sample the first token,
 * then repeat: the drafter grows a tree rooted at the last emitted token, the target verifies it
 * in one forward (moge_verify_tree), the accepted tokens and the bonus token are emitted, and the
 * drafter keeps the accepted path. Without speculation the tree is the root alone, so the
 * target-only path and the speculative path share every line that decides a token.
 *
 * Adaptive budget (adapt_state below): a hill climb over the tree's node budget, from plain
 * decoding to the configured tree, by the tokens per second each budget measures.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "draft/drafter.h"
#include "runtime/context.h"
#include "runtime/errors.h"
#include "sampling/sampling.h"

moge_generate_params moge_generate_default_params(void) {
    moge_generate_params p = {.n_predict = 128, .sampler = moge_sampler_default_params(), .spec = MOGE_SPEC_NONE,
                              .drafter = NULL, .draft = moge_draft_default_params(), .adaptive = true};
    return p;
}

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

/* The adaptive budget: a hill climb over node budgets 0 (plain decoding), 2, 4, 8, ... up to the
 * configured tree. Each budget has an exponential average of the tokens per second its steps
 * measured. Most steps use the current budget; every few steps one step tries a neighbour (the
 * next smaller or larger budget, in turn) and the climb moves there when that neighbour measures
 * faster. A direction whose tries keep losing is tried less and less often (every 8 steps, then
 * 16, ... up to 256), so where speculation never pays (a target so small that several rows cost
 * several times one) or where the largest tree is best, the tries cost little. The best budget
 * depends on the machine, the target and the draft: on the 2-core machine the demo target
 * verifies a chain of 4 faster than a tree of 24. */
#define ADAPT_LEVELS 8
typedef struct {
    int32_t budget[ADAPT_LEVELS];
    double rate[ADAPT_LEVELS]; /* tokens per second (0 = not measured yet) */
    int n_levels, cur, tried;  /* tried: the level of the step just run */
    int64_t step, next_try[2]; /* per direction (0 down, 1 up): the step of its next try */
    int32_t wait[2];
    int dir;                   /* the direction of the next try */
} adapt_state;

static void adapt_init(adapt_state *a, int32_t max_budget, bool enabled) {
    memset(a, 0, sizeof *a);
    a->budget[a->n_levels++] = 0;
    for (int32_t b = 2; max_budget > 0 && a->n_levels < ADAPT_LEVELS; b *= 2) {
        a->budget[a->n_levels++] = b < max_budget ? b : max_budget;
        if (b >= max_budget) break;
    }
    /* start at 4 nodes (or the whole tree when smaller, or not adaptive: the whole tree) */
    a->cur = a->n_levels - 1;
    if (enabled)
        while (a->cur > 1 && a->budget[a->cur - 1] >= 4) a->cur--;
    a->wait[0] = a->wait[1] = 8;
    a->next_try[0] = a->next_try[1] = 8;
}

/* The node budget for the next step. */
static int32_t adapt_budget(adapt_state *a) {
    a->tried = a->cur;
    for (int k = 0; k < 2; k++) {
        int d = (a->dir + k) % 2, l = a->cur + (d ? 1 : -1);
        if (l < 0 || l >= a->n_levels || a->step < a->next_try[d]) continue;
        a->tried = l;
        a->dir = 1 - d;
        break;
    }
    return a->budget[a->tried];
}

static void adapt_update(adapt_state *a, int32_t emitted, double seconds) {
    a->step++;
    if (seconds <= 0) return;
    double r = emitted / seconds, *avg = &a->rate[a->tried];
    *avg = *avg > 0 ? 0.7 * *avg + 0.3 * r : r;
    if (a->tried == a->cur) return;
    int d = a->tried > a->cur;
    if (*avg > 1.03 * a->rate[a->cur] && a->rate[a->cur] > 0) { /* the neighbour is faster: go there */
        a->cur = a->tried;
        a->wait[0] = a->wait[1] = 8;
        a->next_try[0] = a->next_try[1] = a->step + 8;
    } else { /* it lost: try that way again later, and later each time */
        a->next_try[d] = a->step + a->wait[d];
        a->wait[d] = a->wait[d] < 128 ? 2 * a->wait[d] : 256;
    }
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
    int32_t *idx = malloc((size_t)n_vocab * sizeof(int32_t)), *path = malloc((size_t)tree_cap * sizeof(int32_t));
    moge_tree tree;
    moge_status st = moge_tree_init(&tree, tree_cap);
    if (!r.hist || !probs || !idx || !path || st != MOGE_OK) {
        free(r.hist); free(probs); free(idx); free(path); moge_tree_free(&tree);
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_NOMEM, "out of memory");
    }
    if (gp.n_context_tokens > 0) memcpy(r.hist, gp.context_tokens, (size_t)gp.n_context_tokens * sizeof(int32_t));
    memcpy(r.hist + gp.n_context_tokens, prompt, (size_t)n_prompt * sizeof(int32_t));
    r.n_hist = gp.n_context_tokens + n_prompt;
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
    /* adaptive: start small and grow while it pays (a few steps to the full tree), rather than
     * start with the full tree and pay for it where speculation loses */
    adapt_state ad;
    adapt_init(&ad, gp.spec == MOGE_SPEC_NONE ? 0 : tree_cap - 1, gp.adaptive);
    while (go) {
        if (ctx->n_past + 1 > ctx->n_ctx) {
            stats->stop = MOGE_STOP_CONTEXT_FULL;
            break;
        }
        double ts = now_s();
        moge_tree_reset(&tree, r.hist[r.n_hist - 1]);
        moge_draft_params dp = gp.draft;
        int32_t budget = gp.adaptive ? adapt_budget(&ad) : ad.budget[ad.n_levels - 1];
        if (budget > ctx->n_ctx - ctx->n_past - 1) budget = ctx->n_ctx - ctx->n_past - 1;
        if (dp.tree_nodes > budget) dp.tree_nodes = budget;
        if (gp.spec != MOGE_SPEC_NONE && dp.tree_nodes > 0) {
            st = gp.drafter->iface.propose(gp.drafter->self, r.hist, r.n_hist - 1, &dp, &gp.sampler, &tree);
            if (st != MOGE_OK) break;
            if (tree.n > dp.tree_nodes + 1) tree.n = dp.tree_nodes + 1; /* a custom drafter went over */
        }
        double td = now_s();
        moge_verify_result vr;
        st = moge_verify_tree(ctx, &tree, &gp.sampler, r.hist, r.n_hist - 1, &rng, path, &vr);
        if (st != MOGE_OK) break;
        double tv = now_s();
        if (tree.n > 1) {
            st = gp.drafter->iface.accept(gp.drafter->self, &tree, path, vr.n_path);
            if (st != MOGE_OK) break;
        }
        double ta = now_s();
        stats->n_forward++;
        stats->n_draft_nodes += tree.n - 1;
        for (int32_t i = 0; i < vr.n_path && tree.n > 1; i++) {
            /* a try at depth d+1: the walk stood at a node of depth d that has a child */
            int32_t node = path[i], d = tree.depth[node] + 1;
            bool has_child = false;
            for (int32_t j = node + 1; j < tree.n && !has_child; j++) has_child = tree.parent[j] == node;
            if (!has_child || d >= MOGE_MAX_DEPTH) continue;
            stats->accept_tries[d]++;
            if (i + 1 < vr.n_path) stats->accept_hits[d]++;
        }
        int32_t before = stats->n_generated;
        for (int32_t i = 1; i < vr.n_path && go; i++) go = emit(&r, tree.token[path[i]]);
        if (go) go = emit(&r, vr.bonus);
        double te = now_s();
        stats->t_draft_s += td - ts;
        stats->t_verify_s += tv - td;
        stats->t_rollback_s += ta - tv;
        stats->t_sample_s += te - ta;
        if (gp.adaptive) adapt_update(&ad, stats->n_generated - before, te - ts);
    }
    /* Keep in the cache exactly the prompt and the emitted tokens but the last (a path accepted
     * past n_predict or an EOS is dropped), so a conversation can go on in this context. */
    int32_t keep = base + n_prompt + (stats->n_generated > 0 ? stats->n_generated - 1 : 0);
    if (ctx->n_past > keep) moge_kv_truncate(ctx, keep);
    stats->t_decode_s = now_s() - t1;
    stats->tokens_per_s = stats->t_decode_s > 0 ? stats->n_generated / stats->t_decode_s : 0;
    /* τ: emitted tokens per target pass; the first token came from the prefill's last pass */
    stats->mean_accepted = (double)stats->n_generated / (stats->n_forward + 1);
    free(r.hist); free(probs); free(idx); free(path);
    moge_tree_free(&tree);
    return st;
}
